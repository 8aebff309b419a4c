"""The gunicorn hooks, called as gunicorn calls them (server and worker objects).

The real gunicorn runs them in ``tests/test_peers_metrics_store.py``; here each
hook meets a store that is missing, read-only or locked, and must not raise.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from django_observability import gunicorn, metrics_store
from tests.test_metrics_store import WRITER, db_files, write


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "multiproc"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


def server(workers: int = 2) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(workers=workers))


def test_on_starting_makes_an_empty_store(store):
    store.mkdir()
    write(store, 2)
    gunicorn.on_starting(server())
    assert db_files(store) == []
    store.rmdir() if not os.listdir(store) else None
    gunicorn.on_starting(server())  # missing: made
    assert store.is_dir()


def test_on_starting_warns_when_workers_share_no_store(monkeypatch, caplog):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with caplog.at_level(logging.WARNING, "django_observability"):
        gunicorn.on_starting(server(workers=4))
    assert "4 workers and no PROMETHEUS_MULTIPROC_DIR" in caplog.text
    caplog.clear()
    gunicorn.on_starting(server(workers=1))
    assert caplog.text == ""


def test_child_exit_archives_the_worker(store):
    store.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(store)}
    proc = subprocess.run([sys.executable, "-c", WRITER, "3"], env=env, check=True, timeout=60)
    assert proc.returncode == 0
    pids = {int(n.rsplit("_", 1)[1][:-3]) for n in db_files(store)}
    (pid,) = pids
    gunicorn.child_exit(server(), SimpleNamespace(pid=pid))
    assert "counter_archive.db" in db_files(store)
    assert not [n for n in db_files(store) if n.endswith(f"_{pid}.db")]


def test_no_hook_raises_on_a_missing_store(store, caplog):
    with caplog.at_level(logging.WARNING, "django_observability"):
        gunicorn.child_exit(server(), SimpleNamespace(pid=123456789))
        gunicorn.post_fork(server(), SimpleNamespace(pid=os.getpid()))
        gunicorn.worker_exit(server(), SimpleNamespace(pid=os.getpid()))
    assert "is missing" in caplog.text


def test_no_hook_raises_on_a_locked_store(store, caplog):
    import fcntl

    store.mkdir()
    write(store, 2)
    fd = os.open(store / metrics_store.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with caplog.at_level(logging.WARNING, "django_observability"):
            gunicorn.child_exit(server(), SimpleNamespace(pid=123456789))
            gunicorn.on_starting(server())
    finally:
        os.close(fd)
    assert "compaction skipped" in caplog.text
    assert "could not clear" in caplog.text


def test_no_hook_raises_on_a_read_only_store(store, tmp_path, caplog):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    store.mkdir()
    write(store, 2)
    proc = subprocess.run(
        ["mount", "--bind", str(store), str(store)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here: {proc.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(store)], check=True)
        with caplog.at_level(logging.WARNING, "django_observability"):
            gunicorn.on_starting(server())
            gunicorn.child_exit(server(), SimpleNamespace(pid=123456789))
        assert "Read-only file system" in caplog.text
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)


def test_worker_exit_flushes_in_the_worker_only(monkeypatch):
    from django_observability import tracing

    calls = []
    monkeypatch.setattr(tracing, "flush_on_exit", lambda: calls.append(os.getpid()))
    # gunicorn calls it in the master too, for a worker it found already gone.
    gunicorn.worker_exit(server(), SimpleNamespace(pid=os.getpid() + 1))
    assert calls == []
    gunicorn.worker_exit(server(), SimpleNamespace(pid=os.getpid()))
    assert calls == [os.getpid()]


# The master's service fields ------------------------------------------------------

WSGI = """
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings.production')

application = get_wsgi_application()
"""


def make_site(root, settings_text="OBSERVABILITY_SERVICE_NAME = 'shop-api'\n"):
    (root / "mysite" / "settings").mkdir(parents=True)
    (root / "mysite" / "__init__.py").write_text("raise RuntimeError('not to be imported')\n")
    (root / "mysite" / "settings" / "__init__.py").write_text("")
    (root / "mysite" / "settings" / "production.py").write_text(
        "SECRET_KEY = 'x'\nOBSERVABILITY_ENVIRONMENT = 'prod'\n" + settings_text
    )
    (root / "mysite" / "wsgi.py").write_text(WSGI)


def test_settings_module_of_reads_the_app_module_without_importing_it(tmp_path, monkeypatch):
    make_site(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert gunicorn.settings_module_of("mysite.wsgi:application") == "mysite.settings.production"
    assert gunicorn.settings_module_of("mysite.wsgi") == "mysite.settings.production"
    assert "mysite" not in sys.modules
    for uri in ("mysite.nothere:app", "nosuchpackage.wsgi", "", "../x", "mysite.settings:x"):
        assert gunicorn.settings_module_of(uri) is None


MASTER = """
import json, sys
from types import SimpleNamespace
from django_observability import gunicorn
from django_observability.logging import service
from django.conf import settings
cfg = SimpleNamespace(wsgi_app=None, default_proc_name=sys.argv[1])
gunicorn.learn_service(cfg)
assert not settings.configured, "the master must not load the settings"
print(json.dumps(service.current()))
"""


def run_master(tmp_path, app_uri="mysite.wsgi:application"):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}
    }
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", MASTER, app_uri],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_the_master_learns_the_workers_service_fields(tmp_path):
    make_site(tmp_path)
    (tmp_path / "mysite" / "__init__.py").write_text("")
    fields, _ = run_master(tmp_path)
    assert fields == {"name": "shop-api", "environment": "prod"}


def test_without_a_name_in_the_settings_the_package_names_the_service(tmp_path):
    make_site(tmp_path, settings_text="")
    (tmp_path / "mysite" / "__init__.py").write_text("")
    fields, _ = run_master(tmp_path)
    assert fields == {"name": "mysite", "environment": "prod"}


def test_settings_that_fail_to_load_leave_the_environment_s_name(tmp_path):
    make_site(tmp_path, settings_text="raise ImportError('no secrets here')\n")
    (tmp_path / "mysite" / "__init__.py").write_text("")
    fields, stderr = run_master(tmp_path)
    assert fields == {"name": "mysite"}  # from DJANGO_SETTINGS_MODULE, set as wsgi.py does
    assert "no secrets here" in stderr


def test_an_unknown_app_leaves_the_fallback(tmp_path):
    fields, _ = run_master(tmp_path, "elsewhere.wsgi:application")
    assert fields == {"name": "django"}


def test_logger_class_is_gunicorns_logger_learning_first(monkeypatch):
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    assert gunicorn.logger_class is gunicorn.Logger
    assert issubclass(gunicorn.Logger, Logger)
    calls = []
    monkeypatch.setattr(gunicorn, "learn_service", calls.append)
    cfg = Config()
    cfg.set("logger_class", gunicorn.logger_class)  # as a gunicorn.conf.py sets it
    assert cfg.logger_class is gunicorn.Logger
    loggers = [logging.getLogger(name) for name in ("gunicorn.error", "gunicorn.access")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    try:
        glogger = cfg.logger_class(cfg)
        assert calls == [cfg]
        assert glogger.access_log is loggers[1]
    finally:  # gunicorn's setup gave its loggers handlers of their own
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
