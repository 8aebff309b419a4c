"""The task running in this context, reached through functions.

A task runs in a worker with no request around it; what the app knows about
the running task lives here, in context variables, the way
``django_observability.context`` keeps the request:

* :func:`current_task` returns a :class:`TaskInfo` (id, name) or ``None``;
* :func:`enter_task` makes a task current and makes the request id it carries
  current too (``django_observability.get_request_id()`` then returns the
  enqueuing request's id inside the task); :func:`leave_task` undoes it.

The header names the enqueuing side writes into a task's message, and
:func:`enqueue_headers`, which works out their values, are here too, so that
the producer and the consumer agree on them whatever the task framework;
:func:`message_header` reads one back from a Celery task's request.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from django_observability.context import REQUEST_ID
from django_observability.request_id import is_valid, new_request_id

__all__ = [
    "ENQUEUED_AT_HEADER",
    "REQUEST_ID_HEADER",
    "TaskInfo",
    "current_task",
    "enqueue_headers",
    "enter_task",
    "leave_task",
    "message_header",
    "queue_wait",
]

#: Message header with the id of the request that enqueued the task.
REQUEST_ID_HEADER = "observability_request_id"
#: Message header with the time the task was enqueued (epoch seconds, as text).
ENQUEUED_AT_HEADER = "observability_enqueued_at"

_now = time.time
_perf_counter = time.perf_counter


@dataclass
class TaskInfo:
    """The task being run: its id and registered name, and when it started."""

    id: str
    name: str
    request_id: str
    started: float = field(default_factory=_perf_counter)  # perf_counter() at start
    # What leave_task() resets: (task token, request id token).
    tokens: tuple[Token[Any], Token[Any]] | None = field(default=None, repr=False)


_TASK: ContextVar[TaskInfo | None] = ContextVar("django_observability_task", default=None)


def current_task() -> TaskInfo | None:
    """The task running in this context, or ``None`` (a request, a command...)."""
    return _TASK.get()


def enqueue_headers() -> dict[str, str]:
    """The headers a task enqueued now carries: the current request id (if any) and the time."""
    headers = {ENQUEUED_AT_HEADER: repr(_now())}
    request_id = REQUEST_ID.get()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def message_header(request: Any, name: str) -> Any:
    """A custom header of a task's message, as the worker has it on ``task.request``.

    With Celery's message protocol 2 the headers set in ``before_task_publish``
    become attributes of the request; Celery 5.3 and later keep them in
    ``request.headers`` too.
    """
    value = getattr(request, name, None)
    if value is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict):
            value = headers.get(name)
    return value


def enter_task(task_id: str, name: str, request_id: Any = None) -> TaskInfo:
    """Make the task ``task_id`` (registered as ``name``) current, for :func:`leave_task`.

    ``request_id`` is the id its message carried. Without a valid one, a task
    run in the context of a request (Celery's eager mode) keeps that
    request's id, and any other task gets a fresh id of its own, so that its
    log lines can be told apart from those of other runs.
    """
    if not (isinstance(request_id, str) and is_valid(request_id)):
        request_id = REQUEST_ID.get() or new_request_id()
    info = TaskInfo(task_id, name, request_id)
    info.tokens = (_TASK.set(info), REQUEST_ID.set(request_id))
    return info


def leave_task(info: TaskInfo) -> None:
    """Undo :func:`enter_task` for ``info`` (the previous task and request id become current)."""
    tokens = info.tokens
    if tokens is None:
        return
    info.tokens = None
    REQUEST_ID.reset(tokens[1])
    _TASK.reset(tokens[0])


def queue_wait(enqueued_at: Any, not_before: float | None = None) -> float | None:
    """Seconds from enqueueing (the header's text) to now; ``None`` when unknown.

    ``not_before`` (epoch seconds) is when the task was due (a countdown or an
    ETA): the wait is counted from then, since waiting for it is intended. A
    clock difference between hosts can make the result negative: it is
    counted as 0.
    """
    try:
        start = float(enqueued_at)
    except (TypeError, ValueError):
        return None
    if start != start or start <= 0:  # NaN or nonsense
        return None
    if not_before is not None and not_before > start:
        start = not_before
    return max(0.0, _now() - start)
