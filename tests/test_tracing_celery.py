"""tracing/celery.py: OpenTelemetry's Celery instrumentation, enabled when tracing is on."""

import pytest
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from django.db import connection
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from django_observability import get_request_id
from django_observability.tracing import celery as celery_tracing
from django_observability.tracing import get_tracer

app = Celery("traced", broker="memory://", backend="cache+memory://", set_as_current=False)
app.conf.update(
    broker_connection_retry_on_startup=True,
    broker_transport_options={"polling_interval": 0.01},
    worker_hijack_root_logger=False,
)


@app.task(name="traced.queries")
def queries():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.execute("SELECT 2")
    return get_request_id()


@app.task(name="traced.noop")
def noop():
    return 1


@pytest.fixture
def instrumented(spans):
    assert celery_tracing.instrument()
    yield spans
    celery_tracing.uninstrument()


def test_off_without_a_provider():
    assert celery_tracing.instrument() is False
    assert celery_tracing.instrumented() is False


@pytest.mark.django_db
def test_one_consumer_span_per_run_with_the_queries_as_children(instrumented):
    queries.apply()
    finished = instrumented.get_finished_spans()
    (consumer,) = [s for s in finished if s.kind == SpanKind.CONSUMER]
    assert consumer.name == "run/traced.queries"
    children = [s for s in finished if s.parent and s.parent.span_id == consumer.context.span_id]
    assert [s.attributes["db.query.text"] for s in children] == ["SELECT 1", "SELECT 2"]
    assert all(s.context.trace_id == consumer.context.trace_id for s in children)


def test_enabled_once(instrumented):
    assert celery_tracing.instrument()  # again: already on, nothing doubled
    noop.apply()
    consumers = [s for s in instrumented.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    assert len(consumers) == 1


def test_producer_and_consumer_in_the_enqueuers_trace(instrumented):
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        with get_tracer().start_as_current_span("request") as request_span:
            result = noop.apply_async()
        assert result.get(timeout=10, interval=0.01) == 1
    finished = instrumented.get_finished_spans()
    trace_id = request_span.get_span_context().trace_id
    (producer,) = [s for s in finished if s.kind == SpanKind.PRODUCER]
    (consumer,) = [s for s in finished if s.kind == SpanKind.CONSUMER]
    assert producer.parent.span_id == request_span.get_span_context().span_id
    assert consumer.context.trace_id == trace_id
    assert consumer.parent.span_id == producer.context.span_id


def test_a_prefork_child_flushes_its_spans_when_it_exits(instrumented, monkeypatch):
    """billiard ends a child with os._exit(): no atexit, so the signal flushes."""
    calls = []
    monkeypatch.setattr(celery_tracing, "flush_on_exit", lambda: calls.append(1) or True)
    signals.worker_process_shutdown.send(sender="w@host", pid=1, exitcode=0)
    assert calls == [1]


def test_not_enabled_twice_when_someone_else_did(spans):
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument(tracer_provider=TracerProvider())
    try:
        assert celery_tracing.instrument()  # on already: used as it is
        assert celery_tracing.instrumented() is False
    finally:
        CeleryInstrumentor().uninstrument()
