"""tasks/worker.py: the directory a worker gets, its /metrics server, the heartbeat, the signals.

A real prefork worker (its children, the port, SIGSTOP) is tests/test_peers_worker.py.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import socket
import sys
import time
import urllib.request
import weakref
from wsgiref.util import setup_testing_defaults

import click
import pytest
from celery import signals
from django.core.checks import run_checks
from django.test import override_settings

from django_observability.conf import listen_address
from django_observability.tasks import worker
from tests.peers import free_port

TOKEN = "worker-token-0123456789"


@pytest.fixture(autouse=True)
def stopped():
    yield
    worker.worker_shutdown()


@pytest.fixture
def no_multiproc_dir(monkeypatch):
    # Set first, so that monkeypatch puts back whatever configure() changes.
    for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def celery_context(subcommand):
    """The click context the ``celery`` command has while it imports the -A module."""
    context = click.Context(click.Group("celery"), info_name="celery")
    context.invoked_subcommand = subcommand
    return context


# --- the directory -----------------------------------------------------------------------


def test_starting_worker_reads_the_celery_command_line():
    assert not worker.starting_worker()
    with celery_context("worker"):
        assert worker.starting_worker()
    with celery_context("beat"):
        assert not worker.starting_worker()


def test_configure_makes_a_private_directory_for_a_worker(no_multiproc_dir, monkeypatch):
    # As in the -A module of a worker: prometheus_client not imported yet.
    monkeypatch.delitem(sys.modules, "prometheus_client.values")
    with celery_context("worker"):
        path = worker.configure()
    try:
        assert path is not None
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == path
        assert os.path.isdir(path)
        assert os.listdir(path) == []
    finally:
        os.rmdir(path)


def test_configure_changes_nothing_outside_a_worker(no_multiproc_dir, monkeypatch):
    monkeypatch.delitem(sys.modules, "prometheus_client.values")
    assert worker.configure() is None  # a web process importing the same module
    with celery_context("beat"):
        assert worker.configure() is None
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_configure_keeps_a_directory_the_environment_names(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with celery_context("worker"):
        assert worker.configure() == str(tmp_path)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)


def test_configure_too_late_says_so(no_multiproc_dir, caplog):
    # prometheus_client is imported in this process: values already go to memory.
    with celery_context("worker"), caplog.at_level(logging.WARNING):
        assert worker.configure() is None
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert "after prometheus_client was imported" in caplog.text


class _PreforkWorker:
    from celery.concurrency.prefork import TaskPool as pool_cls


class _SoloWorker:
    from celery.concurrency.solo import TaskPool as pool_cls


def test_a_prefork_worker_without_the_directory_is_warned_about(no_multiproc_dir, caplog):
    with caplog.at_level(logging.WARNING):
        worker.worker_init(sender=_SoloWorker())
        assert caplog.text == ""  # one process: its own registry is the whole story
        worker.worker_init(sender=_PreforkWorker())
    assert "prefork worker without PROMETHEUS_MULTIPROC_DIR" in caplog.text


def test_worker_init_empties_the_store(monkeypatch, tmp_path):
    stale = tmp_path / "counter_4242.db"
    stale.write_bytes(b"an earlier run")
    kept = tmp_path / "notes.txt"
    kept.write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    from prometheus_client import values

    monkeypatch.setattr(values.ValueClass, "_multiprocess", True, raising=False)
    worker.worker_init(sender=_PreforkWorker())
    assert not stale.exists()
    assert kept.exists()


# --- /metrics -------------------------------------------------------------------------


def call(path="/metrics", method="GET", headers=None, remote="10.1.2.3"):
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "REMOTE_ADDR": remote}
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO()
    got = {}

    def start_response(status, headers):
        got["status"] = int(status.split()[0])
        got["headers"] = {k.lower(): v for k, v in headers}

    body = b"".join(worker.metrics_app(environ, start_response))
    return got["status"], got["headers"], body


@override_settings(OBSERVABILITY_AUTH_TOKEN=TOKEN, OBSERVABILITY_ALLOWED_IPS=["192.0.2.0/24"])
def test_metrics_are_protected_as_the_web_apps():
    assert call()[0] == 401
    assert call(headers={"Authorization": "Bearer wrong-token-0123456789"})[0] == 403
    assert call(headers={"Authorization": "Bearer é" * 5000})[0] in (401, 403)
    status, headers, body = call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert b"django_observability_build_info" in body
    assert call(remote="192.0.2.7")[0] == 200  # an allowed address needs no token


@override_settings(OBSERVABILITY_AUTH_TOKEN=TOKEN)
def test_metrics_negotiate_openmetrics_and_gzip():
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, headers, body = call(
        headers={**auth, "Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    status, headers, body = call(headers={**auth, "Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert b"django_observability_build_info" in gzip.decompress(body)
    status, headers, body = call(method="HEAD", headers=auth)
    assert status == 200
    assert body == b""


def test_other_paths_and_methods():
    assert call(path="/")[0] == 404
    assert call(path="/metrics/x")[0] == 404
    status, headers, _ = call(method="POST")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


def get(port, path="/metrics", headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_server_answers_on_its_port_and_stops():
    server = worker.MetricsServer("127.0.0.1", free_port())
    assert server.start()
    try:
        with override_settings(OBSERVABILITY_AUTH_TOKEN=TOKEN):
            assert get(server.port)[0] == 401
            status, body = get(server.port, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        assert b"django_observability_build_info" in body
    finally:
        server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_a_port_already_taken_is_logged_and_the_worker_goes_on(caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        with (
            override_settings(OBSERVABILITY_WORKER_METRICS_PORT=port),
            caplog.at_level(logging.ERROR),
        ):
            worker.worker_ready()  # no exception
        assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
    finally:
        taken.close()


def test_too_many_connections_at_once_are_closed_not_queued():
    server = worker.MetricsServer("127.0.0.1", free_port())
    assert server.start()
    idle = []
    try:
        # Clients that connect and send nothing hold a thread each (until 10 s pass).
        for _ in range(worker._Server.MAX_CONNECTIONS):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert extra.recv(100) == b""  # closed unanswered, no thread for it
        extra.close()
    finally:
        for sock in idle:
            sock.close()
        server.stop()


# --- worker_ready / worker_shutdown: the server and the heartbeat ------------------------


def test_ready_serves_metrics_and_beats_until_shutdown(tmp_path):
    port = free_port()
    heartbeat = tmp_path / "hb"
    with override_settings(
        OBSERVABILITY_WORKER_METRICS_PORT=f"127.0.0.1:{port}",
        OBSERVABILITY_WORKER_HEARTBEAT_FILE=str(heartbeat),
        OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL=0.1,
    ):
        worker.worker_ready()
        assert get(port)[0] == 401  # tests/settings.py sets a token
        assert get(port, headers={"Authorization": "Bearer test-token-0123456789"})[0] == 200
        first = heartbeat.stat().st_mtime_ns
        time.sleep(0.35)
        assert heartbeat.stat().st_mtime_ns > first
        assert heartbeat.read_text().split()[0] == str(os.getpid())
        worker.worker_shutdown()
    assert not heartbeat.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_without_a_port_no_server(tmp_path):
    with override_settings(OBSERVABILITY_WORKER_HEARTBEAT_FILE=str(tmp_path / "hb")):
        worker.worker_ready()
    assert not any(t.name == "observability-worker-metrics" for t in _threads())


def _threads():
    import threading

    return threading.enumerate()


def test_a_heartbeat_that_cannot_be_written_is_logged_once(tmp_path, caplog):
    beat = worker.Heartbeat(str(tmp_path / "missing" / "hb"), 10)
    with caplog.at_level(logging.ERROR):
        beat.beat()
        beat.beat()
    assert caplog.text.count("cannot be written") == 1


def test_the_heartbeat_compacts_children_that_exited(monkeypatch, tmp_path):
    from prometheus_client.mmap_dict import MmapedDict

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gone = 2**22 + 12345  # above pid_max on these machines: no such process
    (tmp_path / f"gauge_livemostrecent_{os.getpid()}.db").write_bytes(b"")
    store = MmapedDict(str(tmp_path / f"counter_{gone}.db"))
    store.write_value('["c", "c_total", {}, "help"]', 3.0, 0.0)
    store.close()
    worker.Heartbeat(str(tmp_path / "hb"), 10).beat()
    assert not (tmp_path / f"counter_{gone}.db").exists()
    assert (tmp_path / "counter_archive.db").exists()


# --- the children ------------------------------------------------------------------------


def test_a_child_stores_what_it_kept_at_exit(monkeypatch, tmp_path):
    from django_observability import metrics_store

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    called = []
    monkeypatch.setattr(metrics_store, "store_pending", lambda: called.append(1) or True)
    worker.worker_process_shutdown()
    assert called == [1]


# --- wiring and settings ----------------------------------------------------------------


def test_install_connects_the_receivers_and_uninstall_disconnects():
    def connected():
        return {
            name
            for name, receiver in worker._RECEIVERS
            if any(
                (r() if isinstance(r, weakref.ReferenceType) else r) is receiver
                for _, r in getattr(signals, name).receivers
            )
        }

    worker.install()  # ready() did it already: idempotent
    assert connected() == {name for name, _ in worker._RECEIVERS}
    worker.uninstall()
    try:
        assert connected() == set()
    finally:
        worker.install()


@pytest.mark.parametrize(
    ("value", "address"),
    [
        (9808, ("127.0.0.1", 9808)),
        ("0.0.0.0:9808", ("0.0.0.0", 9808)),
        ("[::1]:9808", ("::1", 9808)),
        ("worker-1.internal:9808", ("worker-1.internal", 9808)),
        (None, None),
        (0, None),
        (70000, None),
        (True, None),
        ("9808", None),
        (":9808", None),
        ("::1:9808", None),
        ("host:port", None),
    ],
)
def test_listen_address(value, address):
    assert listen_address(value) == address


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("OBSERVABILITY_WORKER_METRICS_PORT", "9808", "E095"),
        ("OBSERVABILITY_WORKER_METRICS_PORT", 0, "E095"),
        ("OBSERVABILITY_WORKER_HEARTBEAT_FILE", "", "E096"),
        ("OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL", 0, "E097"),
    ],
)
def test_invalid_settings_are_system_check_errors(setting, value, check_id):
    with override_settings(**{setting: value}):
        ids = {message.id for message in run_checks()}
    assert f"django_observability.{check_id}" in ids


def test_a_fork_waits_while_a_thread_uses_the_store(tmp_path):
    """A child forked during a scrape would inherit the store's lock for its whole life."""
    import threading

    worker.fork_guard.register()
    forked = threading.Event()

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        forked.set()
        os.waitpid(pid, 0)

    with worker.fork_guard:
        thread = threading.Thread(target=fork)
        thread.start()
        assert not forked.wait(0.3)  # held while the guard is
    assert forked.wait(5)
    thread.join(5)
    # The child got a lock of its own, free: it can fork in turn.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            os.waitpid(grandchild, 0)
            os.write(write, b"ok")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 2) == b"ok"
