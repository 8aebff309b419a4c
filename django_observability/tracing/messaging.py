"""The consumer span of a task run, whatever the task framework, current while the task runs.

``tracing/celery.py`` and ``tracing/django_tasks.py`` work out a framework's
span name, attributes and the parent carried with the task; here the span is
started, made current (so that the task's queries and ``trace_operation()``
blocks are its children), looked up and ended. One run at a time is current
in a context; a task run inside another (Celery's eager ``apply()`` in a
task) restores the outer one when it ends.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

__all__ = ["consumer_span", "start_consumer", "stop_consumer"]

_CONSUMER = SpanKind.CONSUMER
_ERROR = Status(StatusCode.ERROR)
_attach = otel_context.attach
_detach = otel_context.detach
_get_current = otel_context.get_current


@dataclass(slots=True)
class Consuming:
    """A consumer span that is current, and what undoes that."""

    task_id: str
    span: Any
    token: Any  # the OpenTelemetry context attached
    previous: Any = None  # resets _CONSUMING to the run of an enclosing task, if any


_CONSUMING: ContextVar[Consuming | None] = ContextVar(
    "django_observability_consuming", default=None
)


def start_consumer(
    tracer: Any, task_id: str, name: str, attributes: dict[str, Any], parent: Any
) -> Any:
    """Start the ``CONSUMER`` span ``name`` of running ``task_id`` and make it current.

    ``parent`` is an OpenTelemetry context (the one the task carried, or an
    empty one for a trace of its own), or ``None`` for the current one.
    Returns the span.
    """
    span = tracer.start_span(name, context=parent, kind=_CONSUMER, attributes=attributes)
    token = _attach(set_span_in_context(span, parent if parent is not None else _get_current()))
    consuming = Consuming(task_id, span, token)
    consuming.previous = _CONSUMING.set(consuming)
    return span


def consumer_span(task_id: str) -> Any:
    """The consumer span of ``task_id`` if it is the run current here, else ``None``."""
    consuming = _CONSUMING.get()
    if consuming is None or consuming.task_id != task_id:
        return None
    return consuming.span


def stop_consumer(task_id: str, error_type: str | None = None) -> None:
    """End the consumer span of ``task_id`` (status ERROR with ``error_type`` when it failed).

    Nothing happens when ``task_id`` is not the run current here (its start
    failed, or it was already stopped).
    """
    consuming = _CONSUMING.get()
    if consuming is None or consuming.task_id != task_id:
        return
    span = consuming.span
    try:
        _CONSUMING.reset(consuming.previous)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(_ERROR)
    finally:
        try:
            _detach(consuming.token)
        finally:
            span.end()
