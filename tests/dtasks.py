"""Tasks of Django's task framework for the tests (``django.tasks``; the backport on 5.2).

Importable by their module path, as the database worker imports them.
"""

from __future__ import annotations

import logging

try:  # Django 6.0 and later
    from django.tasks import task
    from django.tasks.signals import task_enqueued, task_finished, task_started

    FRAMEWORK = "django.tasks"
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task
    from django_tasks.signals import task_enqueued, task_finished, task_started

    FRAMEWORK = "django_tasks"

from django_observability import get_request_id
from django_observability.tasks.context import current_task

__all__ = [
    "FRAMEWORK",
    "IMMEDIATE",
    "task_enqueued",
    "task_finished",
    "task_started",
]

IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
DATABASE = "django_tasks_db.DatabaseBackend"

logger = logging.getLogger("tests.dtasks")


class Boom(Exception):
    pass


@task()
def ok(value: int = 0) -> dict:
    """Says what the task sees: its context and the request id; queries the database once."""
    from django.contrib.auth.models import User

    info = current_task()
    logger.info("ok ran")
    return {
        "request_id": get_request_id(),
        "task": [info.id, info.name] if info else None,
        "users": User.objects.count(),
        "value": value,
    }


@task()
def failing() -> None:
    raise Boom("the task's own exception")


@task()
async def async_ok() -> dict:
    info = current_task()
    return {"request_id": get_request_id(), "task": [info.id, info.name] if info else None}


@task()
def enqueues_another() -> str:
    """A task that enqueues a task: the inner one joins the outer one's trace and request id."""
    return ok.enqueue(1).id


@task(backend="db")
def stored(value: int = 0) -> dict:
    """Run by the database worker: the same view of its context as :func:`ok`."""
    from django.contrib.auth.models import User

    info = current_task()
    logger.info("stored ran", extra={"value": value})
    return {
        "request_id": get_request_id(),
        "task": [info.id, info.name] if info else None,
        "users": User.objects.count(),
        "value": value,
    }


@task(backend="db")
def stored_failing() -> None:
    raise Boom("a stored task's own exception")
