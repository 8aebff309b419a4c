"""RedisCheck: which servers, the protocol's few lines, one bounded attempt, no password shown.

Fake Redis servers here speak just enough of the protocol; a Redis that never
answers is a socket that listens and reads nothing. tests/test_peers_dependency_checks.py
runs the check against a real redis-server stopped with SIGSTOP.
"""

from __future__ import annotations

import threading
import time

import pytest

pytest.register_assert_rewrite("tests.fake_peers")
from django.test import Client, override_settings  # noqa: E402

from django_observability.health import registry  # noqa: E402
from django_observability.health.base import FAIL, PASS, HealthError  # noqa: E402
from django_observability.health.redis import RedisCheck, RedisServer, cache_servers  # noqa: E402
from django_observability.health.runner import CheckSpec, run_check  # noqa: E402
from tests.fake_peers import FakeServer, Peer  # noqa: E402
from tests.health_state import fresh_health  # noqa: E402, F401

# The fixtures silent_port, refused_port and tls_files.
pytest_plugins = ["tests.fake_peers"]

REDIS = "django_observability.health.redis.RedisCheck"
DJANGO_REDIS = "django.core.cache.backends.redis.RedisCache"


def resp_lines(peer: Peer, count: int) -> list[bytes] | None:
    """One command in the protocol's array form: ``*N``, then ``$len`` and the argument N times."""
    head = peer.line()
    if head is None:
        return None
    assert head.startswith(b"*"), head
    args = []
    for _ in range(int(head[1:])):
        peer.line()  # $len
        args.append(peer.line())
    return args


def redis_like(password: str | None = None, ping_reply: bytes = b"+PONG\r\n"):
    """A handler answering AUTH (when it checks a password) and PING."""

    def handle(peer: Peer) -> None:
        authed = password is None
        while True:
            args = resp_lines(peer, 0)
            if args is None:
                return
            if args[0] == b"AUTH":
                authed = args[-1].decode() == password
                peer.send(
                    b"+OK\r\n" if authed else b"-WRONGPASS invalid username-password pair\r\n"
                )
            elif args[0] == b"PING":
                peer.send(ping_reply if authed else b"-NOAUTH Authentication required.\r\n")

    return handle


# --- which servers ------------------------------------------------------------------


def test_a_url_gives_host_port_and_credentials():
    server = RedisServer.from_url("redis://app:p%40ss@cache.internal:6380/2?socket_timeout=9")
    assert (server.host, server.port, server.username, server.password) == (
        "cache.internal",
        6380,
        "app",
        "p@ss",
    )
    assert server.shown == "redis://cache.internal:6380/2"
    assert not server.tls


def test_tls_and_unix_urls():
    tls = RedisServer.from_url("rediss://:pw@r.example.com/0")
    assert (tls.tls, tls.verify, tls.port, tls.password) == (True, True, 6379, "pw")
    assert not RedisServer.from_url("rediss://r.example.com/0?ssl_cert_reqs=none").verify
    unix = RedisServer.from_url("unix:///run/redis.sock?db=1")
    assert unix.path == "/run/redis.sock"
    assert unix.shown == "unix:///run/redis.sock"


def test_an_unknown_scheme_is_refused():
    with pytest.raises(HealthError, match="not a redis://"):
        RedisServer.from_url("memcached://h:1")


def test_every_server_of_a_django_redis_cache():
    caches = {
        "default": {
            "BACKEND": DJANGO_REDIS,
            "LOCATION": "redis://a:1/0,redis://b:2/0",
            "OPTIONS": {"password": "from-options"},
        },
        "listed": {"BACKEND": DJANGO_REDIS, "LOCATION": ["redis://c:3/0", "redis://:own@d:4/0"]},
        "django_redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://e:5/1",
            "OPTIONS": {"PASSWORD": "dr"},
        },
    }
    with override_settings(CACHES=caches):
        assert [(s.host, s.password) for s in cache_servers("default")] == [
            ("a", "from-options"),
            ("b", "from-options"),
        ]
        assert [(s.host, s.password) for s in cache_servers("listed")] == [
            ("c", None),
            ("d", "own"),
        ]
        assert [(s.host, s.password) for s in cache_servers("django_redis")] == [("e", "dr")]


def test_a_cache_that_is_not_redis_fails_with_a_reason():
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=caches):
        with pytest.raises(HealthError, match="is not a Redis cache"):
            cache_servers("default")
        with pytest.raises(HealthError, match="no cache alias 'other'"):
            cache_servers("other")
        result = run_check(CheckSpec("redis", RedisCheck(), 0.5))
    assert result.status == FAIL


# --- the conversation ---------------------------------------------------------------


def test_a_redis_that_answers_pong_passes():
    with FakeServer(redis_like()) as fake:
        components = RedisCheck(url=f"redis://127.0.0.1:{fake.port}/0", timeout=2.0).run()
    assert [c.status for c in components] == [PASS]
    assert components[0].component_id == f"redis://127.0.0.1:{fake.port}/0"
    assert components[0].component_type == "datastore"
    assert components[0].observed_unit == "ms"
    assert components[0].observed_value >= 0
    assert fake.received == [b"*1", b"$4", b"PING"]


@pytest.mark.parametrize(
    ("userinfo", "sent"),
    [(":s3cret", [b"AUTH", b"s3cret"]), ("app:s3cret", [b"AUTH", b"app", b"s3cret"])],
)
def test_it_logs_in_before_ping(userinfo, sent):
    with FakeServer(redis_like(password="s3cret")) as fake:
        url = f"redis://{userinfo}@127.0.0.1:{fake.port}/0"
        components = RedisCheck(url=url, timeout=2.0).run()
    assert components[0].status == PASS
    assert [line for line in fake.received if not line.startswith((b"*", b"$"))] == [
        *sent,
        b"PING",
    ]
    assert "s3cret" not in components[0].component_id


def test_a_wrong_password_fails_without_showing_it():
    with FakeServer(redis_like(password="right")) as fake:
        url = f"redis://:wrong-s3cret@127.0.0.1:{fake.port}/0"
        result = run_check(CheckSpec("redis", RedisCheck(url=url, timeout=2.0), 2.0))
    assert result.status == FAIL
    output = result.components[0].output
    assert "WRONGPASS" in output
    assert "wrong-s3cret" not in output
    assert "wrong-s3cret" not in str(result.components[0].as_dict())


def test_no_password_where_one_is_needed_fails_with_noauth():
    with FakeServer(redis_like(password="x")) as fake:
        components = RedisCheck(url=f"redis://127.0.0.1:{fake.port}/0", timeout=2.0).run()
    assert components[0].status == FAIL
    assert "NOAUTH" in components[0].output


def test_a_redis_still_loading_fails():
    handler = redis_like(ping_reply=b"-LOADING Redis is loading the dataset in memory\r\n")
    with FakeServer(handler) as fake:
        components = RedisCheck(url=f"redis://127.0.0.1:{fake.port}/0", timeout=2.0).run()
    assert components[0].status == FAIL
    assert "LOADING" in components[0].output


def test_a_unix_socket(tmp_path):
    path = str(tmp_path / "redis.sock")
    with FakeServer(redis_like(), unix_path=path):
        components = RedisCheck(url=f"unix://{path}", timeout=2.0).run()
    assert components[0].status == PASS
    assert components[0].component_id == f"unix://{path}"


# --- bounded ------------------------------------------------------------------------


def test_a_redis_that_never_answers_fails_within_the_timeout(silent_port):
    url = f"redis://:s3cret@127.0.0.1:{silent_port}/0"
    start = time.monotonic()
    # The check itself, not the runner (which reports "timed out" past the timeout).
    components = RedisCheck(url=url, timeout=0.3).run()
    elapsed = time.monotonic() - start
    assert components[0].status == FAIL
    assert elapsed < 1.5, elapsed  # the attempt itself ends, not only the probe
    output = components[0].output
    assert output == f"redis://127.0.0.1:{silent_port}/0: no answer within 0.3 s"


def test_a_refused_connection_fails(refused_port):
    components = RedisCheck(url=f"redis://127.0.0.1:{refused_port}/0", timeout=2.0).run()
    assert components[0].status == FAIL
    assert "ConnectionRefusedError" in components[0].output


def test_one_budget_for_all_servers(silent_port):
    """A hung first server spends the timeout; the next is reported, not waited for."""
    with FakeServer(redis_like()) as fake:
        caches = {
            "default": {
                "BACKEND": DJANGO_REDIS,
                "LOCATION": f"redis://127.0.0.1:{silent_port}/0,redis://127.0.0.1:{fake.port}/0",
            }
        }
        with override_settings(CACHES=caches):
            start = time.monotonic()
            components = RedisCheck(timeout=0.3).run()
            elapsed = time.monotonic() - start
    assert [c.status for c in components] == [FAIL, FAIL]
    assert "no answer within" in components[0].output
    assert "not checked" in components[1].output
    assert elapsed < 0.6 + 0.5, elapsed


def test_the_timeout_defaults_to_the_health_timeout(silent_port):
    check = RedisCheck(url=f"redis://127.0.0.1:{silent_port}/0")
    with override_settings(OBSERVABILITY_HEALTH_TIMEOUT=0.2):
        start = time.monotonic()
        components = check.run()
    assert components[0].status == FAIL
    assert "within 0.2 s" in components[0].output
    assert time.monotonic() - start < 1.0


def test_readiness_with_a_hung_redis_answers_in_time_and_holds_one_thread(silent_port):
    checks = {"redis": (REDIS, {"url": f"redis://127.0.0.1:{silent_port}/0", "timeout": 5.0})}
    client = Client()
    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS=checks,
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["redis"],
        OBSERVABILITY_HEALTH_CACHE_SECONDS=0,
        OBSERVABILITY_HEALTH_DEADLINE=0.6,
    ):
        registry.reset()
        registry.all_specs()["redis"].timeout = 0.3  # the probe's budget, below the socket's
        client.get("/health/live/")  # the first request of a process loads the URLconf
        before = threading.active_count()
        for _ in range(5):
            start = time.monotonic()
            response = client.get("/health/ready/")
            assert time.monotonic() - start < 0.9
            assert response.status_code == 503
        assert threading.active_count() - before <= 1


def test_loaded_from_the_settings_with_a_cache_alias():
    with FakeServer(redis_like(password="pw")) as fake:
        caches = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "sessions": {
                "BACKEND": DJANGO_REDIS,
                "LOCATION": f"redis://127.0.0.1:{fake.port}/0",
                "OPTIONS": {"password": "pw"},
            },
        }
        with override_settings(
            CACHES=caches,
            # Its own name: a run of "redis" from a test above may still be in flight.
            OBSERVABILITY_HEALTH_CHECKS={
                "sessions": (REDIS, {"cache": "sessions", "timeout": 1.0})
            },
            OBSERVABILITY_HEALTH_READINESS_CHECKS=["sessions"],
        ):
            registry.reset()
            assert registry.all_specs()["sessions"].timeout == 1.0
            response = Client().get(
                "/health/ready/", HTTP_AUTHORIZATION="Bearer test-token-0123456789"
            )
    assert response.status_code == 200
    [component] = response.json()["checks"]["sessions"]
    assert component["componentId"] == f"redis://127.0.0.1:{fake.port}/0"
    assert component["componentType"] == "datastore"
    assert component["observedUnit"] == "ms"
