"""Background work of the example shop: Celery tasks the demo's worker runs.

``POST /api/v1/reports/`` enqueues :func:`build_report` (``?kind=fail``
:func:`fail_report`, ``?kind=retry`` :func:`flaky_report`); Celery beat runs
:func:`refresh_stats` every minute (``CELERY_BEAT_SCHEDULE`` in the settings).
Each shows up in the worker's metrics (``tasks_finished_total`` by outcome:
success, failure, retry), in its JSON log lines (``task.id``, ``task.name``,
the enqueuing request's ``http.request.id``) and, with tracing on, as a
consumer span with the queries as children, in the trace of the request that
enqueued it.
"""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger("shop")

#: Seconds before the retried task runs again.
RETRY_COUNTDOWN = 1.0


class ReportError(Exception):
    """What the failing task raises (and the flaky one, the first time)."""


def _counts() -> dict[str, int]:
    from django.contrib.auth.models import Group, User

    return {"users": User.objects.count(), "groups": Group.objects.count()}


@shared_task
def build_report() -> dict[str, int]:
    """Two queries and a small summary, logged and returned."""
    summary = _counts()
    logger.info("report built", extra={"shop.report.users": summary["users"]})
    return summary


@shared_task
def fail_report() -> None:
    """Always fails: counted with outcome ``failure``, its traceback in the worker's log."""
    raise ReportError("the report's data source is down")


@shared_task(bind=True, max_retries=1)
def flaky_report(self) -> dict[str, int]:
    """Fails on its first run and is retried once, after RETRY_COUNTDOWN s; then succeeds.

    Two runs, two outcomes: ``retry``, then ``success``.
    """
    if self.request.retries == 0:
        logger.warning("report source busy, retrying")
        raise self.retry(
            exc=ReportError("the report's data source is busy"), countdown=RETRY_COUNTDOWN
        )
    return _counts()


@shared_task
def refresh_stats() -> dict[str, int]:
    """The periodic task (Celery beat's ``refresh-stats`` entry)."""
    stats = _counts()
    logger.info("stats refreshed", extra={"shop.stats.users": stats["users"]})
    return stats
