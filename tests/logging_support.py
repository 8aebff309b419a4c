"""Helpers shared by the tests of django_observability.logging (not a test module)."""

import contextlib
import io
import json
import logging
import logging.config
import warnings

from django.utils.log import configure_logging

from django_observability.context import REQUEST_ID as _current
from django_observability.logging import (
    JsonFormatter,
)

LOGGER = "tests.logging"


def strict_loads(line):
    """json.loads that refuses NaN and Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def log_line(msg="hello", *args, formatter=None, level=logging.INFO, stacklevel=2, **kw):
    """Log one record through a JsonFormatter; the raw line, checked to be one line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or JsonFormatter())
    logger = logging.getLogger(LOGGER)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.log(level, msg, *args, stacklevel=stacklevel, **kw)
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
    text = stream.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1, text
    return text[:-1]


def log_json(*args, **kw):
    return strict_loads(log_line(*args, stacklevel=3, **kw))


@contextlib.contextmanager
def in_request(request_id):
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


SECRET = "hunter2-s3cr3t-value"


def state_of(logger):
    return (logger.handlers[:], logger.level, logger.propagate, logger.disabled, logger.filters[:])


@contextlib.contextmanager
def applied(config, names=(), *, django=False, before=None):
    """Apply a LOGGING dict, then put every touched logger back as it was.

    A context manager inside the test rather than a fixture: pytest attaches
    its own capturing handlers to the root logger per test phase, and those
    must be restored within the same phase.
    """
    names = {None, *names, *config.get("loggers", {})}
    saved = {name: state_of(logging.getLogger(name)) for name in names}
    saved_list = logging._handlerList[:]
    saved_named = dict(logging._handlers)
    saved_showwarning = warnings.showwarning  # logging_config() captures warnings
    try:
        if before is not None:
            before()
        if django:
            configure_logging("logging.config.dictConfig", config)
        else:
            logging.config.dictConfig(config)
        yield
    finally:
        for name, (handlers, level, propagate, disabled, filters) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled
            logger.filters[:] = filters
        logging._handlerList[:] = saved_list
        logging._handlers.clear()
        logging._handlers.update(saved_named)
        if warnings.showwarning is not saved_showwarning:
            logging.captureWarnings(False)
            warnings.showwarning = saved_showwarning


def servers_configure_logging_first():
    """What gunicorn and uvicorn do before Django loads: their own handlers."""
    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from uvicorn.config import LOGGING_CONFIG

    logging.config.dictConfig(LOGGING_CONFIG)
    Logger(Config())


ALL_LOGGERS = [
    "django",
    "django.request",
    "django.server",
    "django.security.csrf",
    "django.db.backends",
    "django_observability",
    "django_observability.access",
    "django_observability.audit",
    "gunicorn.error",
    "gunicorn.access",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "myproject.views",
]


def general_line(formatter, record):
    """The line as the general path writes it: a formatter like ``formatter``, templates off."""
    general = JsonFormatter(
        templates=False,
        static_fields=formatter.static_fields,
        json_ensure_ascii=formatter.json_ensure_ascii,
    )
    return general.format(record)


def planned_line(formatter, record):
    """The line from ``formatter``'s template, or None when no template fits the record."""
    return formatter.templates.line(record, formatter.static_fields)


def make_record(msg="m %s", args=("x",), **extra):
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 7, msg, args, None, func="here")
    record.__dict__.update(extra)
    return record
