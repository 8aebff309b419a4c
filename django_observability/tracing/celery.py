"""Spans for Celery tasks, made from Celery's signals (``tasks/celery.py`` calls these).

Two spans per task, as the messaging semantic conventions describe them:

* :func:`start_producing` / :func:`stop_producing`: a ``PRODUCER`` span
  ``enqueue <task>`` from ``before_task_publish`` to ``after_task_publish``
  (the publish to the broker), a child of the current span (the request's
  server span); the W3C trace context of that span goes into the message
  headers, through the configured propagators;
* :func:`start_consuming` / :func:`stop_consuming`: a ``CONSUMER`` span
  ``run <task>`` from ``task_prerun`` to ``task_postrun`` in the process that
  runs the task, a child of the producer span the message carried, made
  current so that the task's queries (``db.py``) are its children. A task
  enqueued outside any trace (a beat entry, a task sent by the worker) starts
  a trace of its own; one run eagerly (``apply()``, ``task_always_eager``) is
  a child of the current span. :func:`mark_failed` (``task_failure``) gives a
  failed run status ERROR and ``error.type``, the exception's class path; its
  message and traceback stay in the worker's log line and the task result.

Attributes: ``messaging.system`` (``celery``), ``messaging.operation.type``
(``send``, ``process``), ``messaging.operation.name`` (``enqueue``, ``run``),
``messaging.destination.name`` (the routing key: the queue, for Celery's
default routing) and ``messaging.message.id`` (the task id); never the
task's arguments or result. The same names as ``django.tasks``' spans
(``tracing/django_tasks.py``), so one query finds both.

Why not ``opentelemetry-instrumentation-celery``: per task, its consumer span
cost more than our metrics, task context, log fields and a span of our own
together (docs/benchmarks.md, "Background tasks"); the issue's target is
that our whole stack costs no more than its spans alone. When it is enabled
anyway (the ``opentelemetry-instrument`` agent, or the project's own code),
its spans are the task's and we make none: never two spans for one task.

:func:`install` also makes each prefork child export its last spans when it
exits: billiard ends a child with ``os._exit()``, so the ``atexit`` flush
never runs there (``--max-tasks-per-child`` replaces children all the time).
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, set_span_in_context

from django_observability.faults import fault
from django_observability.formats import exception_name
from django_observability.tasks.context import message_header
from django_observability.tracing.api import get_tracer, set_error, spans_suppressed
from django_observability.tracing.exit_flush import flush_on_exit
from django_observability.tracing.messaging import consumer_span, start_consumer, stop_consumer

__all__ = [
    "install",
    "mark_failed",
    "start_consuming",
    "start_producing",
    "stop_consuming",
    "stop_producing",
    "theirs",
    "uninstall",
]

SYSTEM = "celery"
_PRODUCER = SpanKind.PRODUCER
_OTEL_CELERY = "opentelemetry.instrumentation.celery"
_FLUSH_UID = "django_observability.tracing.celery"

# The producer span between before_task_publish and after_task_publish: (task id, span).
_PRODUCING: ContextVar[tuple[str, Any] | None] = ContextVar(
    "django_observability_celery_producing", default=None
)


class _RequestGetter:
    """Reads propagation fields (``traceparent``...) from a task's request."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = message_header(carrier, key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Any) -> list[str]:
        headers = getattr(carrier, "headers", None)
        return list(headers) if isinstance(headers, dict) else []


_getter = _RequestGetter()
_instrumentor: Any = None


def theirs() -> bool:
    """Whether opentelemetry-instrumentation-celery is enabled in this process.

    Asked per task, cheaply: the instrumentation is enabled only once its
    module is imported, so until then nothing is imported to find out.
    """
    global _instrumentor
    if _instrumentor is None:
        module = sys.modules.get(_OTEL_CELERY)
        if module is None:
            return False
        _instrumentor = module.CeleryInstrumentor()  # one instance per process (a singleton)
    return bool(_instrumentor.is_instrumented_by_opentelemetry)


def _tracer() -> Any:
    """Our tracer when this process makes task spans, else ``None``."""
    tracer = get_tracer()
    if tracer is None or theirs():
        return None
    return tracer


def start_producing(name: str, task_id: Any, routing_key: Any, headers: dict[str, Any]) -> None:
    """Start the producer span of publishing task ``task_id``; its context goes into ``headers``."""
    tracer = _tracer()
    if tracer is None or spans_suppressed():
        return
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
    }
    if isinstance(routing_key, str) and routing_key:
        attributes["messaging.destination.name"] = routing_key
    if isinstance(task_id, str):
        attributes["messaging.message.id"] = task_id
    span = tracer.start_span(f"enqueue {name}", kind=_PRODUCER, attributes=attributes)
    # A publish that raised never reached after_task_publish: its span is dropped here.
    _PRODUCING.set((task_id, span))
    propagate.inject(headers, context=set_span_in_context(span))


def stop_producing(task_id: Any) -> None:
    """End the producer span of ``task_id`` once the broker took the message."""
    producing = _PRODUCING.get()
    if producing is None or producing[0] != task_id:
        return
    _PRODUCING.set(None)
    producing[1].end()


def start_consuming(task_id: str, name: str, request: Any) -> None:
    """Start the consumer span of running ``task_id`` (``request``: ``task.request``), current."""
    tracer = _tracer()
    if tracer is None:
        return
    if getattr(request, "is_eager", False):
        if spans_suppressed():
            return  # run in place where no span is wanted (a health check, an excluded path)
        parent = None  # run in place: a child of the current span
    else:
        parent = propagate.extract(request, context=otel_context.Context(), getter=_getter)
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.message.id": task_id,
    }
    delivery = getattr(request, "delivery_info", None)
    if isinstance(delivery, dict):
        routing_key = delivery.get("routing_key")
        if isinstance(routing_key, str) and routing_key:
            attributes["messaging.destination.name"] = routing_key
    start_consumer(tracer, task_id, f"run {name}", attributes, parent)


def mark_failed(task_id: str, exception: BaseException | None) -> None:
    """``task_failure`` in the process that ran ``task_id``: its span has failed."""
    span = consumer_span(task_id)
    if span is not None and exception is not None:
        set_error(span, None, exception_name(exception))


def stop_consuming(task_id: str) -> None:
    """End the consumer span of ``task_id``, and its being current."""
    stop_consumer(task_id)


def install() -> None:
    """Connect the prefork child's flush on exit (``tasks.celery`` calls it with Celery)."""
    from celery import signals

    signals.worker_process_shutdown.connect(_flush_child, weak=False, dispatch_uid=_FLUSH_UID)


def uninstall() -> None:
    """Undo :func:`install` (for tests)."""
    from celery import signals

    signals.worker_process_shutdown.disconnect(_flush_child, dispatch_uid=_FLUSH_UID)


def _flush_child(**kwargs: Any) -> None:
    """``worker_process_shutdown``: a prefork child exports its last spans before it goes."""
    try:
        flush_on_exit()
    except Exception:
        fault("tracing.celery.flush")
