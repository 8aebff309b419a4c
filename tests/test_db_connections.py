"""Connections opened and failed, Django's pool from its statistics (``db_connections.py``),
and trace context in SQL comments (``sql_comments.py``).

SQLite for what needs a real database; the pool's side with a fake pool and
connection (the real pool, under gunicorn, is in ``test_peers_db_pool.py``).
"""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection, connections
from django.test import override_settings
from opentelemetry.trace import SpanKind

from django_observability import db_connections
from django_observability.sql_comments import comment, traceparent, with_trace_comment
from django_observability.tracing import trace_operation

CREATED = "db_client_connections_created_total"
ERRORS = "db_client_connection_errors_total"
TIMEOUTS = "db_client_connection_timeouts_total"
COUNT = "db_client_connection_count"


@pytest.fixture(autouse=True)
def forget_pools():
    db_connections._forget()
    yield
    db_connections._forget()


def sqlite_wrapper(alias: str, name: str):
    """A DatabaseWrapper of the test settings' engine for ``alias``, as Django makes them."""
    from django.db.backends.sqlite3.base import DatabaseWrapper

    settings = dict(connections.settings["default"], NAME=name)
    return DatabaseWrapper(settings, alias=alias)


# --- connections opened and failed, without a pool -------------------------------------------


@pytest.mark.django_db
def test_each_wrapper_django_makes_counts_the_connections_it_opens(samples, tmp_path):
    made = connections.create_connection("default")
    # A file (an in-memory database is never closed by Django).
    made.settings_dict = dict(made.settings_dict, NAME=str(tmp_path / "db.sqlite3"))
    try:
        made.ensure_connection()
        made.ensure_connection()  # open already: nothing new
        assert samples.value(CREATED, alias="default") == 1
        made.close()
        made.ensure_connection()
        assert samples.value(CREATED, alias="default") == 2
        assert samples.value(ERRORS, alias="default") is None
    finally:
        made.close()


@pytest.mark.django_db
def test_a_failed_connection_is_counted_and_raised_unchanged(samples, tmp_path):
    broken = sqlite_wrapper("broken", str(tmp_path / "no-such-dir" / "db.sqlite3"))
    db_connections.instrument(broken)
    with pytest.raises(OperationalError):
        broken.ensure_connection()
    assert samples.value(ERRORS, alias="broken") == 1
    assert samples.value(CREATED, alias="broken") is None


@pytest.mark.django_db
def test_instrumenting_twice_counts_once(samples):
    made = sqlite_wrapper("twice", ":memory:")
    db_connections.instrument(made)
    db_connections.instrument(made)
    try:
        made.ensure_connection()
    finally:
        made.close()
    assert samples.value(CREATED, alias="twice") == 1


@pytest.mark.django_db
@override_settings(OBSERVABILITY_DB_CONNECTION_METRICS=False)
def test_switched_off_nothing_is_counted(samples, tmp_path):
    made = connections.create_connection("default")
    made.ensure_connection()
    made.close()
    broken = sqlite_wrapper("broken", str(tmp_path / "no-such-dir" / "db.sqlite3"))
    db_connections.instrument(broken)
    with pytest.raises(OperationalError):
        broken.ensure_connection()
    assert samples.series(CREATED) == []
    assert samples.series(ERRORS) == []


# --- Django's pool, from its statistics (a fake pool) -------------------------------------


class FakePool:
    """What db_connections reads of a psycopg_pool.ConnectionPool."""

    def __init__(self, **stats):
        self.closed = False
        self.stats = {
            "pool_min": 1,
            "pool_max": 4,
            "pool_size": 1,
            "pool_available": 1,
            "requests_waiting": 0,
        }
        self.stats.update(stats)

    def get_stats(self):
        return dict(self.stats)


class PooledConnection:
    """A postgresql DatabaseWrapper with OPTIONS["pool"], as far as db_connections looks."""

    vendor = "postgresql"

    def __init__(self, pool, alias="pooled"):
        self.alias = alias
        self.settings_dict = {"OPTIONS": {"pool": {"max_size": 4}}}
        self.pool = pool
        self.fail_with = None
        self.taken = 0

    def connect(self):
        if self.fail_with is not None:
            raise self.fail_with
        self.taken += 1


def gauges(samples, alias="pooled"):
    return {
        "used": samples.value(COUNT, alias=alias, state="used"),
        "idle": samples.value(COUNT, alias=alias, state="idle"),
        "max": samples.value("db_client_connection_max", alias=alias),
        "pending": samples.value("db_client_connection_pending_requests", alias=alias),
    }


def counters(samples, alias="pooled"):
    names = {
        "created": CREATED,
        "errors": ERRORS,
        "requests": "db_client_connection_requests_total",
        "queued": "db_client_connection_queued_requests_total",
        "wait": "db_client_connection_wait_time_seconds_total",
    }
    return {key: samples.value(name, alias=alias) for key, name in names.items()}


def test_a_pooled_connect_counts_no_connection_the_pool_reads_its_own(samples):
    pool = FakePool(connections_num=3, connections_errors=1, requests_num=5)
    pooled = PooledConnection(pool)
    db_connections.instrument(pooled)
    pooled.connect()
    pooled.connect()
    assert pooled.taken == 2
    # Two takes from the pool, but the pool opened two connections (three tries, one failed).
    assert counters(samples)["created"] == 2
    assert counters(samples)["errors"] == 1
    assert counters(samples)["requests"] == 5


def test_pool_state_and_counters_follow_its_statistics(samples):
    pool = FakePool(
        pool_size=3,
        pool_available=1,
        requests_waiting=2,
        requests_num=10,
        requests_queued=4,
        requests_wait_ms=1500,
        connections_num=3,
    )
    pooled = PooledConnection(pool)
    db_connections.instrument(pooled)
    pooled.connect()
    assert gauges(samples) == {"used": 2, "idle": 1, "max": 4, "pending": 2}
    assert counters(samples) == {
        "created": 3,
        "errors": None,
        "requests": 10,
        "queued": 4,
        "wait": 1.5,
    }
    pool.stats.update(
        pool_size=4, pool_available=4, requests_waiting=0, requests_num=12, requests_wait_ms=2000
    )
    db_connections.sample_pools()
    assert gauges(samples) == {"used": 0, "idle": 4, "max": 4, "pending": 0}
    assert counters(samples)["requests"] == 12
    assert counters(samples)["wait"] == 2.0
    # The project's own pop_stats() resets the pool's counters: counted from zero again.
    pool.stats.update(requests_num=1, requests_wait_ms=0)
    db_connections.sample_pools()
    assert counters(samples)["requests"] == 13
    assert counters(samples)["wait"] == 2.0


def test_a_pool_timeout_is_a_timeout_other_failures_are_errors(samples):
    psycopg_pool = pytest.importorskip("psycopg_pool")
    PoolTimeout, TooManyRequests = psycopg_pool.PoolTimeout, psycopg_pool.TooManyRequests

    pooled = PooledConnection(FakePool())
    db_connections.instrument(pooled)
    pooled.fail_with = PoolTimeout("couldn't get a connection after 1.00 sec")
    with pytest.raises(PoolTimeout):
        pooled.connect()
    assert samples.value(TIMEOUTS, alias="pooled") == 1
    assert samples.value(ERRORS, alias="pooled") is None
    pooled.fail_with = TooManyRequests("the pool has already 8 requests waiting")
    with pytest.raises(TooManyRequests):
        pooled.connect()
    assert samples.value(TIMEOUTS, alias="pooled") == 1
    assert samples.value(ERRORS, alias="pooled") == 1


def test_a_closed_pool_reads_empty_and_its_successor_counts_from_zero(samples):
    first = FakePool(pool_size=2, pool_available=1, requests_num=7)
    pooled = PooledConnection(first)
    db_connections.instrument(pooled)
    pooled.connect()
    first.closed = True
    db_connections.sample_pools()
    assert gauges(samples) == {"used": 0, "idle": 0, "max": 0, "pending": 0}
    second = FakePool(pool_size=1, pool_available=0, requests_num=2)
    pooled.pool = second
    pooled.connect()
    assert gauges(samples)["used"] == 1
    assert counters(samples)["requests"] == 9


@override_settings(OBSERVABILITY_DB_POOL_METRICS_INTERVAL=0.05)
def test_a_thread_reads_the_pool_every_interval(samples):
    pool = FakePool(pool_size=1, pool_available=1)
    pooled = PooledConnection(pool)
    db_connections.instrument(pooled)
    pooled.connect()
    assert gauges(samples)["pending"] == 0
    pool.stats.update(pool_size=4, pool_available=0, requests_waiting=3)
    deadline = time.monotonic() + 5
    while gauges(samples)["pending"] != 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gauges(samples) == {"used": 4, "idle": 0, "max": 4, "pending": 3}
    threads = [
        t for t in __import__("threading").enumerate() if t.name == "django-observability-db-pool"
    ]
    assert len(threads) == 1


def test_a_broken_pool_never_breaks_the_request(samples, caplog):
    class Broken(FakePool):
        def get_stats(self):
            raise RuntimeError("stats gone")

    pooled = PooledConnection(Broken())
    db_connections.instrument(pooled)
    pooled.connect()
    assert pooled.taken == 1
    assert "could not read the pool" in caplog.text


# --- sqlcommenter ---------------------------------------------------------------------------


class Context:
    def __init__(
        self, trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0xF067AA0BA902B7, sampled=True
    ):
        from opentelemetry.trace import SpanContext, TraceFlags

        self.context = SpanContext(
            trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1 if sampled else 0)
        )

    def get_span_context(self):
        return self.context


PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_comment_follows_the_sqlcommenter_serialization():
    assert comment([("traceparent", PARENT)]) == f"/*traceparent='{PARENT}'*/"
    # Sorted by key; keys and values URL-encoded, then ' escaped.
    assert (
        comment([("route", "/items/<int:pk>/"), ("action", "it's"), ("a b", "c=d,e")])
        == "/*a%20b='c%3Dd%2Ce',action='it%27s',route='%2Fitems%2F%3Cint%3Apk%3E%2F'*/"
    )


def test_traceparent_only_for_a_valid_sampled_context():
    assert traceparent(Context().context) == PARENT
    assert traceparent(Context(sampled=False).context) is None
    assert traceparent(Context(trace_id=0).context) is None


def test_with_trace_comment_places_the_comment_as_the_spec_says():
    span = Context()
    assert with_trace_comment("SELECT 1", None, span) == f"SELECT 1 /*traceparent='{PARENT}'*/"
    assert with_trace_comment("SELECT 1;  ", None, span) == f"SELECT 1 /*traceparent='{PARENT}'*/;"
    # A statement with a comment already is left as it is.
    assert with_trace_comment("SELECT /* mine */ 1", None, span) == "SELECT /* mine */ 1"
    assert with_trace_comment("SELECT 1 -- mine", None, span) == "SELECT 1 -- mine"
    assert with_trace_comment("SELECT 1", None, Context(sampled=False)) == "SELECT 1"


def test_each_span_gets_its_own_comment():
    first, second = Context(span_id=1), Context(span_id=2)
    texts = [with_trace_comment("SELECT 1", None, span) for span in (first, second, first)]
    assert [text[-22:-6] for text in texts] == [
        "0000000000000001",
        "0000000000000002",
        "0000000000000001",
    ]
    assert with_trace_comment("SELECT 1", None, Context(sampled=False)) == "SELECT 1"


def sent_to_sqlite(run):
    """The statements SQLite itself received while ``run()`` ran."""
    connection.ensure_connection()
    seen: list[str] = []
    connection.connection.set_trace_callback(seen.append)
    try:
        run()
    finally:
        connection.connection.set_trace_callback(None)
    return seen


def select_one():
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s", [1])


@pytest.mark.django_db
@override_settings(OBSERVABILITY_DB_SQL_COMMENTS=True)
def test_the_database_receives_the_query_span_as_traceparent(spans):
    def run():
        with trace_operation("work"):
            select_one()

    (statement,) = sent_to_sqlite(run)
    (query_span,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    context = query_span.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    assert statement == f"SELECT 1 /*traceparent='{expected}'*/"
    # The span keeps the statement as the code wrote it.
    assert query_span.attributes["db.query.text"] == "SELECT %s"


@pytest.mark.django_db
@override_settings(OBSERVABILITY_DB_SQL_COMMENTS=True, OBSERVABILITY_TRACING_DB_SPANS=False)
def test_without_query_spans_the_current_span_is_the_traceparent(spans):
    parent = []

    def run():
        with trace_operation("work") as span:
            parent.append(span.get_span_context())
            select_one()

    (statement,) = sent_to_sqlite(run)
    context = parent[0]
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    assert statement == f"SELECT 1 /*traceparent='{expected}'*/"


@pytest.mark.django_db
def test_no_comment_by_default_nor_outside_a_sampled_trace(spans):
    assert sent_to_sqlite(lambda: trace_operation_select()) == ["SELECT 1"]
    with override_settings(OBSERVABILITY_DB_SQL_COMMENTS=True):
        # No trace around the query: its own span is a root span, sampled by the
        # default sampler, so it is commented; an unsampled trace is not.
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        from django_observability import tracing

        tracing.use_tracer_provider(TracerProvider(sampler=ALWAYS_OFF))
        try:
            assert sent_to_sqlite(trace_operation_select) == ["SELECT 1"]
        finally:
            tracing.use_tracer_provider(None)


def trace_operation_select():
    with trace_operation("work"):
        select_one()
