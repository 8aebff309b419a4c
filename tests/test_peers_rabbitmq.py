"""BrokerCheck against a real RabbitMQ (Debian's ``rabbitmq-server``), private to this module.

The node runs from the package's own start script (not ``/usr/sbin``'s
wrapper, which switches to the ``rabbitmq`` user when run as root) in a
session of its own, with everything in a temporary directory: data, logs,
configuration, an empty plugin list (no management plugin), ``HOME`` (the
Erlang cookie). It listens on 127.0.0.1 only, on free ports: AMQP, Erlang
distribution, and a private ``epmd`` that this module starts and stops
itself (``ERL_EPMD_PORT``), so the machine's port 4369 and any other node are
left alone. Its ``guest`` user has a password of this run's own, so the
tests can see that it never appears in a check's output.

* the check passes, by URL and through a Celery app's ``broker_url``, and a
  real ``celery worker`` (solo pool) runs a task sent through that broker;
* the node stopped with SIGSTOP (the ``beam.smp`` process, found as the one
  that owns the listening socket) accepts connections and never answers:
  the check fails within its timeout, a readiness probe answers 503 in
  time, and SIGCONT makes them pass again;
* the node killed: the check fails at once with "connection refused".

Skipped when ``rabbitmq-server`` is not installed (``make peers``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from celery import Celery
from django.test import Client, override_settings

pytest.register_assert_rewrite("tests.peers", "tests.peers_celery")

from django_observability.health import registry  # noqa: E402
from django_observability.health.base import FAIL, PASS, HealthError  # noqa: E402
from django_observability.health.broker import BrokerCheck  # noqa: E402
from django_observability.health.runner import CheckSpec, run_check, runner  # noqa: E402
from tests.health_state import fresh_health  # noqa: E402, F401
from tests.peers import free_port, stop_process, wait_for  # noqa: E402
from tests.peers_celery import CeleryWorker, celery_app_env, running_worker  # noqa: E402


def rabbitmq_script() -> str | None:
    """The server's own start script (``sbin/rabbitmq-server`` next to ``rabbitmq-env``).

    Debian's ``/usr/sbin/rabbitmq-server`` is a wrapper that, as root, runs
    the node as the ``rabbitmq`` user under ``su``: not a process we own.
    """
    candidates = [
        "/usr/lib/rabbitmq/bin/rabbitmq-server",
        *sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server")),
        shutil.which("rabbitmq-server") or "",
    ]
    for candidate in candidates:
        real = Path(candidate).resolve() if candidate else None
        if real and real.is_file() and (real.parent / "rabbitmq-env").is_file():
            return str(real)
    return None


SCRIPT = rabbitmq_script()
EPMD = shutil.which("epmd") or next(iter(glob.glob("/usr/lib/erlang/bin/epmd")), None)
START_DEADLINE = 60.0
TIMEOUT = 1.0  # the check's
DEADLINE = TIMEOUT + 0.3  # the readiness probe's
MARGIN = 1.0  # what the test allows beyond either

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        SCRIPT is None or EPMD is None,
        reason="rabbitmq-server is not installed (`make peers` installs Debian's rabbitmq-server)",
    ),
]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class RabbitMQ:
    """A private RabbitMQ node and its private epmd, on free loopback ports."""

    workdir: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: f"rmq-{uuid.uuid4().hex[:16]}")
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    epmd: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"amqp://guest:{self.password}@127.0.0.1:{self.port}//"

    @property
    def log_path(self) -> Path:
        return self.workdir / "rabbitmq.log"

    def env(self) -> dict[str, str]:
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_", "CELERY_"))
        }
        work = self.workdir
        return {
            **base,
            "HOME": str(work),  # the Erlang cookie
            "RABBITMQ_NODENAME": f"rabbit-test-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(work / "rabbitmq-env.conf"),  # not /etc's
            "RABBITMQ_CONFIG_FILE": str(work / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(work / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(work / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(work / "mnesia"),
            "RABBITMQ_LOG_BASE": str(work / "log"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(work / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(work / "rabbitmq.pid"),
            # The VM does not start an epmd of its own; distribution on loopback.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}"
            ),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
        }

    def configure(self) -> None:
        work = self.workdir
        work.mkdir(parents=True, exist_ok=True)
        (work / "rabbitmq-env.conf").write_text("")
        (work / "enabled_plugins").write_text("[].\n")
        (work / "rabbitmq.conf").write_text(
            "default_user = guest\n"
            f"default_pass = {self.password}\n"
            "loopback_users.guest = true\n"
            "disk_free_limit.absolute = 1MB\n"  # no publishing alarm on a nearly full disk
            "log.console = true\n"
            "log.console.level = info\n"
            "log.file = false\n"
        )

    def start(self, deadline: float = START_DEADLINE) -> None:
        """Start epmd, then the node; wait until the node answers the AMQP protocol header."""
        assert SCRIPT is not None
        assert EPMD is not None
        self.configure()
        env = self.env()
        with open(self.workdir / "epmd.log", "ab") as log:
            self.epmd = subprocess.Popen(
                [EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_for(lambda: listening(self.epmd_port), deadline=10.0):
            pytest.fail(f"epmd not listening on 127.0.0.1:{self.epmd_port}")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [SCRIPT],
                cwd=self.workdir,  # an erl_crash.dump would land here
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"rabbitmq-server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if self.answers():
                return
            time.sleep(0.1)
        pytest.fail(f"rabbitmq-server not answering within {deadline} s:\n{self.log_tail()}")

    def answers(self, timeout: float = 1.0) -> bool:
        """Whether the node answers AMQP 0-9-1's protocol header with a method frame."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                return sock.recv(1) == b"\x01"  # frame type 1: Connection.Start
        except OSError:
            return False

    def beam(self) -> psutil.Process:
        """The process that owns the AMQP listening socket (``beam.smp``, a child of the script)."""
        assert self.proc is not None
        for process in [
            psutil.Process(self.proc.pid),
            *psutil.Process(self.proc.pid).children(True),
        ]:
            with contextlib.suppress(psutil.Error):
                for conn in process.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port:
                        return process
        pytest.fail(f"no process of ours listens on {self.port}")

    def stop(self) -> None:
        """SIGCONT (in case it is paused), then the script's SIGTERM (it stops the node); epmd."""
        if self.proc is not None and self.proc.returncode is None:
            for process in psutil.Process(self.proc.pid).children(True):
                with contextlib.suppress(psutil.Error):
                    process.resume()
            stop_process(self.proc)
        stop_process(self.epmd)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running_rabbitmq(workdir: Path) -> Iterator[RabbitMQ]:
    node = RabbitMQ(workdir)
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """The module's node: the tests pause it and, last, kill it."""
    with running_rabbitmq(tmp_path_factory.mktemp("rabbitmq")) as node:
        yield node
    # Nothing of it left listening: node, distribution, epmd.
    for port in (node.port, node.dist_port, node.epmd_port):
        assert not listening(port), port


@pytest.fixture
def refused_port() -> int:
    return free_port()


# What BrokerCheck(app=...) reads: its broker_url is set to the node's below.
celery_app = Celery("test_peers_rabbitmq", set_as_current=False)


def bounded(call: Callable[[], Any], limit: float = 15.0) -> tuple[Any, float]:
    """``call()`` in a daemon thread: (what it returned or raised, seconds).

    A check that hangs fails the test after ``limit`` seconds instead of
    holding up the suite.
    """
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    elapsed = time.monotonic() - start
    if thread.is_alive():
        pytest.fail(f"the check still runs after {limit} s")
    return outcome[0], elapsed


def check(url: str, timeout: float = TIMEOUT) -> tuple[Any, float]:
    """One run through the health runner's code path: (result, seconds)."""
    spec = CheckSpec("broker", BrokerCheck(url=url, timeout=timeout), timeout)
    return bounded(lambda: run_check(spec))


def test_the_check_passes_against_a_running_node(rabbit: RabbitMQ) -> None:
    component = BrokerCheck(url=rabbit.url, timeout=TIMEOUT).run()
    assert component.status == PASS
    assert component.component_id == f"amqp://guest:**@127.0.0.1:{rabbit.port}//"
    assert component.observed_unit == "ms"
    assert 0 < component.observed_value < TIMEOUT * 1000
    result, _ = check(rabbit.url)
    assert result.status == PASS


def test_a_wrong_password_fails_without_either_password(rabbit: RabbitMQ) -> None:
    wrong = f"amqp://guest:not-{rabbit.password}@127.0.0.1:{rabbit.port}//"
    with pytest.raises(HealthError) as failed:
        BrokerCheck(url=wrong, timeout=TIMEOUT).run()
    output = str(failed.value)
    assert "ACCESS_REFUSED" in output or "AccessRefused" in output, output
    assert rabbit.password not in output


def test_the_check_passes_through_a_celery_apps_broker_url(
    rabbit: RabbitMQ, refused_port: int
) -> None:
    from celery import current_app

    celery_app.conf.broker_url = rabbit.url
    # The current app points elsewhere: the app option, not the current app, is what counts.
    previous = current_app._get_current_object()
    Celery(
        "elsewhere", broker=f"amqp://127.0.0.1:{refused_port}//", set_as_current=False
    ).set_current()
    try:
        by_path = BrokerCheck(app="tests.test_peers_rabbitmq:celery_app", timeout=TIMEOUT).run()
        assert by_path.status == PASS
        assert by_path.component_id == f"amqp://guest:**@127.0.0.1:{rabbit.port}//"
        assert BrokerCheck(app=celery_app, timeout=TIMEOUT).run().status == PASS
    finally:
        previous.set_current()


def test_a_celery_worker_runs_a_task_sent_through_the_node(
    rabbit: RabbitMQ, tmp_path: Path
) -> None:
    # An AMQP heartbeat wakes the idle worker's event loop every second or so;
    # without one it acts on SIGTERM only at its next wake-up, about 10 s later.
    env = celery_app_env(rabbit.url + "?heartbeat=2", tmp_path / "db.sqlite3")
    worker = CeleryWorker("tests.celery_app.app:app", tmp_path, env, pool="solo", concurrency=1)
    producer = Celery("producer", broker=rabbit.url, set_as_current=False)
    with running_worker(worker), contextlib.closing(producer):
        sent = producer.send_task("tests.ok")

        def ran() -> bool:
            return any(
                line.get("message") == "ok ran" and line.get("task", {}).get("id") == sent.id
                for line in worker.json_lines()
            )

        assert wait_for(ran, deadline=15.0), worker.log_tail()
    assert rabbit.password not in worker.log_text()


def test_a_stopped_node_fails_the_check_within_its_timeout(rabbit: RabbitMQ) -> None:
    beam = rabbit.beam()
    assert "beam" in beam.name(), beam.name()
    checks = {"broker": ("django_observability.health.broker.BrokerCheck", {"url": rabbit.url})}
    probe = Client()
    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS=checks,
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["broker"],
        OBSERVABILITY_HEALTH_TIMEOUT=TIMEOUT,
        OBSERVABILITY_HEALTH_DEADLINE=DEADLINE,
        OBSERVABILITY_HEALTH_CACHE_SECONDS=0,
    ):
        registry.reset()
        assert probe.get("/health/ready/").status_code == 200
        beam.suspend()  # SIGSTOP
        try:
            assert listening(rabbit.port)  # the kernel still accepts connections
            # The attempt itself ends by the timeout, not only the runner's wait for it.
            failed, elapsed = bounded(BrokerCheck(url=rabbit.url, timeout=TIMEOUT).run)
            assert isinstance(failed, HealthError), failed
            assert elapsed < TIMEOUT + MARGIN
            message = str(failed)
            assert "timed out" in message, message
            assert f"amqp://guest:**@127.0.0.1:{rabbit.port}//" in message
            assert rabbit.password not in message
            # Through the runner: an attempt that took its whole timeout reports "timed out".
            result, elapsed = check(rabbit.url)
            assert result.status == FAIL
            assert elapsed < TIMEOUT + MARGIN
            output = result.components[0].output
            assert "timed out" in output, output
            assert rabbit.password not in output
            start = time.monotonic()
            response = probe.get("/health/ready/")
            assert time.monotonic() - start < DEADLINE + MARGIN
            assert response.status_code == 503
            assert rabbit.password.encode() not in response.content
        finally:
            beam.resume()  # SIGCONT
        runner.clear()
        assert wait_for(lambda: check(rabbit.url)[0].status == PASS, deadline=10.0)
        assert wait_for(lambda: probe.get("/health/ready/").status_code == 200, deadline=10.0)


# Last: it ends the module's node.
def test_a_killed_node_fails_the_check_at_once_with_connection_refused(rabbit: RabbitMQ) -> None:
    beam = rabbit.beam()
    beam.send_signal(signal.SIGKILL)
    beam.wait(timeout=10)
    assert wait_for(lambda: not listening(rabbit.port), deadline=5.0)
    result, elapsed = check(rabbit.url, timeout=5.0)
    assert result.status == FAIL
    assert elapsed < 1.5  # one attempt: kombu's connect() would retry after two seconds
    output = result.components[0].output
    assert "refused" in output.lower(), output
    assert rabbit.password not in output
