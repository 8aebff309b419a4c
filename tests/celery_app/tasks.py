"""The tasks: one that succeeds, one that fails, one retried once, one that makes two queries."""

import logging

from django.db import connection

from django_observability import get_request_id
from tests.celery_app.app import app

logger = logging.getLogger("tests.celery_app")


class Boom(Exception):
    """What ``failing`` raises."""


@app.task(name="tests.ok")
def ok() -> str:
    logger.info("ok ran", extra={"seen_request_id": get_request_id()})
    return "ok"


@app.task(name="tests.failing")
def failing() -> None:
    raise Boom("failing on purpose")


@app.task(name="tests.retried", bind=True, max_retries=3)
def retried(self) -> str:
    if self.request.retries < 1:
        raise self.retry(countdown=0)
    return "ok"


@app.task(name="tests.queries")
def queries() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.execute("SELECT 2")
    return 2


TASKS = {"ok": ok, "failing": failing, "retried": retried, "queries": queries}
