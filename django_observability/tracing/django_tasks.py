"""Spans for Django's task framework (``django.tasks``, and the django-tasks backport).

No OpenTelemetry instrumentation exists for it, so the app makes the two
spans the messaging semantic conventions describe, with the OpenTelemetry API:

* :func:`producing`: a ``PRODUCER`` span ``enqueue <task>`` around
  ``Task.enqueue()``/``aenqueue()``, current while the backend stores the
  task, so that what is carried with the task (:func:`carrier`) names it as
  the parent;
* :func:`start_consuming` / :func:`stop_consuming`: a ``CONSUMER`` span
  ``run <task>`` from the framework's ``task_started`` signal to its
  ``task_finished``, made current so that the task's queries (``db.py``) and
  ``trace_operation()`` blocks are its children. Its parent is the producer
  span the task carried (the database backend), else the current span (the
  immediate backend runs the task inside ``enqueue()``, so the producer span
  is current), else none: a task enqueued outside any trace starts its own.

Attributes: ``messaging.system`` (``django.tasks``), ``messaging.operation.type``
(``send``, ``process``), ``messaging.operation.name``,
``messaging.destination.name`` (the queue), ``messaging.message.id`` (the
result id), and ``django_observability.task.backend`` (the ``TASKS`` alias).
Never the task's arguments or return value. A failed run's span has status
ERROR and ``error.type`` (the exception's class path, as the framework
recorded it); its message and traceback stay in the task result.

Only the W3C ``traceparent``/``tracestate`` are carried, never baggage:
baggage is whatever code put there, and a task row is kept and shown in
Django's admin.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django_observability.tracing.api import get_tracer, spans_suppressed
from django_observability.tracing.messaging import start_consumer, stop_consumer

__all__ = ["carrier", "producing", "start_consuming", "stop_consuming"]

SYSTEM = "django.tasks"


def _attributes(task: Any, operation: str, kind: str) -> dict[str, Any]:
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": kind,
        "messaging.operation.name": operation,
    }
    queue = getattr(task, "queue_name", None)
    if isinstance(queue, str):
        attributes["messaging.destination.name"] = queue
    backend = getattr(task, "backend", None)
    if isinstance(backend, str):
        attributes["django_observability.task.backend"] = backend
    return attributes


@contextlib.contextmanager
def producing(task: Any, name: str) -> Iterator[Any]:
    """The producer span of enqueueing ``task`` (registered as ``name``), current inside.

    Yields the span (``None`` when tracing is off or suppressed); the caller
    sets ``messaging.message.id`` once the backend gave the result an id.
    Exceptions from the block are recorded on the span and raised unchanged.
    """
    tracer = get_tracer()
    if tracer is None or spans_suppressed():
        yield None
        return
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(
        f"enqueue {name}",
        kind=SpanKind.PRODUCER,
        attributes=_attributes(task, "enqueue", "send"),
        record_exception=True,
    ) as span:
        yield span


def carrier() -> dict[str, str]:
    """The W3C trace context of the current span, to store with a task (empty: none)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers)
    return headers


def start_consuming(task_id: str, task: Any, name: str, carried: Any) -> None:
    """Start the consumer span of running task ``task_id`` and make it current.

    ``carried`` is what :func:`carrier` stored with the task (a dict), or
    ``None``. With a carried context the span continues that trace, in a
    context of its own (a worker's idle polling may run with spans
    suppressed; the task's queries must not be); without one it is a child
    of the current span.
    """
    tracer = get_tracer()
    if tracer is None:
        return
    from opentelemetry import context as otel_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if isinstance(carried, dict) and carried.get("traceparent"):
        headers = {k: v for k, v in carried.items() if isinstance(v, str)}
        parent = TraceContextTextMapPropagator().extract(headers, context=otel_context.Context())
    elif spans_suppressed():
        # A worker polling with spans suppressed (``tasks.db_worker``): the
        # task is work of its own and starts a trace of its own.
        parent = otel_context.Context()
    else:
        parent = None
    attributes = _attributes(task, "run", "process")
    attributes["messaging.message.id"] = task_id
    start_consumer(tracer, task_id, f"run {name}", attributes, parent)


def stop_consuming(task_id: str, error_type: str | None) -> None:
    """End the consumer span of ``task_id`` (status ERROR with ``error_type`` when it failed)."""
    stop_consumer(task_id, error_type)
