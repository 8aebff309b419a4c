"""``CeleryRecordFilter``: Celery's per-task lines without the task's arguments and result.

Celery logs each task's ``received``, ``succeeded``, ``retry`` and failure
lines with the whole context of the run in ``extra={"data": {...}}``: its id
and name, the ``repr()`` of its arguments (``args``, ``kwargs``) and of its
return value (``return_value``), the exception's text and traceback. Celery's
text lines never show that dict, but a JSON formatter writes every extra, so
a task's arguments (an e-mail address, a token) and its result would reach
the log store. The filter takes ``data`` off the record, and the task's
arguments off the record's ``args`` (the same dict, which Celery formats its
message from, and which an error tracker's logging integration keeps); what it said that
is worth keeping is on the line already: the task's id and name (``task.id``,
``task.name``, from the task context), the exception (``error.*``, for a
record logged with ``exc_info``), and the run time of a ``succeeded`` line,
which becomes ``event.duration`` (ECS: nanoseconds, an integer). The message
itself is Celery's, as Celery formats it (its ``succeeded`` line ends with
the result's ``repr()``: Celery's choice, which the filter leaves alone).

Without ``data``, Celery's lines are plain records, written from their call
site's template (``template.py``) like the app's own.

``logging_config()`` attaches it to ``celery.app.trace`` and
``celery.worker.strategy``. In a ``LOGGING`` of your own::

    "filters": {"celery_records": {"()": "django_observability.logging.CeleryRecordFilter"}},
    "loggers": {"celery.app.trace": {"filters": ["celery_records"], ...}},
"""

from __future__ import annotations

import logging

__all__ = ["CeleryRecordFilter"]


class CeleryRecordFilter(logging.Filter):
    """Takes Celery's ``data`` extra off a record, keeping its run time; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        state = record.__dict__
        data = state.pop("data", None)
        if type(data) is dict:
            runtime = data.get("runtime")
            if type(runtime) is float and runtime >= 0:
                state["event.duration"] = int(runtime * 1e9)
            if record.args is data:
                record.args = _formatted_only(record.msg, data)
        return True


def _formatted_only(msg: object, context: dict[str, object]) -> dict[str, object]:
    """Celery's context as the record's arguments, without what its message does not show.

    The same dict is the record's ``args`` (the message is formatted from it):
    handlers that keep a record's arguments (an error tracker's logging
    integration) would get the task's arguments from there. Celery's messages
    name neither ``args`` nor ``kwargs``; one that does keeps them.
    """
    text = msg if isinstance(msg, str) else ""
    return {
        key: value for key, value in context.items() if key not in _ARGUMENTS or f"%({key})" in text
    }


_ARGUMENTS = ("args", "kwargs")
