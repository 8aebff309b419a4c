"""Django's task framework turned into task metrics, the task context, log fields and spans.

Covers ``django.tasks`` (Django 6.0 and later) and its backport, the
``django_tasks`` package of django-tasks (Django 5.2); both when both are
installed, since each has signals of its own. Connected by :func:`install`
(``AppConfig.ready()``) once the framework is first imported:

* ``Task.enqueue()`` / ``aenqueue()`` run inside a producer span
  (``tracing/django_tasks.py``); ``task_enqueued`` counts the task in
  ``tasks_enqueued_total``.
* ``task_started`` (in the process that runs the task): the task becomes
  current (its id and registered name, and the enqueuing request's id for
  log lines and ``get_request_id()``), ``tasks_active`` goes up, the queue
  wait is observed (start minus ``enqueued_at``, or minus ``run_after`` for a
  deferred task) and the consumer span starts.
* ``task_finished``: the outcome (``SUCCESSFUL`` is ``success``, ``FAILED``
  ``failure``: the framework has no other end state and no retries), the
  run time, the span's status; the task stops being current.

The registered name is the task's ``module_path`` (``shop.tasks.build_report``),
the name the framework stores and imports it by.

What is carried from the request to the task, and why there
    The framework gives a task no headers: its ``TaskResult`` holds the
    arguments, which belong to the task function, and times. The immediate
    backend runs the task inside ``enqueue()``, so the request's context is
    simply still current. For django-tasks-db's ``DatabaseBackend`` the app
    stores the request id and the W3C trace context in the task's row, in
    its JSON column ``args_kwargs`` under the key ``"observability"``, beside
    ``"args"`` and ``"kwargs"`` (which are all the backend reads), written
    by a ``pre_save`` receiver in the same ``INSERT``: no query more, and
    nothing a task function sees. Other backends carry nothing: their tasks
    get a request id and a trace of their own, and their log lines still
    join the enqueuing request's through ``task.id``.

A receiver never raises (Django's ``Signal.send`` would pass the exception
to the framework); a fault is logged once and the task runs as it would
without us. The task's own exceptions are the framework's business: it
records them in the result.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import time
from datetime import datetime
from typing import Any

from django_observability.faults import fault
from django_observability.imports import after_import
from django_observability.metrics import get_metrics
from django_observability.tasks.context import (
    REQUEST_ID_HEADER,
    current_task,
    enqueue_headers,
    enter_task,
    leave_task,
    queue_wait,
)
from django_observability.tracing import django_tasks as tracing

__all__ = ["CARRIED_KEY", "FRAMEWORKS", "OUTCOMES", "install", "task_name", "uninstall"]

#: The packages of the framework: Django's own, and the backport.
FRAMEWORKS = ("django.tasks", "django_tasks")

#: The framework's end state of a run -> the ``outcome`` label (anything else: ``failure``).
OUTCOMES = {"SUCCESSFUL": "success", "FAILED": "failure"}

#: The key of ``args_kwargs`` (django-tasks-db) under which the context is carried.
CARRIED_KEY = "observability"

_OWNER = "django_observability.tasks.django_tasks"
_WRAPPED = "_django_observability_wrapped"

_perf_counter = time.perf_counter


def task_name(task: Any) -> str:
    """The registered name of a ``django.tasks`` task: its ``module_path``."""
    name = getattr(task, "module_path", None)
    if isinstance(name, str) and name:
        return name
    func = getattr(task, "func", None)
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"


# --- enqueueing ----------------------------------------------------------------------------


def _producing(task: Any) -> Any:
    """The producer span's context manager, or a no-op one when making it faults."""
    try:
        return tracing.producing(task, task_name(task))
    except Exception:
        fault("tasks.django.enqueue")
        return _NoSpan()


class _NoSpan:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _mark(span: Any, result: Any) -> None:
    if span is None:
        return
    try:
        span.set_attribute("messaging.message.id", str(result.id))
    except Exception:
        fault("tasks.django.enqueue")


def _wrap_enqueue(original: Any) -> Any:
    @functools.wraps(original)
    def enqueue(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _producing(self) as span:
            result = original(self, *args, **kwargs)
            _mark(span, result)
            return result

    setattr(enqueue, _WRAPPED, original)
    return enqueue


def _wrap_aenqueue(original: Any) -> Any:
    @functools.wraps(original)
    async def aenqueue(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _producing(self) as span:
            result = await original(self, *args, **kwargs)
            _mark(span, result)
            return result

    setattr(aenqueue, _WRAPPED, original)
    return aenqueue


def enqueued(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    """``task_enqueued``: the backend took the task."""
    try:
        metrics = get_metrics()
        if metrics is not None and task_result is not None:
            metrics.count_enqueued(task_name(task_result.task))
    except Exception:
        fault("tasks.django.enqueued")


def carry(sender: Any = None, instance: Any = None, raw: bool = False, **kwargs: Any) -> None:
    """``pre_save`` of django-tasks-db's ``DBTaskResult``: the context goes into the new row."""
    if raw or kwargs.get("update_fields") is not None or instance is None:
        return
    try:
        if not instance._state.adding:
            return
        args_kwargs = instance.args_kwargs
        if not isinstance(args_kwargs, dict) or CARRIED_KEY in args_kwargs:
            return
        carried = enqueue_headers()
        carried.update(tracing.carrier())
        instance.args_kwargs = {**args_kwargs, CARRIED_KEY: carried}
    except Exception:
        fault("tasks.django.carry")


# --- running ---------------------------------------------------------------------------------


def carried(task_result: Any) -> dict[str, Any] | None:
    """What the enqueuing side stored with the task (see the module's docstring), or ``None``."""
    row = getattr(task_result, "db_result", None)
    args_kwargs = getattr(row, "args_kwargs", None)
    if isinstance(args_kwargs, dict):
        value = args_kwargs.get(CARRIED_KEY)
        if isinstance(value, dict):
            return value
    return None


def _epoch(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def started(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    """``task_started``: the task becomes current; ``tasks_active``, the queue wait, the span."""
    if task_result is None:
        return
    try:
        task = task_result.task
        name = task_name(task)
        context = carried(task_result) or {}
        info = enter_task(str(task_result.id), name, context.get(REQUEST_ID_HEADER))
    except Exception:
        fault("tasks.django.started")
        return
    try:
        metrics = get_metrics()
        if metrics is not None:
            enqueued_at = _epoch(task_result.enqueued_at)
            wait = None
            if enqueued_at is not None:
                wait = queue_wait(enqueued_at, _epoch(getattr(task, "run_after", None)))
            metrics.task_started(name, wait)
    except Exception:
        fault("tasks.django.started")
    try:
        tracing.start_consuming(info.id, task, name, context or None)
    except Exception:
        fault("tasks.django.span")


def _error_type(task_result: Any) -> str:
    errors = getattr(task_result, "errors", None) or ()
    path = getattr(errors[-1], "exception_class_path", None) if errors else None
    return path if isinstance(path, str) and path else "_OTHER"


def finished(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    """``task_finished``: the outcome and run time; the span ends; the task stops being current."""
    info = current_task()
    if task_result is None or info is None or info.id != str(task_result.id):
        return  # started() did not make it current (a fault there): nothing to close
    try:
        outcome = OUTCOMES.get(str(task_result.status), "failure")
        try:
            metrics = get_metrics()
            if metrics is not None:
                metrics.task_finished(info.name, outcome, _perf_counter() - info.started)
        except Exception:
            fault("tasks.django.finished")
        try:
            tracing.stop_consuming(
                info.id, None if outcome == "success" else _error_type(task_result)
            )
        except Exception:
            fault("tasks.django.span")
    finally:
        try:
            leave_task(info)
        except Exception:
            fault("tasks.django.finished")


# --- wiring ----------------------------------------------------------------------------------

_RECEIVERS = (
    ("task_enqueued", enqueued),
    ("task_started", started),
    ("task_finished", finished),
)


def install() -> None:
    """Observe the task framework(s) once imported (``AppConfig.ready()``); imports nothing more.

    Also connects :func:`carry` when django-tasks-db is an installed app,
    and makes its worker a worker (``tasks.db_worker``).
    """
    for package in FRAMEWORKS:
        if _installed(package):
            after_import(package, functools.partial(_connect, package))
    try:
        model = _task_model()
        if model is not None:
            from django.db.models.signals import pre_save

            pre_save.connect(carry, sender=model, weak=False, dispatch_uid=f"{_OWNER}.carry")
    except Exception:
        fault("tasks.django.install")
    from django_observability.tasks import db_worker

    db_worker.install()


def _task_model() -> Any:
    """django-tasks-db's ``DBTaskResult`` when it is an installed app, else ``None``."""
    from django.apps import apps

    if not apps.is_installed("django_tasks_db"):
        return None
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _connect(package: str) -> None:
    try:
        signals = importlib.import_module(f"{package}.signals")
        for name, receiver in _RECEIVERS:
            getattr(signals, name).connect(
                receiver, weak=False, dispatch_uid=f"{_OWNER}.{package}.{name}"
            )
        task_class = importlib.import_module(f"{package}.base").Task
        if not hasattr(task_class.enqueue, _WRAPPED):
            task_class.enqueue = _wrap_enqueue(task_class.enqueue)
        if not hasattr(task_class.aenqueue, _WRAPPED):
            task_class.aenqueue = _wrap_aenqueue(task_class.aenqueue)
    except Exception:
        fault("tasks.django.install")


def uninstall() -> None:
    """Undo :func:`install` (for tests)."""
    from django.db.models.signals import pre_save

    model = _task_model()
    if model is not None:
        pre_save.disconnect(sender=model, dispatch_uid=f"{_OWNER}.carry")
    for package in FRAMEWORKS:
        if not _installed(package):
            continue
        signals = importlib.import_module(f"{package}.signals")
        for name, _receiver in _RECEIVERS:
            getattr(signals, name).disconnect(dispatch_uid=f"{_OWNER}.{package}.{name}")
        task_class = importlib.import_module(f"{package}.base").Task
        for method in ("enqueue", "aenqueue"):
            original = getattr(getattr(task_class, method), _WRAPPED, None)
            if original is not None:
                setattr(task_class, method, original)
