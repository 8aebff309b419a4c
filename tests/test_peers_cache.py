"""Cache metrics and spans against real servers: a private redis-server and memcached.

Django's own ``RedisCache`` and ``PyMemcacheCache`` (``BACKEND`` as the user
wrote it), first in process, then behind a real gunicorn whose spans go to a
real OTLP collector (rotel): the cache spans arrive as children of the request's
server span, and ``/metrics`` counts the operations. Every program runs on
127.0.0.1 on a free port, in the test's directory, and is stopped by the id of
the process the test started.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.peers", "tests.peers_tracing")

from django.core.cache import caches  # noqa: E402
from django.test import override_settings  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from django_observability import cache as cache_module  # noqa: E402
from django_observability.tracing import trace_operation  # noqa: E402
from tests.peers import (  # noqa: E402
    REPO,
    Server,
    _gunicorn_extra_args,
    by_labels,
    executable,
    free_port,
    http,
    stop_process,
)
from tests.peers_celery import Redis, running_redis  # noqa: E402
from tests.peers_tracing import children_of, otel_free_env, running_collector  # noqa: E402

pytestmark = pytest.mark.peers

TOKEN = {"Authorization": "Bearer test-token-0123456789"}
OPS = "cache_operations_total"
SPAN_DEADLINE = 20.0
# The command RedisCache sends for each cache operation of the view.
REDIS_COMMANDS = {"set": "SET", "get": "GET", "get_many": "MGET"}
REDIS_COUNT = "redis_command_duration_seconds_count"


# --- memcached ---------------------------------------------------------------------------


class Memcached:
    """A private ``memcached`` (Debian's) on 127.0.0.1, no UDP, 16 MB."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def location(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, deadline: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [executable("memcached"), "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        argv += ["-m", "16", "-t", "1"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # memcached will not run as root
        with open(self.workdir / "memcached.log", "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"memcached exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"version\r\n")
                if sock.recv(64).startswith(b"VERSION"):
                    return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"memcached not answering within {deadline} s")

    def stop(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def running_memcached(workdir: Path) -> Iterator[Memcached]:
    memcached = Memcached(workdir)
    try:
        memcached.start()
        yield memcached
    finally:
        memcached.stop()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def memcached(tmp_path: Path) -> Iterator[Memcached]:
    pytest.importorskip("pymemcache")
    with running_memcached(tmp_path / "memcached") as server:
        yield server


def peer_caches(redis: Redis, memcached: Memcached) -> dict[str, dict[str, str]]:
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis.url},
        "memcached": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": memcached.location,
        },
    }


def ops(samples, alias, operation, result):
    return samples.value(OPS, alias=alias, operation=operation, result=result) or 0


# --- in process -----------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["redis", "memcached"])
def test_real_backends_count_each_operation_once(alias, redis, memcached, samples, spans):
    from asgiref.sync import async_to_sync

    with override_settings(CACHES=peer_caches(redis, memcached)):
        backend = caches[alias]
        assert type(backend).__module__.startswith("django.core.cache.backends.")
        assert cache_module.is_instrumented(backend)
        with trace_operation("a job"):
            backend.set("k", 1)
            assert backend.get("k") == 1
            assert backend.get("absent", "d") == "d"
            # Both backends implement get_many themselves: one round trip, counted per key.
            assert backend.get_many(["k", "absent", "absent-too"]) == {"k": 1}
            assert backend.incr("k") == 2
            assert backend.get_or_set("g", 5) == 5
            backend.delete("k")

            async def in_async():
                await backend.aset("a", "v")
                assert await backend.aget("a") == "v"

            async_to_sync(in_async)()
    assert ops(samples, alias, "set", "ok") == 2
    assert ops(samples, alias, "get", "hit") == 2
    assert ops(samples, alias, "get", "miss") == 1
    assert ops(samples, alias, "get_many", "hit") == 1
    assert ops(samples, alias, "get_many", "miss") == 2
    assert ops(samples, alias, "incr", "ok") == 1
    assert ops(samples, alias, "get_or_set", "miss") == 1
    assert ops(samples, alias, "delete", "ok") == 1
    made = [
        s
        for s in spans.get_finished_spans()
        if s.kind == SpanKind.CLIENT and s.attributes.get("django_observability.cache.alias")
    ]
    assert [s.attributes["db.operation.name"] for s in made] == [
        "set",
        "get",
        "get",
        "get_many",
        "incr",
        "get_or_set",
        "delete",
        "set",
        "get",
    ]
    port = redis.port if alias == "redis" else memcached.port
    for span in made:
        assert span.attributes["db.system.name"] == alias
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == port


def test_a_stopped_server_raises_its_own_error_counted_as_error(redis, memcached, samples):
    import redis as redis_py

    with override_settings(CACHES=peer_caches(redis, memcached)):
        backend = caches["redis"]
        backend.set("k", 1)
        redis.stop()
        with pytest.raises(redis_py.exceptions.ConnectionError):
            backend.get("k")
    assert ops(samples, "redis", "get", "error") == 1
    assert ops(samples, "redis", "set", "ok") == 1


# --- behind gunicorn, spans at a real collector -----------------------------------------------


def test_gunicorn_cache_spans_are_children_of_the_request_span(tmp_path, redis, memcached):
    with running_collector(tmp_path / "rotel") as collector:
        port = free_port()
        env = otel_free_env(dict(os.environ))
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings_cache_peers",
            CACHE_PEERS_REDIS_URL=redis.url,
            CACHE_PEERS_MEMCACHED=memcached.location,
            CACHE_PEERS_OTLP_ENDPOINT=collector.http_endpoint,
            OTEL_BSP_SCHEDULE_DELAY="200",
            PYTHONPATH=str(REPO),
        )
        server = Server(
            name="gunicorn-cache",
            argv=[
                executable("gunicorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--graceful-timeout",
                "5",
                *_gunicorn_extra_args(),
                "django.core.wsgi:get_wsgi_application()",
            ],
            cwd=REPO,
            env=env,
            log_path=tmp_path / "gunicorn.log",
            url=f"http://127.0.0.1:{port}",
        )
        server.start()
        try:
            server.wait_ready("/health/live/")
            request_id = f"cache-{uuid.uuid4().hex}"
            response = http(server.url + "/cache/", headers={"X-Request-ID": request_id})
            assert response.status == 200, server.log_tail()

            def arrived(spans):
                servers = [s for s in spans if s.attributes.get("http.request.id") == request_id]
                return servers and len(children_of(spans, servers[0])) >= 8

            spans = collector.wait_spans(arrived, deadline=SPAN_DEADLINE)
            (request_span,) = [
                s for s in spans if s.attributes.get("http.request.id") == request_id
            ]
            assert request_span.attributes["django_observability.cache.hits"] == 4
            assert request_span.attributes["django_observability.cache.misses"] == 4
            cache_spans = [
                s
                for s in children_of(spans, request_span)
                if "django_observability.cache.alias" in s.attributes
            ]
            by_alias = {
                alias: [
                    s.attributes["db.operation.name"]
                    for s in cache_spans
                    if s.attributes["django_observability.cache.alias"] == alias
                ]
                for alias in ("redis", "memcached")
            }
            assert by_alias == {
                "redis": ["set", "get", "get", "get_many"],
                "memcached": ["set", "get", "get", "get_many"],
            }, collector.log_tail()
            for span in cache_spans:
                alias = span.attributes["django_observability.cache.alias"]
                assert span.kind == "SPAN_KIND_CLIENT"
                assert span.status_code != "STATUS_CODE_ERROR"
                assert span.attributes["db.system.name"] == alias
                assert span.attributes["server.address"] == "127.0.0.1"
                assert span.attributes["server.port"] == (
                    redis.port if alias == "redis" else memcached.port
                )
                assert span.name == f"{span.attributes['db.operation.name']} {alias}"
                if alias == "redis":
                    # redis-py's command, a span of OpenTelemetry's Redis instrumentation.
                    (command,) = children_of(spans, span)
                    assert command.name == REDIS_COMMANDS[span.attributes["db.operation.name"]]
                    assert command.kind == "SPAN_KIND_CLIENT"

            text = http(server.url + "/metrics", headers=TOKEN).body.decode()
            counted = by_labels(text, OPS, "alias", "operation", "result")
            for alias in ("redis", "memcached"):
                assert counted[(alias, "set", "ok")] == 1
                assert counted[(alias, "get", "hit")] == 1
                assert counted[(alias, "get", "miss")] == 1
                assert counted[(alias, "get_many", "hit")] == 1
                assert counted[(alias, "get_many", "miss")] == 1
            commands = by_labels(text, REDIS_COUNT, "operation", "server_address", "result")
            assert commands == {
                ("SET", "127.0.0.1", "ok"): 1,
                ("GET", "127.0.0.1", "ok"): 2,
                ("MGET", "127.0.0.1", "ok"): 1,
            }
        finally:
            server.stop()
