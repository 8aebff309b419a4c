"""redis_client.py: redis-py's commands timed for our metric; OpenTelemetry's Redis spans.

Without a server, commands to a closed port show the error path; the
``peers`` part runs a private redis-server (Debian's) for the rest.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis
import redis.asyncio
from django.core.cache import caches
from django.test import override_settings
from opentelemetry.trace import SpanKind, StatusCode

from django_observability import redis_client
from django_observability.metrics import get_metrics, reset_metrics
from django_observability.tracing import trace_operation
from tests.peers import free_port

DURATION = "redis_command_duration_seconds_count"


def counted(samples, operation, result, server="127.0.0.1"):
    return samples.value(DURATION, operation=operation, server_address=server, result=result)


@pytest.fixture(autouse=True)
def wrapped():
    """The wrappers as ready() leaves them (redis is imported: on), whatever a test changed."""
    redis_client.wrap_redis()
    yield
    redis_client.wrap_redis()


def closed_client(**kwargs):
    return redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=None, **kwargs
    )


# --- without a server: the error path, labels, faults ------------------------------------


def test_a_refused_command_raises_its_own_error_counted_as_error(samples):
    with pytest.raises(redis.ConnectionError):
        closed_client().get("k")
    assert counted(samples, "GET", "error") == 1
    assert counted(samples, "GET", "ok") is None


def test_a_refused_pipeline_is_one_pipeline_error(samples):
    pipe = closed_client().pipeline()
    pipe.set("a", 1).get("a")
    with pytest.raises(redis.ConnectionError):
        pipe.execute()
    assert counted(samples, "PIPELINE", "error") == 1
    assert counted(samples, "SET", "error") is None  # buffered, not sent one by one


def test_an_empty_pipeline_sends_nothing_and_counts_nothing(samples):
    assert closed_client().pipeline().execute() == []
    assert counted(samples, "PIPELINE", "error") is None


def test_async_commands_and_pipelines_are_timed(samples):
    async def run():
        client = redis.asyncio.Redis(
            host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=None
        )
        with pytest.raises(redis.ConnectionError):
            await client.get("k")
        pipe = client.pipeline()
        pipe.get("k")
        with pytest.raises(redis.ConnectionError):
            await pipe.execute()
        await client.aclose()

    asyncio.run(run())
    assert counted(samples, "GET", "error") == 1
    assert counted(samples, "PIPELINE", "error") == 1


def test_the_operation_label_is_the_commands_name_upper_case():
    assert redis_client._operation(("get", "k")) == "GET"
    assert redis_client._operation((b"hset", "h", "f", 1)) == "HSET"
    assert redis_client._operation(("CLIENT SETNAME", "x")) == "CLIENT"
    assert redis_client._operation(()) == "unknown"
    assert redis_client._operation((object(),)) == "unknown"


def test_server_address_is_the_pools_host_or_unix():
    assert redis_client.server_address(redis.Redis(host="cache.internal")) == "cache.internal"
    assert redis_client.server_address(redis.Redis(unix_socket_path="/run/r.sock")) == "unix"
    assert redis_client.server_address(object()) == "unknown"


def test_operations_sent_by_clients_are_capped(samples):
    with override_settings(OBSERVABILITY_METRICS_LABEL_CAP=2):
        reset_metrics()
        client = closed_client()
        for command in ("GET", "SET", "HGET", "LPUSH"):
            with pytest.raises(redis.ConnectionError):
                client.execute_command(command, "k")
        assert counted(samples, "_other", "error") == 2
    reset_metrics()


def test_a_fault_in_our_timing_never_changes_the_commands_outcome(monkeypatch, caplog):
    metrics = get_metrics()

    def broken(*args):
        raise RuntimeError("metrics trouble")

    monkeypatch.setattr(metrics, "record_redis_command", broken)
    with (
        caplog.at_level(logging.ERROR, logger="django_observability"),
        pytest.raises(redis.ConnectionError),
    ):
        closed_client().get("k")
    assert "metrics trouble" in caplog.text


def test_off_by_setting(samples):
    redis_client.unwrap_redis()
    with override_settings(OBSERVABILITY_REDIS_METRICS=False):
        redis_client._on_import()
    assert not redis_client._originals
    with pytest.raises(redis.ConnectionError):
        closed_client().get("k")
    assert counted(samples, "GET", "error") is None


def test_wrapped_once_and_unwrapped_to_the_original():
    wrapper = redis.client.Redis.__dict__["execute_command"]
    assert wrapper.__qualname__.startswith("_timed.")
    redis_client.wrap_redis()  # again: nothing doubled
    assert redis.client.Redis.__dict__["execute_command"] is wrapper
    redis_client.unwrap_redis()
    assert redis.client.Redis.__dict__["execute_command"].__qualname__ == "Redis.execute_command"


def test_no_spans_while_tracing_is_off():
    redis_client._instrument_spans()
    assert not redis_client.spans_enabled()


# --- a real redis-server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.peers_celery import running_redis

    with running_redis(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def client(server):
    client = redis.Redis.from_url(server.url, socket_timeout=2)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def traced_no_server(spans):
    redis_client._instrument_spans()
    assert redis_client.spans_enabled()
    yield spans
    redis_client.disable()


@pytest.fixture
def traced(spans):
    redis_client._instrument_spans()
    assert redis_client.spans_enabled()
    yield spans
    redis_client.disable()


@pytest.mark.peers
def test_commands_are_counted_by_operation_and_result(client, samples):
    client.set("k", "v")
    assert client.get("k") == b"v"
    with pytest.raises(redis.ResponseError):
        client.hget("k", "field")  # WRONGTYPE: the server answered with an error
    assert counted(samples, "SET", "ok") == 1
    assert counted(samples, "GET", "ok") == 1
    assert counted(samples, "HGET", "error") == 1


@pytest.mark.peers
def test_a_transaction_aborted_by_watch_is_ok(client, samples):
    with client.pipeline() as pipe:
        pipe.watch("k")
        client.set("k", "changed")  # another client's write
        pipe.multi()
        pipe.set("k", "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert counted(samples, "PIPELINE", "ok") == 1
    assert counted(samples, "PIPELINE", "error") is None
    assert counted(samples, "WATCH", "ok") == 1  # sent at once, not with the pipeline


@pytest.mark.peers
def test_a_stopped_server_times_out_counted_as_error(server, samples):
    client = redis.Redis.from_url(server.url, socket_timeout=0.3, retry=None)
    client.ping()
    server.pause()
    try:
        with pytest.raises(redis.TimeoutError):
            client.get("k")
    finally:
        server.resume()
    assert counted(samples, "GET", "error") == 1


@pytest.mark.peers
def test_command_spans_with_the_arguments_hidden(client, traced):
    with trace_operation("request") as parent:
        client.set("user:42:email", "jane@example.com")
    spans = traced.get_finished_spans()
    (command,) = [s for s in spans if s.name == "SET"]
    assert command.kind == SpanKind.CLIENT
    assert command.parent.span_id == parent.get_span_context().span_id
    text = command.attributes.get("db.query.text") or command.attributes.get("db.statement")
    assert text == "SET ? ?"
    assert "jane" not in repr(dict(command.attributes))


@pytest.mark.peers
def test_a_command_outside_any_trace_starts_no_trace_of_its_own(server, client, traced, samples):
    client.set("k", 1)  # no current span: Kombu's bookkeeping, a management command
    pipe = client.pipeline()
    pipe.get("k")
    pipe.execute()

    async def run():
        aclient = redis.asyncio.Redis.from_url(server.url)
        await aclient.get("k")
        with trace_operation("async work"):
            await aclient.get("k")
        await aclient.aclose()

    asyncio.run(run())
    names = [s.name for s in traced.get_finished_spans()]
    assert names == ["GET", "async work"]  # only the command inside a trace
    assert counted(samples, "SET", "ok") == 1  # the metric counts them all
    assert counted(samples, "PIPELINE", "ok") == 1
    assert counted(samples, "GET", "ok") == 2


@pytest.mark.peers
def test_rediscache_operations_have_their_command_spans_as_children(server, traced, samples):
    alias = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url}
    with override_settings(CACHES={"default": alias}):
        cache = caches.create_connection("default")
        with trace_operation("request"):
            cache.set("k", 1)
            assert cache.get("k") == 1
    spans = traced.get_finished_spans()
    cache_spans = [s for s in spans if "django_observability.cache.alias" in s.attributes]
    assert [s.attributes["db.operation.name"] for s in cache_spans] == ["set", "get"]
    for cache_span in cache_spans:
        children = [s for s in spans if s.parent and s.parent.span_id == cache_span.context.span_id]
        assert [s.name for s in children] == [cache_span.attributes["db.operation.name"].upper()]
    assert counted(samples, "SET", "ok") == 1  # the cache's commands, under our cache metrics
    assert counted(samples, "GET", "ok") == 1


@pytest.mark.peers
def test_no_second_span_when_the_instrumentation_was_enabled_before(client, spans):
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    theirs = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(theirs))
    RedisInstrumentor().instrument(tracer_provider=provider)
    try:
        redis_client._instrument_spans()
        assert not redis_client.spans_enabled()  # theirs, used as it is
        client.get("k")
    finally:
        RedisInstrumentor().uninstrument()
    assert [s.name for s in theirs.get_finished_spans()] == ["GET"]  # root spans included
    assert spans.get_finished_spans() == ()


# --- ChildSpansOnly: the tracer provider the instrumentation gets ------------------------


def test_a_command_in_a_trace_has_a_span_that_failed_with_it(traced_no_server):
    with trace_operation("request"), pytest.raises(redis.ConnectionError):
        closed_client().get("k")
    (command,) = [s for s in traced_no_server.get_finished_spans() if s.name == "GET"]
    assert command.status.status_code == StatusCode.ERROR


def test_no_span_outside_a_trace_nor_for_a_search(traced_no_server):
    client = closed_client()
    with pytest.raises(redis.ConnectionError):
        client.get("k")  # outside any trace
    with trace_operation("request"), pytest.raises(redis.ConnectionError):
        client.execute_command("FT.SEARCH", "idx", "jane@example.com")
    assert [s.name for s in traced_no_server.get_finished_spans()] == ["request"]


def test_uninstrumenting_and_instrumenting_again_leaves_one_span_per_command(traced_no_server):
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().uninstrument()  # the instrumentation's own undo works through ours
    with trace_operation("one"), pytest.raises(redis.ConnectionError):
        closed_client().get("k")
    assert [s.name for s in traced_no_server.get_finished_spans()] == ["one"]
    redis_client._spans_enabled = False
    redis_client._instrument_spans()
    with trace_operation("two"), pytest.raises(redis.ConnectionError):
        closed_client().get("k")
    names = [s.name for s in traced_no_server.get_finished_spans()]
    assert names == ["one", "GET", "two"]


@pytest.mark.peers
def test_a_command_the_caller_gave_up_on_is_cancelled_not_an_error(server, samples):
    async def run():
        client = redis.asyncio.Redis.from_url(server.url)
        await client.ping()
        server.pause()
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.get("k"), timeout=0.2)
        finally:
            server.resume()
        await client.aclose()

    asyncio.run(run())
    assert counted(samples, "GET", "cancelled") == 1
    assert counted(samples, "GET", "error") is None
