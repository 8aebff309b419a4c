"""Background work of the example shop with Django's task framework (``django.tasks``).

The same kind of work as the Celery tasks of ``shop/tasks.py``, written for
the framework Django ships since 6.0 (the django-tasks backport on 5.2).
``POST /api/v1/exports/`` enqueues :func:`export_orders` (``?kind=fail``
:func:`fail_export`); the settings' ``TASKS`` stores them with django-tasks-db's
database backend and ``python manage.py db_worker`` runs them.

Each shows up in the db worker's ``/metrics`` (``tasks_finished_total`` by
outcome: ``success``, ``failure``; the framework has no retries), in its JSON
log lines (``task.id``, ``task.name`` such as ``shop.background.export_orders``,
and the enqueuing request's ``http.request.id``) and, with tracing on, as a
consumer span ``run shop.background.export_orders`` with the queries as
children, in the trace of the request that enqueued it. Nothing here does
anything for that: django-observability observes the framework's signals.

Not ``shop/tasks.py``: that is the module Celery's ``autodiscover_tasks()`` imports.
"""

from __future__ import annotations

import logging

try:  # Django 6.0 and later
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

logger = logging.getLogger("shop")


class ExportError(Exception):
    """What the failing export raises."""


@task()
def export_orders() -> dict[str, int]:
    """Two queries and a small summary, logged and returned (stored in the task's row)."""
    from django.contrib.auth.models import Group, User

    summary = {"users": User.objects.count(), "groups": Group.objects.count()}
    logger.info("orders exported", extra={"shop.export.users": summary["users"]})
    return summary


@task()
def fail_export() -> None:
    """Always fails: counted with outcome ``failure``; the framework keeps the traceback."""
    raise ExportError("the export's destination refused the file")
