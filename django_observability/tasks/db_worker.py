"""django-tasks-db's worker (``manage.py db_worker``) run as a worker: ``/metrics``, heartbeat.

The database backend of ``django.tasks`` runs tasks in ``manage.py
db_worker``, one process that polls the task table. Once its command module
is imported, its ``Worker.run`` (the polling loop) is wrapped so that, for as
long as the loop runs, the process:

* serves the protected ``/metrics`` on ``OBSERVABILITY_WORKER_METRICS_PORT``
  and refreshes the heartbeat file ``manage.py observability_worker_alive``
  reads, exactly as a Celery worker's main process does (``tasks.worker``);
* makes no spans outside a task: the poll runs a few queries every second,
  each of which would otherwise start a trace of its own. A task's consumer
  span starts a context of its own (``tracing/django_tasks.py``), so the
  task's queries are traced.

The metrics stay in the process's memory (one process: nothing to share)
unless ``PROMETHEUS_MULTIPROC_DIR`` is set. Several ``db_worker`` processes
on one host each need a port of their own.
"""

from __future__ import annotations

import functools
from typing import Any

from django_observability.faults import fault
from django_observability.imports import after_import

__all__ = ["COMMAND_MODULE", "install", "wrap_run"]

#: The module of django-tasks-db's ``db_worker`` command.
COMMAND_MODULE = "django_tasks_db.management.commands.db_worker"

_WRAPPED = "_django_observability_wrapped"


def wrap_run(run: Any) -> Any:
    """``Worker.run`` with the worker's services around it and spans suppressed while polling."""

    @functools.wraps(run)
    def wrapped(self: Any) -> Any:
        from django_observability.tasks.worker import start_services, stop_services
        from django_observability.tracing import end_suppression, suppress_spans

        start_services()
        token = None
        try:
            token = suppress_spans()
        except Exception:
            fault("tasks.db_worker")
        try:
            return run(self)
        finally:
            try:
                end_suppression(token)
            finally:
                stop_services()

    setattr(wrapped, _WRAPPED, run)
    return wrapped


def _wrap() -> None:
    try:
        import importlib

        worker = importlib.import_module(COMMAND_MODULE).Worker
        if not hasattr(worker.run, _WRAPPED):
            worker.run = wrap_run(worker.run)
    except Exception:
        fault("tasks.db_worker.install")


def install() -> None:
    """Wrap the worker's loop once its command module is imported (``manage.py db_worker``)."""
    after_import(COMMAND_MODULE, _wrap)


def uninstall() -> None:
    """Undo the wrapping (for tests)."""
    import sys

    module = sys.modules.get(COMMAND_MODULE)
    if module is None:
        return
    original = getattr(module.Worker.run, _WRAPPED, None)
    if original is not None:
        module.Worker.run = original
