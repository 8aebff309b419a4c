"""Celery's signals turned into task metrics, the task context and its log fields.

Connected by :func:`install` (from ``AppConfig.ready()`` when Celery is
installed); every receiver runs in the process that sends the signal:

* ``before_task_publish`` (the enqueuing process): the message gets the
  headers of :func:`~django_observability.tasks.context.enqueue_headers`, the
  current request id and the time; ``after_task_publish`` counts the task in
  ``tasks_enqueued_total`` once the broker took it. A retry is a new message,
  published from the worker, and is counted again: every enqueued message
  ends in exactly one ``tasks_finished_total`` outcome.
* ``task_prerun`` / ``task_postrun`` (the process that runs the task, a
  prefork child): the task becomes current (its id, name and the enqueuing
  request's id for log lines and ``get_request_id()``), ``tasks_active`` goes
  up and down, the queue wait, the run time and the outcome are recorded.
  The outcome is the state Celery ends the run with (``SUCCESS``,
  ``FAILURE``, ``RETRY``, ``REJECTED``, ``IGNORED``).
* ``task_failure`` in the process that ran the task marks its span failed;
  ``task_revoked`` and ``task_failure`` in the worker's main process (runs
  that end there: revoked before they ran or terminated, a hard time limit,
  a lost child process) count the run as ``revoked`` or ``failure``.

The same receivers start and end the task's spans when tracing is on
(``tracing/celery.py``: a producer span around the publish, a consumer span
around the run, marked failed by ``task_failure``), one of each per message.

A receiver never raises: a fault is logged once and the task runs, or ends,
as it would without us; the task's own exceptions are Celery's business.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

from django_observability.faults import fault
from django_observability.imports import after_import
from django_observability.metrics import get_metrics
from django_observability.tasks import signals as celery_signals
from django_observability.tasks.context import (
    ENQUEUED_AT_HEADER,
    REQUEST_ID_HEADER,
    current_task,
    enqueue_headers,
    enter_task,
    leave_task,
    message_header,
    queue_wait,
)
from django_observability.tracing import celery as celery_tracing

__all__ = ["OUTCOMES", "install", "uninstall"]

#: Celery's end state of a run -> the ``outcome`` label.
OUTCOMES = {
    "SUCCESS": "success",
    "FAILURE": "failure",
    "RETRY": "retry",
    "REJECTED": "rejected",
    "IGNORED": "ignored",
}

# Failures the worker's main process reports for a run whose child could not:
# the child was killed (hard time limit) or died.
_MAIN_PROCESS_FAILURES = ("TimeLimitExceeded", "WorkerLostError")

_perf_counter = time.perf_counter


def _task_id(headers: dict[str, Any] | None, body: Any) -> Any:
    """The id of the task a message carries (protocol 2: a header; protocol 1: the body)."""
    task_id = headers.get("id") if headers else None
    if task_id is None and isinstance(body, dict):
        task_id = body.get("id")
    return task_id


def _due(request: Any) -> float | None:
    """When the task was due (its ETA, from a countdown or ``eta=``), as epoch seconds."""
    eta = getattr(request, "eta", None)
    if not eta:
        return None
    if isinstance(eta, str):
        eta = datetime.fromisoformat(eta)
    if isinstance(eta, datetime):
        return eta.timestamp()
    return None


def before_publish(
    sender: Any = None,
    headers: dict[str, Any] | None = None,
    body: Any = None,
    routing_key: Any = None,
    **kwargs: Any,
) -> None:
    """``before_task_publish``: our headers go with the message; the producer span starts."""
    if headers is None:
        return
    try:
        headers.update(enqueue_headers())
    except Exception:
        fault("tasks.before_publish")
    try:
        name = sender if isinstance(sender, str) else headers.get("task")
        if isinstance(name, str):
            celery_tracing.start_producing(name, _task_id(headers, body), routing_key, headers)
    except Exception:
        fault("tasks.span")


def after_publish(
    sender: Any = None, headers: dict[str, Any] | None = None, body: Any = None, **kwargs: Any
) -> None:
    """``after_task_publish``: the broker took the message; ``sender`` is the task's name."""
    try:
        celery_tracing.stop_producing(_task_id(headers, body))
    except Exception:
        fault("tasks.span")
    try:
        name = sender if isinstance(sender, str) else (headers or {}).get("task")
        metrics = get_metrics()
        if metrics is not None and name:
            metrics.count_enqueued(name)
    except Exception:
        fault("tasks.after_publish")


def prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    """``task_prerun``: the task becomes current; the queue wait, ``tasks_active``, the span."""
    if task is None or task_id is None:
        return
    try:
        request = task.request
        name = task.name
        enter_task(task_id, name, message_header(request, REQUEST_ID_HEADER))
    except Exception:
        fault("tasks.prerun")
        return
    try:
        metrics = get_metrics()
        if metrics is not None:
            enqueued = message_header(request, ENQUEUED_AT_HEADER)
            wait = None if enqueued is None else queue_wait(enqueued, _due(request))
            metrics.task_started(name, wait)
    except Exception:
        fault("tasks.prerun")
    try:
        celery_tracing.start_consuming(task_id, name, request)
    except Exception:
        fault("tasks.span")


def postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs: Any
) -> None:
    """``task_postrun``: the run's outcome and time; the task stops being current."""
    info = current_task()
    if info is None or info.id != task_id:
        return  # prerun did not make it current (a fault there): nothing to close
    try:
        seconds = _perf_counter() - info.started
        metrics = get_metrics()
        if metrics is not None:
            outcome = OUTCOMES.get(state or "", "failure")
            metrics.task_finished(info.name, outcome, seconds)
    except Exception:
        fault("tasks.postrun")
    finally:
        try:
            if state is None:
                # An eager run whose exception propagates (apply(throw=True),
                # task_eager_propagates): Celery re-raises it before task_failure,
                # and sends task_postrun from a finally block, where it is in flight.
                celery_tracing.mark_failed(info.id, sys.exc_info()[1])
            celery_tracing.stop_consuming(info.id)
        except Exception:
            fault("tasks.span")
        try:
            leave_task(info)
        except Exception:
            fault("tasks.postrun")


def revoked(request: Any = None, **kwargs: Any) -> None:
    """``task_revoked`` (the worker's main process): a run revoked, expired or terminated."""
    try:
        name = getattr(request, "task", None) or getattr(request, "task_name", None)
        if not isinstance(name, str):
            name = getattr(kwargs.get("sender"), "name", None)
        metrics = get_metrics()
        if metrics is not None and name:
            metrics.task_finished(name, "revoked", None, started=False)
    except Exception:
        fault("tasks.revoked")


def failed(
    sender: Any = None, task_id: str | None = None, exception: Any = None, **kwargs: Any
) -> None:
    """``task_failure``: in the process running the task, its span fails; else a lost run.

    Failures raised by the task itself are counted by :func:`postrun` in the
    process that ran it; only a hard time limit and a lost child, which the
    worker's main process reports, are counted here.
    """
    try:
        info = current_task()
        if info is not None and info.id == task_id:
            celery_tracing.mark_failed(task_id, exception)
            return
        if type(exception).__name__ not in _MAIN_PROCESS_FAILURES:
            return
        name = getattr(sender, "name", None)
        metrics = get_metrics()
        if metrics is not None and name:
            metrics.task_finished(name, "failure", None, started=False)
    except Exception:
        fault("tasks.failure")


_RECEIVERS = (
    ("before_task_publish", before_publish),
    ("after_task_publish", after_publish),
    ("task_prerun", prerun),
    ("task_postrun", postrun),
    ("task_revoked", revoked),
    ("task_failure", failed),
)


def install() -> None:
    """Observe Celery's tasks in this process (from ``AppConfig.ready()``); imports nothing.

    Celery already imported (a worker; a project whose package imports its
    Celery app) is wired at once; Celery installed but not imported yet is
    wired right after its first import, through the app's post-import hook
    (``imports.after_import``): importing ``celery.signals`` costs about 0.2 s, which
    ``manage.py`` commands of a project that never uses it should not pay.
    """
    after_import("celery", _connect)


def _connect() -> None:
    try:
        from celery import signals

        celery_signals.connect(_RECEIVERS, _OWNER)
        if _project_logging():
            signals.setup_logging.connect(
                keep_django_logging, weak=False, dispatch_uid=_KEEP_LOGGING_UID
            )
        celery_tracing.install()
    except Exception:
        fault("tasks.install")


_OWNER = "django_observability.tasks"
_KEEP_LOGGING_UID = f"{_OWNER}.setup_logging"


def _project_logging() -> bool:
    """Whether Django configured logging from the project's ``LOGGING`` (applied by now)."""
    from django.conf import settings

    return bool(getattr(settings, "LOGGING_CONFIG", None) and getattr(settings, "LOGGING", None))


def keep_django_logging(**kwargs: Any) -> None:
    """``setup_logging``: the worker keeps the logging Django configured from ``LOGGING``.

    Celery configures logging in a worker only when nobody receives this
    signal; otherwise (``worker_hijack_root_logger``, the default) it removes
    the root logger's handlers and writes its own text lines, and even with
    that switched off it gives ``celery.task`` a text handler of its own. With
    a receiver, the project's ``LOGGING`` (``logging_config()``: JSON lines
    with the task's fields) holds in the worker as in the web processes; the
    worker's ``--loglevel`` and ``--logfile`` then have no effect.
    """


def uninstall() -> None:
    """Disconnect what :func:`install` connected (for tests)."""
    from celery import signals

    celery_signals.disconnect(_RECEIVERS, _OWNER)
    celery_tracing.uninstall()
    signals.setup_logging.disconnect(keep_django_logging, dispatch_uid=_KEEP_LOGGING_UID)
