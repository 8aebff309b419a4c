"""What a log record gets from the request, the task and the span it was logged in.

Five correlation fields: the request id, the trace and span ids of the
current OpenTelemetry span, and the id and name of the task being run (a
Celery task in a worker; ``tasks.context``). A record carries them as the
attributes ``request_id``, ``trace_id``, ``span_id``, ``task_id`` and
``task_name`` (stamped by :class:`ContextFilter`, or passed with ``extra=``);
otherwise they are read when the record is formatted. Inside a task the
request id is the enqueuing request's. Everything this package knows about
the request's own state goes through :func:`request_ids`, about the task's
through :func:`task_ids`.
"""

from __future__ import annotations

import logging
from typing import Any

from django_observability.context import get_request_id as current_request_id
from django_observability.context import request_id_of
from django_observability.context import span_ids as request_span_ids
from django_observability.formats import hex_ids
from django_observability.tasks.context import current_task

try:
    from opentelemetry.trace import get_current_span
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    get_current_span = None  # type: ignore[assignment]

__all__ = [
    "ID_ATTRS",
    "ContextFilter",
    "current_request_id",
    "record_ids",
    "request_ids",
    "task_ids",
]

# Record attributes that carry the correlation ids, in the order the functions
# below return them. They become http.request.id, trace.id, span.id, task.id
# and task.name.
ID_ATTRS = ("request_id", "trace_id", "span_id", "task_id", "task_name")

_MISSING: Any = object()


def otel_ids() -> tuple[str | None, str | None]:
    """Trace and span ids of the current OpenTelemetry span, as lowercase hex."""
    if get_current_span is None:
        return None, None
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return hex_ids(context)


def task_ids() -> tuple[str, str] | None:
    """(id, registered name) of the task running in this context, or ``None``."""
    info = current_task()
    return None if info is None else (info.id, info.name)


def _stamp_task(state: dict[str, Any]) -> None:
    """Put the running task's id and name on a record that has neither; nothing outside a task.

    Only inside a task, so that a record has these attributes exactly when it
    has the fields: a line's layout is kept per set of attribute names
    (``template.py``), and that set then tells task lines from the others.
    """
    if "task_id" not in state and "task_name" not in state:
        ids = task_ids()
        if ids is not None:
            state["task_id"], state["task_name"] = ids


def request_ids(request: Any) -> tuple[Any, Any, Any]:
    """(request id, trace id, span id) that the middleware kept on ``request``.

    Django logs a 4xx or 5xx response (``django.request``) with the request in
    ``extra={"request": ...}`` after the middleware has returned, when the
    request's context is gone: the ids then come from the request itself,
    through the context module. Anything unexpected (not a request, ids of the
    wrong type, a failing accessor) gives ``None`` for that id, never an
    exception.
    """
    try:
        request_id = request_id_of(request)
        ids = request_span_ids(request)
    except Exception:
        return None, None, None
    if type(request_id) is not str:
        request_id = None
    if type(ids) is tuple and len(ids) == 3:
        return request_id, ids[0], ids[1]
    return request_id, None, None


def record_ids(record: logging.LogRecord) -> tuple[Any, Any, Any, Any, Any]:
    """(request id, trace id, span id, task id, task name) of a record.

    Each is stamped on it, else read from the context (the task's are then
    stamped, see :func:`_stamp_task`). An id passed explicitly (even
    ``None``) wins; a record about a request whose context has ended takes
    the ids the request kept.
    """
    state = record.__dict__
    _stamp_task(state)
    request_id = state.get("request_id", _MISSING)
    if request_id is _MISSING:
        request_id = current_request_id()
    trace_id = state.get("trace_id", _MISSING)
    span_id = state.get("span_id", _MISSING)
    if trace_id is _MISSING or span_id is _MISSING:
        current_trace, current_span = otel_ids()
        if trace_id is _MISSING:
            trace_id = current_trace
        if span_id is _MISSING:
            span_id = current_span
    if request_id is None and "request" in state:
        request_id, request_trace, request_span = _ids_of_logged_request(state)
        if trace_id is None and span_id is None:
            trace_id, span_id = request_trace, request_span
    return request_id, trace_id, span_id, state.get("task_id"), state.get("task_name")


def _ids_of_logged_request(state: dict[str, Any]) -> tuple[Any, Any, Any]:
    request = state.get("request")
    if request is None:
        return None, None, None
    return request_ids(request)


class ContextFilter(logging.Filter):
    """Stamp the correlation ids on each record at log time (the task's only in a task).

    ``request_id``, ``trace_id`` and ``span_id`` always; ``task_id`` and
    ``task_name`` while a task runs.

    Attach it to the handler (or logger) that first sees the record. Formatting
    that happens later or elsewhere (a ``QueueHandler`` and its listener thread,
    an async handler) then still reports the request and span that logged it.
    Values passed explicitly with ``extra=`` are kept. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            state = record.__dict__
            _stamp_task(state)
            if "request_id" not in state:
                state["request_id"] = current_request_id()
            if "trace_id" not in state or "span_id" not in state:
                trace_id, span_id = otel_ids()
                state.setdefault("trace_id", trace_id)
                state.setdefault("span_id", span_id)
            if state["request_id"] is None and "request" in state:
                # Logged about a request after its context ended (django.request).
                request_id, trace_id, span_id = _ids_of_logged_request(state)
                state["request_id"] = request_id
                if state["trace_id"] is None and state["span_id"] is None:
                    state["trace_id"], state["span_id"] = trace_id, span_id
        except Exception:  # noqa: S110 - a filter must never stop a record
            pass
        return True
