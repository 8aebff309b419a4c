"""MemcachedCheck: which servers, ``version`` over a socket, every server, one bounded budget.

Fake servers here answer the ``version`` command; tests/test_peers_dependency_checks.py
runs the check against a real memcached stopped with SIGSTOP.
"""

from __future__ import annotations

import time

import pytest

pytest.register_assert_rewrite("tests.fake_peers")
from django.test import Client, override_settings  # noqa: E402

from django_observability.health import registry  # noqa: E402
from django_observability.health.base import FAIL, PASS, HealthError  # noqa: E402
from django_observability.health.memcached import MemcachedCheck, MemcachedServer, cache_servers  # noqa: E402
from django_observability.health.runner import CheckSpec, run_check  # noqa: E402
from tests.fake_peers import FakeServer, Peer  # noqa: E402
from tests.health_state import fresh_health  # noqa: E402, F401

# The fixtures silent_port, refused_port and tls_files.
pytest_plugins = ["tests.fake_peers"]

MEMCACHED = "django_observability.health.memcached.MemcachedCheck"
PYMEMCACHE = "django.core.cache.backends.memcached.PyMemcacheCache"


def memcached_like(reply: bytes = b"VERSION 1.6.18\r\n"):
    def handle(peer: Peer) -> None:
        while (line := peer.line()) is not None:
            if line == b"version":
                peer.send(reply)
            else:
                peer.send(b"ERROR\r\n")

    return handle


# --- which servers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "shown", "host", "port", "path"),
    [
        ("10.0.0.5:11212", "10.0.0.5:11212", "10.0.0.5", 11212, None),
        ("cache.internal", "cache.internal:11211", "cache.internal", 11211, None),
        ("[::1]:11213", "[::1]:11213", "::1", 11213, None),
        (
            "unix:/run/memcached.sock",
            "unix:/run/memcached.sock",
            None,
            11211,
            "/run/memcached.sock",
        ),
        ("/run/mc.sock", "unix:/run/mc.sock", None, 11211, "/run/mc.sock"),
    ],
)
def test_server_locations(location, shown, host, port, path):
    server = MemcachedServer.parse(location)
    assert (server.shown, server.host, server.port, server.path) == (shown, host, port, path)


def test_every_server_of_a_memcached_cache():
    caches = {
        "default": {"BACKEND": PYMEMCACHE, "LOCATION": "a:1;b:2,c:3"},
        "listed": {
            "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
            "LOCATION": ["d:4", "e:5"],
        },
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    with override_settings(CACHES=caches):
        assert cache_servers("default") == ["a:1", "b:2", "c:3"]
        assert cache_servers("listed") == ["d:4", "e:5"]
        with pytest.raises(HealthError, match="is not a memcached cache"):
            cache_servers("local")
        with pytest.raises(HealthError, match="no cache alias"):
            cache_servers("nope")


def test_a_bad_location_fails_the_check():
    result = run_check(CheckSpec("mc", MemcachedCheck(servers=["host:port:what"]), 0.5))
    assert result.status == FAIL
    assert "is not host:port" in result.components[0].output


# --- the conversation ---------------------------------------------------------------


def test_a_server_that_answers_version_passes():
    with FakeServer(memcached_like()) as fake:
        components = MemcachedCheck(servers=[f"127.0.0.1:{fake.port}"], timeout=2.0).run()
    assert [c.status for c in components] == [PASS]
    assert components[0].component_id == f"127.0.0.1:{fake.port}"
    assert components[0].component_type == "datastore"
    assert components[0].observed_unit == "ms"
    assert fake.received == [b"version"]


def test_an_unexpected_reply_fails():
    with FakeServer(memcached_like(reply=b"SERVER_ERROR out of memory\r\n")) as fake:
        components = MemcachedCheck(servers=f"127.0.0.1:{fake.port}", timeout=2.0).run()
    assert components[0].status == FAIL
    assert components[0].output == f"127.0.0.1:{fake.port}: version: SERVER_ERROR out of memory"


def test_a_unix_socket(tmp_path):
    path = str(tmp_path / "mc.sock")
    with FakeServer(memcached_like(), unix_path=path):
        components = MemcachedCheck(servers=[f"unix:{path}"], timeout=2.0).run()
    assert components[0].status == PASS


def test_every_server_must_answer(refused_port):
    """One component per server; one that is down fails the check."""
    with FakeServer(memcached_like()) as fake:
        caches = {
            "default": {
                "BACKEND": PYMEMCACHE,
                "LOCATION": [f"127.0.0.1:{fake.port}", f"127.0.0.1:{refused_port}"],
            }
        }
        with override_settings(CACHES=caches):
            result = run_check(CheckSpec("memcached", MemcachedCheck(timeout=2.0), 2.0))
    assert [c.status for c in result.components] == [PASS, FAIL]
    assert result.status == FAIL
    assert [c.component_id for c in result.components] == [
        f"127.0.0.1:{fake.port}",
        f"127.0.0.1:{refused_port}",
    ]


# --- bounded ------------------------------------------------------------------------


def test_a_server_that_never_answers_fails_within_the_timeout(silent_port):
    start = time.monotonic()
    components = MemcachedCheck(servers=[f"127.0.0.1:{silent_port}"], timeout=0.3).run()
    elapsed = time.monotonic() - start
    assert components[0].status == FAIL
    assert components[0].output == f"127.0.0.1:{silent_port}: no answer within 0.3 s"
    assert elapsed < 1.5, elapsed


def test_one_budget_for_all_servers(silent_port):
    with FakeServer(memcached_like()) as fake:
        start = time.monotonic()
        check = MemcachedCheck(
            servers=[f"127.0.0.1:{silent_port}", f"127.0.0.1:{fake.port}"], timeout=0.3
        )
        components = check.run()
        elapsed = time.monotonic() - start
    assert [c.status for c in components] == [FAIL, FAIL]
    assert "not checked" in components[1].output
    assert elapsed < 0.6 + 0.5, elapsed


def test_readiness_with_a_hung_memcached_answers_in_time(silent_port):
    caches = {"default": {"BACKEND": PYMEMCACHE, "LOCATION": f"127.0.0.1:{silent_port}"}}
    client = Client()
    with override_settings(
        CACHES=caches,
        OBSERVABILITY_HEALTH_CHECKS={"memcached": (MEMCACHED, {"timeout": 0.3})},
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["memcached"],
        OBSERVABILITY_HEALTH_CACHE_SECONDS=0,
        OBSERVABILITY_HEALTH_DEADLINE=0.6,
    ):
        registry.reset()
        client.get("/health/live/")  # the first request of a process loads the URLconf
        for _ in range(3):
            start = time.monotonic()
            response = client.get("/health/ready/")
            assert time.monotonic() - start < 0.9
            assert response.status_code == 503


def test_loaded_from_the_settings():
    with (
        FakeServer(memcached_like()) as fake,
        override_settings(
            OBSERVABILITY_HEALTH_CHECKS={
                "sessions": (MEMCACHED, {"servers": [f"127.0.0.1:{fake.port}"]})
            },
            OBSERVABILITY_HEALTH_READINESS_CHECKS=["sessions"],
        ),
    ):
        registry.reset()
        assert isinstance(registry.all_specs()["sessions"].check, MemcachedCheck)
        response = Client().get("/health/ready/")
    assert response.status_code == 200
