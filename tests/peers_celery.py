"""Real peers for the Celery tests: a private redis-server and a real ``celery worker``.

Reusable by any test that needs them::

    from tests.peers_celery import CeleryWorker, Redis, celery_app_env, running_redis

    with running_redis(tmp_path / "redis") as redis:          # or the fixtures below
        worker = CeleryWorker("tests.celery_app.app:app", tmp_path, celery_app_env(...))
        worker.start(); worker.wait_ready()
        ...
        worker.stop()

Each runs in its own session on 127.0.0.1 and a free port, and is stopped by
the id of the process we started (its process group if it will not go).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.peers import REPO, STOP_TIMEOUT, executable, free_port, stop_process

READY_DEADLINE = 30.0


# --- Redis -------------------------------------------------------------------------


@dataclass
class Redis:
    """A private ``redis-server`` on 127.0.0.1 (no persistence), that a test may stop or pause."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The broker URL (``redis://127.0.0.1:<port>/0``)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def argv(self) -> list[str]:
        return [
            executable("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
        ]

    def start(self, deadline: float = 10.0) -> None:
        """Start it and wait until it answers ``PING``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"redis-server not answering within {deadline} s:\n{self.log_tail()}")

    def ping(self, timeout: float = 1.0) -> bool:
        """Whether it answers ``PING`` within ``timeout`` seconds."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted (the kernel's backlog), nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (after SIGCONT, in case it is paused); SIGKILL if it does not go."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its processes
        proc.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[Redis]:
    redis = Redis(workdir)
    try:
        redis.start()
        yield redis
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterable[Redis]:
    """One private Redis for the session (use a database of its own, or private_redis)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as redis:
        yield redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterable[Redis]:
    """A Redis of the test's own, that it may pause, stop and start again."""
    with running_redis(tmp_path / "redis") as redis:
        yield redis


# --- the test project's environment -------------------------------------------------


def celery_app_env(
    broker_url: str,
    db_path: Path,
    multiproc_dir: Path | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment of ``tests.celery_app`` (worker or web server): broker, database, metrics.

    Variables of the caller's shell that would change what is measured
    (pytest-django's settings module, a multiprocess directory, ``OTEL_*``)
    are left out; ``extra`` adds or overrides variables.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR"}
        and not key.startswith(("OTEL_", "GUNICORN_", "CELERY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tests.celery_app.settings",
        CELERY_APP_BROKER_URL=broker_url,
        CELERY_APP_DB=str(db_path),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(REPO),
    )
    if multiproc_dir is not None:
        multiproc_dir.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    env.update(extra)
    return env


# --- a celery worker -------------------------------------------------------------------


@dataclass
class CeleryWorker:
    """A real ``celery -A <app> worker`` (prefork pool by default), logging to a file.

    ``app`` is what ``-A`` takes (``tests.celery_app.app:app``); ``extra``
    adds command-line options (``--max-tasks-per-child=2``...).
    """

    app: str
    workdir: Path
    env: dict[str, str]
    pool: str = "prefork"
    concurrency: int = 2
    extra: list[str] = field(default_factory=list)
    cwd: Path = REPO
    name: str = field(default_factory=lambda: f"w{uuid.uuid4().hex[:8]}")
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"celery-{self.name}.log"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.app,
            "worker",
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "--hostname",
            f"{self.name}@%h",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            *self.extra,
        ]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, deadline: float = READY_DEADLINE) -> None:
        """Wait for the worker's ``<name>@<host> ready.`` line; fail with its log if not."""
        end = time.monotonic() + deadline
        marker = f"{self.name}@"
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"celery worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if any(marker in line and " ready." in line for line in self.log_text().splitlines()):
                return
            time.sleep(0.1)
        pytest.fail(f"celery worker not ready within {deadline} s:\n{self.log_tail()}")

    def child_pids(self) -> set[int]:
        """The pool's processes now (the worker's children)."""
        import psutil

        assert self.proc is not None
        return {child.pid for child in psutil.Process(self.proc.pid).children()}

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (Celery's warm shutdown: running tasks finish); SIGKILL to its group after."""
        stop_process(self.proc, timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def json_lines(self) -> list[dict[str, Any]]:
        """The log's JSON lines, parsed (other lines left out)."""
        return json_lines(self.log_text())

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_text()[-chars:] or "(no log)"


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


@contextlib.contextmanager
def running_worker(
    worker: CeleryWorker, deadline: float = READY_DEADLINE
) -> Iterator[CeleryWorker]:
    try:
        worker.start()
        worker.wait_ready(deadline)
        yield worker
    finally:
        worker.stop()
