"""tracing/celery.py: a producer and a consumer span per task, made from Celery's signals."""

import logging
import time

import pytest
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from django.db import connection
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from django_observability.tracing import celery as celery_tracing
from django_observability.tracing import get_tracer

app = Celery("traced", broker="memory://", backend="cache+memory://", set_as_current=False)
app.conf.update(
    broker_connection_retry_on_startup=True,
    broker_transport_options={"polling_interval": 0.01},
    worker_hijack_root_logger=False,
)


class Boom(Exception):
    pass


@app.task(name="traced.queries")
def queries():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.execute("SELECT 2")


@app.task(name="traced.noop")
def noop(secret=None):
    return 1


@app.task(name="traced.current_span_valid")
def current_span_valid():
    return trace.get_current_span().get_span_context().is_valid


@app.task(name="traced.failing")
def failing():
    raise Boom("the card 4111-1111 was refused")


@app.task(name="traced.retried", bind=True, max_retries=1)
def retried(self):
    if self.request.retries < 1:
        raise self.retry(countdown=0)
    return "done"


@pytest.fixture(scope="module")
def worker():
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


def kinds(spans, kind, expected=0, deadline=5.0):
    """The finished spans of ``kind``; with ``expected``, waits (bounded) until there are so many.

    A worker stores a task's result before ``task_postrun``, where the consumer span
    ends: ``result.get()`` may return before the span is finished.
    """
    end = time.monotonic() + deadline
    while True:
        found = [s for s in spans.get_finished_spans() if s.kind == kind]
        if len(found) >= expected or time.monotonic() > end:
            return found
        time.sleep(0.01)


def test_no_spans_without_a_provider():
    assert get_tracer() is None
    headers = {}
    celery_tracing.start_producing("traced.noop", "t-1", "celery", headers)
    assert headers == {}  # no traceparent: nothing to continue
    assert current_span_valid.apply().get() is False


def test_a_span_is_current_in_the_task_when_tracing_is_on(spans):
    assert current_span_valid.apply().get() is True
    (consumer,) = kinds(spans, SpanKind.CONSUMER)
    assert consumer.name == "run traced.current_span_valid"


def test_an_eager_failure_that_propagates_fails_its_span(spans):
    with pytest.raises(Boom):
        failing.apply(throw=True)  # Celery sends no task_failure for it
    (consumer,) = kinds(spans, SpanKind.CONSUMER)
    assert consumer.status.status_code == StatusCode.ERROR
    assert consumer.attributes["error.type"] == "tests.test_tracing_celery.Boom"
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_an_eager_run_where_spans_are_suppressed_makes_none(spans):
    from django_observability.tracing import api

    token = api.suppress_spans()
    try:
        assert current_span_valid.apply().get() is False
    finally:
        api.end_suppression(token)
    assert spans.get_finished_spans() == ()


@pytest.mark.django_db
def test_an_eager_run_is_a_child_of_the_current_span_with_its_queries(spans):
    with get_tracer().start_as_current_span("request") as request_span:
        queries.apply().get()
    (consumer,) = kinds(spans, SpanKind.CONSUMER)
    assert consumer.name == "run traced.queries"
    assert consumer.parent.span_id == request_span.get_span_context().span_id
    finished = spans.get_finished_spans()
    children = [s for s in finished if s.parent and s.parent.span_id == consumer.context.span_id]
    assert [s.attributes["db.query.text"] for s in children] == ["SELECT 1", "SELECT 2"]
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left current


def test_producer_and_consumer_in_the_enqueuers_trace(worker, spans):
    with get_tracer().start_as_current_span("request") as request_span:
        result = noop.apply_async(kwargs={"secret": "hunter2"})
    assert result.get(timeout=10, interval=0.01) == 1
    (consumer,) = kinds(spans, SpanKind.CONSUMER, expected=1)
    (producer,) = kinds(spans, SpanKind.PRODUCER)
    assert producer.name == "enqueue traced.noop"
    assert producer.parent.span_id == request_span.get_span_context().span_id
    assert consumer.context.trace_id == request_span.get_span_context().trace_id
    assert consumer.parent.span_id == producer.context.span_id
    assert dict(producer.attributes) == {
        "messaging.system": "celery",
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.destination.name": "celery",
        "messaging.message.id": result.id,
    }
    assert dict(consumer.attributes) == {
        "messaging.system": "celery",
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.destination.name": "celery",
        "messaging.message.id": result.id,
    }
    assert consumer.status.status_code == StatusCode.UNSET
    # The producer span covers the publish, before the run.
    assert producer.end_time <= consumer.start_time


def test_a_task_enqueued_outside_a_trace_starts_its_own(worker, spans):
    assert noop.apply_async().get(timeout=10, interval=0.01) == 1
    (consumer,) = kinds(spans, SpanKind.CONSUMER, expected=1)
    (producer,) = kinds(spans, SpanKind.PRODUCER)
    assert producer.parent is None
    assert consumer.parent.span_id == producer.context.span_id


def test_a_failed_run_has_status_error_and_the_exceptions_class_only(worker, spans):
    result = failing.apply_async()
    with pytest.raises(Boom):
        result.get(timeout=10, interval=0.01)
    (consumer,) = kinds(spans, SpanKind.CONSUMER, expected=1)
    assert consumer.status.status_code == StatusCode.ERROR
    assert consumer.attributes["error.type"] == "tests.test_tracing_celery.Boom"
    assert not consumer.events  # no exception text, no traceback on the span
    assert "4111" not in repr(consumer.attributes)


def test_an_eager_failure_passes_unchanged():
    with pytest.raises(Boom, match="refused"):
        failing.apply(throw=True)


def test_a_retry_is_a_producer_span_in_the_first_runs_consumer_span(worker, spans):
    with get_tracer().start_as_current_span("request"):
        result = retried.apply_async()
    assert result.get(timeout=10, interval=0.01) == "done"
    consumers = sorted(kinds(spans, SpanKind.CONSUMER, expected=2), key=lambda s: s.start_time)
    producers = kinds(spans, SpanKind.PRODUCER)
    assert len(producers) == 2  # one span per message
    assert len(consumers) == 2  # and per run
    first, second = consumers
    (retry,) = [p for p in producers if p.parent.span_id == first.context.span_id]
    assert second.parent.span_id == retry.context.span_id
    assert first.status.status_code == StatusCode.UNSET  # a retry is not a failure
    assert {s.context.trace_id for s in (*producers, *consumers)} == {first.context.trace_id}


def test_spans_suppressed_make_no_producer_span(worker, spans):
    from django_observability.tracing import api

    token = api.suppress_spans()
    try:
        headers = {}
        celery_tracing.start_producing("traced.noop", "t-1", "celery", headers)
    finally:
        api.end_suppression(token)
    assert headers == {}
    celery_tracing.stop_producing("t-1")
    assert spans.get_finished_spans() == ()


def test_a_publish_that_raised_leaves_no_span_behind(spans):
    headers: dict = {}
    celery_tracing.start_producing("traced.noop", "t-1", "celery", headers)
    assert headers["traceparent"]
    # No after_task_publish for t-1 (the broker refused it); the next publish goes on.
    celery_tracing.start_producing("traced.noop", "t-2", "celery", {})
    celery_tracing.stop_producing("t-1")
    celery_tracing.stop_producing("t-2")
    assert [s.attributes["messaging.message.id"] for s in spans.get_finished_spans()] == ["t-2"]


def test_a_fault_in_the_span_code_never_fails_a_task(worker, spans, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("span trouble")

    monkeypatch.setattr(celery_tracing, "start_consumer", broken)
    monkeypatch.setattr(celery_tracing.propagate, "inject", broken)
    with caplog.at_level(logging.ERROR, logger="django_observability"):
        assert noop.apply_async().get(timeout=10, interval=0.01) == 1
    assert "span trouble" in caplog.text


def test_no_second_span_when_opentelemetrys_celery_instrumentation_is_on(worker, spans):
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    theirs = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(theirs))
    CeleryInstrumentor().instrument(tracer_provider=provider)
    try:
        assert celery_tracing.theirs()
        assert noop.apply_async().get(timeout=10, interval=0.01) == 1
        kinds(theirs, SpanKind.CONSUMER, expected=1)  # its consumer span, ended after the result
    finally:
        CeleryInstrumentor().uninstrument()
    assert not celery_tracing.theirs()
    assert spans.get_finished_spans() == ()  # ours: none
    assert [s.kind for s in theirs.get_finished_spans()].count(SpanKind.CONSUMER) == 1


def test_a_prefork_child_flushes_its_spans_when_it_exits(monkeypatch):
    """billiard ends a child with os._exit(): no atexit, so the signal flushes."""
    calls = []
    monkeypatch.setattr(celery_tracing, "flush_on_exit", lambda: calls.append(1) or True)
    signals.worker_process_shutdown.send(sender="w@host", pid=1, exitcode=0)
    assert calls == [1]
