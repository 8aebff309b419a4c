"""Structured JSON log lines with ECS field names, and a ready-made ``LOGGING`` dict.

The quickest way in, in ``settings.py``::

    from django_observability.logging import logging_config

    LOGGING = logging_config()  # JSON lines on stdout, root at INFO, access log on

Or use the pieces in a ``LOGGING`` dict of your own::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "django_observability.logging.JsonFormatter"}},
        "filters": {"context": {"()": "django_observability.logging.ContextFilter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["context"],  # ids stamped when the record is made
            },
        },
        "root": {"handlers": ["console"], "level": "INFO"},
    }

Each record becomes one line holding one JSON object, nested the way Elastic's
own ECS loggers write it::

    {"@timestamp": "2025-01-01T12:00:00.123Z", "log.level": "info", "message": "...",
     "log": {"logger": "...", "origin": {"file": {"name": "...", "line": 1}, "function": "..."}},
     "service": {"name": "...", "environment": "..."},
     "process": {"pid": 1, "thread": {"name": "MainThread"}},
     "trace": {"id": "..."}, "span": {"id": "..."}, "http": {"request": {"id": "..."}},
     "error": {"type": "...", "message": "...", "stack_trace": "..."}}

Attributes passed with ``extra=`` are added; a dotted key such as
``"http.response.status_code"`` is nested (``{"http": {"response": {...}}}``).
Values under keys that look secret (password, token, cookie, session, card
number, ...) are replaced by ``"[REDACTED]"``, at any depth, also in lists of
(name, value) pairs; in text values, sensitive query parameters and URL
passwords are masked. The message text is not scrubbed.

The package, one job a module (the names above are re-exported here, so the
dotted paths in ``LOGGING`` dicts stay ``django_observability.logging.X``):

``context``    the correlation ids a record carries, and ``ContextFilter``
``service``    the ``service`` field, cached; ``reset()`` forgets it
``values``     JSON helpers: text for what ``json`` cannot encode, the encoders
``redaction``  which keys are secret, and secrets inside URLs
``extras``     which attributes are extras, redacted, dotted keys nested
``fields``     the fixed fields every line has, defined once (``FIXED_FIELDS``)
``template``   the fast path: lines written from their call site's template
``formatter``  ``JsonFormatter``: the template, else the general path
``text``       ``TextFormatter``: human-readable lines with the request id
``server_access`` ``ServerAccessFilter``: secrets out of the servers' access lines
``celery_records`` ``CeleryRecordFilter``: task arguments and results out of Celery's lines
``config``     ``logging_config()``: a ready ``LOGGING`` dict
"""

from __future__ import annotations

from django_observability.logging.celery_records import CeleryRecordFilter
from django_observability.logging.config import logging_config
from django_observability.logging.context import ContextFilter
from django_observability.logging.formatter import JsonFormatter
from django_observability.logging.redaction import DEFAULT_REDACT_KEYS, REDACTED
from django_observability.logging.server_access import ServerAccessFilter
from django_observability.logging.text import TextFormatter

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "REDACTED",
    "CeleryRecordFilter",
    "ContextFilter",
    "JsonFormatter",
    "ServerAccessFilter",
    "TextFormatter",
    "logging_config",
]
