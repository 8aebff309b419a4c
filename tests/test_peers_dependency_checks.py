"""The dependency checks against real servers, each stopped with SIGSTOP and resumed.

A private redis-server (behind Django's ``RedisCache``), a private memcached
(Debian's, named by a ``PyMemcacheCache`` alias), an HTTP server and an SMTP
server (tests/smtp_responder.py), each in a process of its own on a free
loopback port. For each: the check passes and ``/health/ready/`` (with only
that check in the readiness set) answers 200; stopped with SIGSTOP (the
kernel still accepts connections, nobody answers), every probe answers 503
within the deadline and the check's output says why; after SIGCONT readiness
passes again.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.test import Client, override_settings

pytest.register_assert_rewrite("tests.peers", "tests.peers_celery")

from django_observability.health import registry  # noqa: E402
from django_observability.health.runner import runner  # noqa: E402
from tests.peers import REPO, Server, executable, free_port, wait_for  # noqa: E402
from tests.peers_celery import Redis, running_redis  # noqa: E402

pytestmark = pytest.mark.peers

TIMEOUT = 0.5
DEADLINE = 0.8
AUTH = {"HTTP_AUTHORIZATION": "Bearer test-token-0123456789"}


def start(server: Server) -> Server:
    server.start()
    return server


def wait_listening(server: Server, port: int, deadline: float = 15.0) -> None:
    import socket

    def listening() -> bool:
        assert server.proc is not None
        if server.proc.poll() is not None:
            pytest.fail(f"{server.name} exited:\n{server.log_tail()}")
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True

    if not wait_for(listening, deadline):
        pytest.fail(f"{server.name} not listening within {deadline} s:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    with running_redis(tmp_path_factory.mktemp("dependency-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def memcached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    workdir = tmp_path_factory.mktemp("memcached")
    port = free_port()
    argv = [executable("memcached"), "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]  # memcached will not run as root without being told
    server = Server("memcached", argv, workdir, dict(os.environ), workdir / "memcached.log", "")
    try:
        start(server)
        wait_listening(server, port)
        yield server, port
    finally:
        resume(server)
        server.stop()


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("http")
    (workdir / "health").write_text("ok\n")
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(workdir)]
    server = Server(
        "http.server", argv, workdir, dict(os.environ), workdir / "http.log",
        f"http://127.0.0.1:{port}",
    )  # fmt: skip
    try:
        start(server)
        server.wait_ready("/health")
        yield server
    finally:
        resume(server)
        server.stop()


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, Path]]:
    workdir = tmp_path_factory.mktemp("smtp")
    port = free_port()
    commands = workdir / "commands.log"
    argv = [sys.executable, "-m", "tests.smtp_responder", str(port), str(commands)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = Server("smtp", argv, REPO, env, workdir / "smtp.log", "")
    try:
        start(server)
        wait_listening(server, port)
        yield server, port, commands
    finally:
        resume(server)
        server.stop()


def pause(server: Server) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)


def resume(server: Server) -> None:
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)


def readiness_follows(
    name: str, check: tuple[str, dict], pause: Callable[[], None], resume: Callable[[], None]
) -> dict:
    """200 with the peer up; 503 on time while it is stopped; 200 again after SIGCONT.

    Returns the check's result object while the peer was up (as an authorized
    caller sees it).
    """
    probe = Client()
    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS={name: check},
        OBSERVABILITY_HEALTH_READINESS_CHECKS=[name],
        OBSERVABILITY_HEALTH_TIMEOUT=TIMEOUT,
        OBSERVABILITY_HEALTH_DEADLINE=DEADLINE,
        OBSERVABILITY_HEALTH_CACHE_SECONDS=0,
    ):
        registry.reset()
        runner.clear()
        try:
            up = probe.get("/health/ready/", **AUTH)
            assert up.status_code == 200, up.json()
            passed = up.json()["checks"][name][0]
            assert passed["observedUnit"] == "ms"
            pause()
            try:
                for _ in range(3):
                    began = time.monotonic()
                    response = probe.get("/health/ready/", **AUTH)
                    waited = time.monotonic() - began
                    assert response.status_code == 503, response.json()
                    assert waited < 1.0, waited
                failed = response.json()["checks"][name][0]
                assert failed["status"] == "fail"
                # The check's own socket timeout is the probe's: the runner says it first.
                assert failed["output"] == f"timed out after {TIMEOUT:g} s", failed
            finally:
                resume()
            assert wait_for(lambda: probe.get("/health/ready/").status_code == 200, deadline=5.0)
        finally:
            registry.reset()
            runner.clear()
    return passed


def test_redis_behind_django_redis_cache(redis: Redis) -> None:
    from django.core.cache import caches

    caches_setting = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis.url},
    }
    with override_settings(CACHES=caches_setting):
        caches["redis"].set("dependency-check", "works", 30)  # a real cache on this server
        assert caches["redis"].get("dependency-check") == "works"
        check = ("django_observability.health.redis.RedisCheck", {"cache": "redis"})
        passed = readiness_follows("redis", check, redis.pause, redis.resume)
        caches["redis"].close()
    assert passed["componentId"] == redis.url
    assert passed["componentType"] == "datastore"


def test_memcached_named_by_a_pymemcache_alias(memcached: tuple[Server, int]) -> None:
    server, port = memcached
    caches_setting = {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": f"127.0.0.1:{port}",
        }
    }
    with override_settings(CACHES=caches_setting):
        check = ("django_observability.health.memcached.MemcachedCheck", {})
        passed = readiness_follows(
            "memcached", check, lambda: pause(server), lambda: resume(server)
        )
    assert passed["componentId"] == f"127.0.0.1:{port}"


def test_an_http_dependency(http_server: Server) -> None:
    check = ("django_observability.health.http.HttpCheck", {"url": http_server.url + "/health"})
    passed = readiness_follows(
        "upstream", check, lambda: pause(http_server), lambda: resume(http_server)
    )
    assert passed["componentId"] == http_server.url + "/health"


def test_the_mail_servers_smtp(smtp_server: tuple[Server, int, Path]) -> None:
    server, port, commands = smtp_server
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=port,
    ):
        check = ("django_observability.health.smtp.SmtpCheck", {})
        passed = readiness_follows("mail", check, lambda: pause(server), lambda: resume(server))
    assert passed["componentId"] == f"smtp://127.0.0.1:{port}"
    said = {line.split(" ", 1)[0].upper() for line in commands.read_text().splitlines()}
    assert {"EHLO", "NOOP", "QUIT"} <= said
    assert not said & {"MAIL", "RCPT", "DATA"}
