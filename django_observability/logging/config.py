"""``logging_config()``: a complete ``LOGGING`` dict, JSON lines on stdout."""

from __future__ import annotations

import logging
from typing import IO, Any

__all__ = ["capture_warnings", "logging_config"]


def capture_warnings() -> logging.Filter:
    """The ``py.warnings`` logger's filter; making it turns ``logging.captureWarnings`` on.

    ``logging_config()`` names it in its ``filters``, so whoever applies the
    dict (Django from ``LOGGING``, gunicorn from ``logconfig_dict``, uvicorn
    from ``--log-config``) also sends Python's warnings to logging: they come
    out as lines of the same handler. Applying the dict is the moment the
    process chooses its logging; the app's ``ready()`` is not, as it runs
    whatever ``LOGGING`` a project has, and warnings sent to a logging setup
    with no place for them would be lost.
    """
    logging.captureWarnings(True)
    return logging.Filter()


def logging_config(
    level: str | int = "INFO",
    *,
    json: bool = True,
    access_log: bool = True,
    server_access_log: bool = False,
    stream: str | IO[str] = "ext://sys.stdout",
    mail_admins: bool = True,
) -> dict[str, Any]:
    """A complete ``LOGGING`` dict: every record as one JSON line on stdout.

    In ``settings.py``::

        from django_observability.logging import logging_config

        LOGGING = logging_config()                        # INFO, JSON
        LOGGING = logging_config("DEBUG", json=not DEBUG)  # text lines while developing

    One handler (``"console"``, on the root logger) writes everything, once:
    Django's loggers (``django``, ``django.request``, ``django.server``,
    ``django.security``), this app's (``django_observability``, its ``.access``
    and ``.audit`` records), the servers' (``gunicorn.error``,
    ``gunicorn.access``, ``uvicorn``, ``uvicorn.error``, ``uvicorn.access``)
    and Celery's (``celery`` and everything under it: ``celery.task``,
    ``celery.worker...``, ``celery.app.trace``, ``celery.redirected``, a
    task's printed output) lose the handlers Django, gunicorn, uvicorn or
    Celery gave them and propagate to it. In a Celery worker, lines logged
    while a task runs carry ``task.id``, ``task.name`` and the enqueuing
    request's ``http.request.id`` (docs/tasks.md: the worker keeps this
    configuration instead of installing Celery's own), and Celery's per-task
    lines lose the task's arguments and result from their ``data`` field
    (:class:`CeleryRecordFilter`). Django's
    ``mail_admins`` handler on ``django`` is kept as Django sets it (errors,
    only when ``DEBUG`` is off and ``ADMINS`` is set). Python's
    warnings are sent to logging (:func:`capture_warnings`) and come out as
    lines of the ``py.warnings`` logger.

    ``level``
        Level of the root logger and of ``django``, ``django_observability``,
        ``gunicorn.error``, ``uvicorn`` and ``celery``. Access and audit records are
        logged at INFO whatever this is.
    ``json``
        ``False`` writes :class:`TextFormatter` lines instead (for a terminal).
    ``access_log``
        ``False`` drops this app's per-request access records.
    ``server_access_log``
        ``True`` keeps the servers' own access lines (``gunicorn.access``,
        ``uvicorn.access``). By default they are dropped: the app writes its
        own access line, with the route, the ids and no query string, while
        the servers' lines hold the query string and the ``Referer``, where
        tokens travel. When kept, :class:`ServerAccessFilter` masks sensitive
        query parameters, URL passwords and secret headers in them (it is on
        Django's ``django.server`` too).
    ``stream``
        Where lines go: an ``ext://`` name as ``dictConfig`` understands it, or
        a file object.
    ``mail_admins``
        ``False`` leaves out Django's ``mail_admins`` handler, which reads the
        settings when it is made: for gunicorn's ``logconfig_dict``, applied by
        the master before Django is loaded (see docs/operating.md, gunicorn).

    Django applies ``LOGGING`` when it starts, so under gunicorn or uvicorn
    the server's own lines written before the application is loaded (the
    master's start-up lines) keep the server's format, unless the server gets
    the same dict, made with ``mail_admins=False``: ``logconfig_dict`` in
    ``gunicorn.conf.py``, or saved as JSON for ``uvicorn --log-config``.

    The result is a plain dict: change it before Django applies it.
    """
    if isinstance(level, str):
        level = level.upper()
    inherit = "NOTSET"

    def propagating(logger_level: str | int, *filters: str) -> dict[str, Any]:
        logger = {"level": logger_level, "handlers": [], "propagate": True}
        if filters:
            logger["filters"] = list(filters)
        return logger

    server_access = "INFO" if server_access_log else "WARNING"

    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "django_observability.logging.JsonFormatter"},
            "text": {"()": "django_observability.logging.TextFormatter"},
        },
        "filters": {
            "context": {"()": "django_observability.logging.ContextFilter"},
            "server_access": {"()": "django_observability.logging.ServerAccessFilter"},
            "celery_records": {"()": "django_observability.logging.CeleryRecordFilter"},
            "capture_warnings": {"()": "django_observability.logging.config.capture_warnings"},
            "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if json else "text",
                "filters": ["context"],
                "stream": stream,
            },
            "mail_admins": {
                "level": "ERROR",
                "filters": ["require_debug_false"],
                "class": "django.utils.log.AdminEmailHandler",
            },
        },
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "django": {"level": level, "handlers": ["mail_admins"], "propagate": True},
            "django.request": propagating(inherit),
            "django.server": propagating(inherit, "server_access"),
            "django.security": propagating(inherit),
            "django_observability": propagating(level),
            "django_observability.access": propagating("INFO" if access_log else "WARNING"),
            "django_observability.audit": propagating("INFO"),
            "gunicorn.error": propagating(level),
            "gunicorn.access": propagating(server_access, "server_access"),
            "uvicorn": propagating(level),
            "uvicorn.error": propagating(inherit),
            "uvicorn.access": propagating(server_access, "server_access"),
            "py.warnings": propagating(inherit, "capture_warnings"),
            "celery": propagating(level),
            "celery.task": propagating(inherit),
            "celery.redirected": propagating(inherit),
            "celery.app.trace": propagating(inherit, "celery_records"),
            "celery.worker.strategy": propagating(inherit, "celery_records"),
        },
    }
    if not mail_admins:
        del config["handlers"]["mail_admins"], config["filters"]["require_debug_false"]
        config["loggers"]["django"]["handlers"] = []
    return config
