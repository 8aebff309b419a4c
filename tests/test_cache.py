"""Cache metrics, spans and per-request counts for every alias, BACKEND untouched (``cache.py``)."""

import json
import logging

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import call_command
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path
from opentelemetry.trace import SpanKind, StatusCode

from django_observability import cache as cache_module
from django_observability.logging import JsonFormatter
from django_observability.tracing import trace_operation
from tests.clients import AsyncHTTP, SyncHTTP
from tests.spans import server_spans

OPS = "cache_operations_total"
DURATION = "cache_operation_duration_seconds_count"

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
DATABASE = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "observability_cache_table",
    }
}


class BrokenCache(LocMemCache):
    """A backend whose reads and writes fail as a network cache's do when its server is down."""

    def get(self, key, default=None, version=None):
        raise ConnectionError("cache server down")

    def set(self, key, value, timeout=None, version=None):
        raise ConnectionError("cache server down")


class TwoTierCache(LocMemCache):
    """A backend that reads through to another alias: both operations happened."""

    def get(self, key, default=None, version=None):
        return caches["second"].get(key, default, version)


# --- a small URLconf of its own (ROOT_URLCONF="tests.test_cache") ----------------------


def cached_view(request):
    cache.set("here", 1)
    cache.get("here")  # hit
    cache.get("absent")  # miss
    cache.get_many(["here", "absent", "gone"])  # 1 hit, 2 misses
    return HttpResponse("ok")


async def async_cached_view(request):
    await cache.aset("here", 1)
    await cache.aget("here")
    await cache.aget("absent")
    await cache.aget_many(["here", "absent", "gone"])
    return HttpResponse("ok")


def uncached_view(request):
    return HttpResponse("ok")


urlpatterns = [
    path("cached/", cached_view),
    path("async-cached/", async_cached_view),
    path("uncached/", uncached_view),
]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(params=["locmem", "database"])
def any_cache(request):
    """The default alias with Django's in-process and database backends."""
    if request.param == "database":
        request.getfixturevalue("db")
        with override_settings(CACHES=DATABASE):
            call_command("createcachetable", verbosity=0)
            yield caches["default"]
            caches["default"].clear()
    else:
        with override_settings(CACHES=LOCMEM):
            yield caches["default"]
            caches["default"].clear()


@pytest.fixture
def locmem():
    with override_settings(CACHES=LOCMEM):
        yield caches["default"]
        caches["default"].clear()


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="django_observability.access")
    formatter = JsonFormatter()
    return lambda: [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name == "django_observability.access"
    ]


def ops(samples, operation, result, alias="default"):
    return samples.value(OPS, alias=alias, operation=operation, result=result) or 0


def durations(samples, operation, alias="default"):
    return samples.value(DURATION, alias=alias, operation=operation) or 0


def cache_spans(exporter):
    return [
        s
        for s in exporter.get_finished_spans()
        if s.kind == SpanKind.CLIENT and "django_observability.cache.alias" in s.attributes
    ]


# --- the backend stays the user's --------------------------------------------------------


def test_the_backend_class_and_settings_stay_the_users(any_cache):
    expected = DatabaseCache if "DatabaseCache" in settings.CACHES["default"]["BACKEND"] else None
    assert type(any_cache) is (expected or LocMemCache)
    assert settings.CACHES["default"]["BACKEND"].startswith("django.core.cache.backends.")
    assert cache_module.is_instrumented(any_cache)
    # The class is untouched: another instance made outside caches[] is not wrapped.
    assert "get" not in vars(type(any_cache)) or type(any_cache).get is vars(type(any_cache))["get"]
    assert not cache_module.is_instrumented(LocMemCache("elsewhere", {}))


# --- reads: hits and misses -------------------------------------------------------------


def test_get_counts_hits_and_misses_and_returns_what_the_backend_has(any_cache, samples):
    any_cache.set("k", "v")
    any_cache.set("none", None)
    assert any_cache.get("k") == "v"
    assert any_cache.get("none", "default") is None  # a stored None is a hit
    assert any_cache.get("absent", "default") == "default"
    assert any_cache.get("absent") is None
    assert ops(samples, "get", "hit") == 2
    assert ops(samples, "get", "miss") == 2
    assert ops(samples, "set", "ok") == 2
    assert durations(samples, "get") == 4
    assert durations(samples, "set") == 2


def test_get_many_counts_each_distinct_key(any_cache, samples):
    any_cache.set_many({"a": 1, "b": 2})
    assert any_cache.get_many(["a", "b", "c", "c"]) == {"a": 1, "b": 2}
    assert any_cache.get_many(iter(["a", "x"])) == {"a": 1}  # an iterator, read once
    assert ops(samples, "get_many", "hit") == 3
    assert ops(samples, "get_many", "miss") == 2
    assert durations(samples, "get_many") == 2  # one observation per call
    assert ops(samples, "set_many", "ok") == 1
    # BaseCache.get_many/set_many call get/set per key: those are not operations of their own.
    assert ops(samples, "get", "hit") + ops(samples, "get", "miss") == 0
    assert ops(samples, "set", "ok") == 0


def test_nested_operations_are_counted_once(any_cache, samples):
    calls = []
    assert any_cache.get_or_set("g", lambda: calls.append(1) or 5) == 5  # miss: computed
    assert any_cache.get_or_set("g", lambda: calls.append(1) or 6) == 5  # hit
    assert any_cache.get_or_set("plain", 7) == 7  # a non-callable default still works
    assert calls == [1]
    assert ops(samples, "get_or_set", "miss") == 2
    assert ops(samples, "get_or_set", "hit") == 1
    any_cache.set("n", 1)
    assert any_cache.incr("n") == 2
    assert "n" in any_cache
    assert not any_cache.has_key("nothing")
    assert ops(samples, "incr", "ok") == 1
    assert ops(samples, "has_key", "hit") == 1
    assert ops(samples, "has_key", "miss") == 1
    # get_or_set's inner get/add, incr's inner get/set (DatabaseCache: BaseCache's) and
    # has_key's inner get are none of them counted.
    assert ops(samples, "get", "hit") + ops(samples, "get", "miss") == 0
    assert ops(samples, "add", "ok") == 0
    assert ops(samples, "set", "ok") == 1


def test_async_operations_are_counted_once(any_cache, samples):
    async def work():
        await any_cache.aset("k", "v")
        assert await any_cache.aget("k") == "v"
        assert await any_cache.aget("absent", "d") == "d"
        assert await any_cache.aget_many(["k", "absent"]) == {"k": "v"}
        assert await any_cache.aget_or_set("g", 3) == 3
        await any_cache.adelete("k")

    # async_to_sync: the thread-sensitive sync_to_async calls run in this thread, with
    # the test's database connection.
    async_to_sync(work)()
    assert ops(samples, "set", "ok") == 1  # aset -> sync_to_async(set): once
    assert ops(samples, "get", "hit") == 1
    assert ops(samples, "get", "miss") == 1
    assert ops(samples, "get_many", "hit") == 1
    assert ops(samples, "get_many", "miss") == 1
    assert ops(samples, "get_or_set", "miss") == 1
    assert ops(samples, "delete", "ok") == 1
    assert durations(samples, "get") == 2


def test_operations_of_another_alias_inside_one_are_counted(samples):
    two_tier = {
        "default": {"BACKEND": "tests.test_cache.TwoTierCache"},
        "second": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    with override_settings(CACHES=two_tier):
        caches["second"].set("k", 1)
        assert caches["default"].get("k") == 1
    assert ops(samples, "get", "hit", alias="default") == 1
    assert ops(samples, "get", "hit", alias="second") == 1


# --- errors ------------------------------------------------------------------------------


def test_errors_pass_through_unchanged_and_count_as_errors(samples, spans):
    with override_settings(CACHES={"default": {"BACKEND": "tests.test_cache.BrokenCache"}}):
        broken = caches["default"]
        with trace_operation("parent"):
            with pytest.raises(ConnectionError, match="cache server down"):
                broken.get("k")
            with pytest.raises(ConnectionError):
                broken.set("k", 1)

            async def aread():
                await broken.aget("k")

            with pytest.raises(ConnectionError):
                async_to_sync(aread)()
    assert ops(samples, "get", "error") == 2
    assert ops(samples, "set", "error") == 1
    assert ops(samples, "get", "miss") + ops(samples, "get", "hit") == 0
    assert durations(samples, "get") == 2
    failed = cache_spans(spans)
    assert len(failed) == 3
    for span in failed:
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes["error.type"] == "ConnectionError"


def test_a_fault_in_our_recording_never_reaches_the_caller(locmem, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("recording fault")

    monkeypatch.setattr(cache_module, "count_cache", broken)
    locmem.set("k", 1)
    assert locmem.get("k") == 1
    assert "could not record a cache operation" in caplog.text


# --- spans -------------------------------------------------------------------------------


@override_settings(ROOT_URLCONF="tests.test_cache")
def test_spans_are_children_of_the_request_span(http, spans, locmem):
    assert http.get("/cached/" if http.mode == "sync" else "/async-cached/").status_code == 200
    (server,) = server_spans(spans)
    made = cache_spans(spans)
    assert [s.attributes["db.operation.name"] for s in made] == ["set", "get", "get", "get_many"]
    for span in made:
        assert span.parent.span_id == server.context.span_id
        assert span.attributes["db.system.name"] == "django.locmem"
        assert span.attributes["django_observability.cache.alias"] == "default"
        assert span.name == f"{span.attributes['db.operation.name']} default"
    assert [s.attributes.get("django_observability.cache.hit") for s in made[1:3]] == [True, False]
    assert made[3].attributes["django_observability.cache.hits"] == 1
    assert made[3].attributes["django_observability.cache.misses"] == 2
    # Never a key or a value.
    assert "here" not in str([dict(s.attributes) for s in made])
    assert server.attributes["django_observability.cache.hits"] == 2
    assert server.attributes["django_observability.cache.misses"] == 3
    # A request without cache reads has no such attributes.
    spans.clear()
    http.get("/uncached/")
    (server,) = server_spans(spans)
    assert "django_observability.cache.hits" not in server.attributes


def test_no_span_outside_a_trace_nor_where_spans_are_suppressed(spans, locmem, samples):
    locmem.get("k")
    assert cache_spans(spans) == []
    with trace_operation("a job"):
        locmem.get("k")
    (span,) = cache_spans(spans)
    assert span.parent is not None
    assert ops(samples, "get", "miss") == 2  # counted either way


def test_database_cache_queries_are_children_of_the_cache_span(spans, db):
    with override_settings(CACHES=DATABASE):
        call_command("createcachetable", verbosity=0)
        with trace_operation("parent"):
            caches["default"].get("k")
    (cache_span,) = cache_spans(spans)
    assert cache_span.attributes["db.system.name"] == "sqlite"
    queries = [
        s
        for s in spans.get_finished_spans()
        if s.kind == SpanKind.CLIENT and s.parent and s.parent.span_id == cache_span.context.span_id
    ]
    assert queries
    assert all(q.attributes["db.system.name"] == "sqlite" for q in queries)


# --- per-request counts --------------------------------------------------------------------


@override_settings(ROOT_URLCONF="tests.test_cache")
def test_the_access_line_carries_the_requests_cache_hits_and_misses(http, lines, locmem):
    http.get("/cached/" if http.mode == "sync" else "/async-cached/")
    http.get("/uncached/")
    cached, uncached = lines()
    assert cached["cache"] == {"hits": 2, "misses": 3}
    assert uncached["cache"] == {"hits": 0, "misses": 0}


# --- switches -----------------------------------------------------------------------------


@override_settings(
    ROOT_URLCONF="tests.test_cache",
    OBSERVABILITY_CACHE_METRICS=False,
    OBSERVABILITY_TRACING_CACHE_SPANS=False,
)
def test_cache_instrumentation_can_be_switched_off(spans, samples, lines, locmem):
    SyncHTTP().get("/cached/")
    assert samples.series(OPS) == []
    assert cache_spans(spans) == []
    (line,) = lines()
    assert line["cache"] == {"hits": 0, "misses": 0}


@override_settings(OBSERVABILITY_TRACING_CACHE_SPANS=False)
def test_spans_alone_can_be_switched_off(spans, samples, locmem):
    with trace_operation("parent"):
        locmem.get("k")
    assert cache_spans(spans) == []
    assert ops(samples, "get", "miss") == 1


def test_uninstall_leaves_new_backends_alone():
    cache_module.uninstall()
    try:
        with override_settings(CACHES=LOCMEM):
            assert not cache_module.is_instrumented(caches["default"])
    finally:
        cache_module.install()
    with override_settings(CACHES=LOCMEM):
        backend = caches["default"]
        assert cache_module.is_instrumented(backend)
        cache_module.uninstrument(backend)
        assert "get" not in vars(backend)


# --- span facts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "server"),
    [
        ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379)),
        ("rediss://cache.internal/1", ("cache.internal", None)),
        ("127.0.0.1:11211", ("127.0.0.1", 11211)),
        ("[::1]:11211", ("::1", 11211)),
        (["10.0.0.1:11211"], ("10.0.0.1", 11211)),
        ("10.0.0.1:11211;10.0.0.2:11211", None),
        ("unix:/tmp/memcached.sock", None),
        ("unix:///tmp/redis.sock", None),
        ("/var/tmp/django_cache", None),
        ("my_cache_table", None),
        ("", None),
        (None, None),
    ],
)
def test_server_address_only_for_one_network_server(location, server):
    assert cache_module.single_server(location) == server


def test_backend_systems():
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.memcached import PyMemcacheCache
    from django.core.cache.backends.redis import RedisCache

    def system(cls):
        # Only the class matters; made without __init__ (no client library needed).
        return cache_module.backend_system(object.__new__(cls))

    assert system(RedisCache) == "redis"
    assert system(PyMemcacheCache) == "memcached"
    assert system(LocMemCache) == "django.locmem"
    assert system(FileBasedCache) == "django.filebased"
    assert system(DummyCache) == "django.dummy"
    assert system(BrokenCache) == "django.locmem"
    assert system(object) == "other"


def test_wrappers_look_like_the_bound_methods_they_replace(locmem):
    # Django 6.1's async defaults compare self.get_many.__func__ with BaseCache's.
    from django.core.cache.backends.base import BaseCache

    assert locmem.get_many.__func__ is BaseCache.get_many
    assert locmem.aget_many.__func__ is BaseCache.aget_many
    assert locmem.get.__func__ is LocMemCache.get
    assert locmem.get.__self__ is locmem
