"""The ``service`` field of every line: name and environment, read once and cached.

Read from the settings (``OBSERVABILITY_SERVICE_NAME``,
``OBSERVABILITY_ENVIRONMENT``) once Django has them. Before, from what a
server's master learnt its workers will say (:func:`assume`, see
``django_observability.gunicorn``), else from the environment. :func:`reset`
forgets the cached value; it runs when an ``OBSERVABILITY_`` setting changes
(``override_settings`` in tests).
"""

from __future__ import annotations

import os

from django.conf import settings

from django_observability.conf import conf, env_environment, env_service_name

__all__ = ["assume", "current", "read", "reset"]

# Written on a line when the settings cannot be read.
FALLBACK = {"name": "django"}

_cache: dict[str, str] | None = None
_assumed: dict[str, str] | None = None


def assume(fields: dict[str, str] | None) -> None:
    """Write ``fields`` while the settings are not loaded (``None``: the environment's).

    For a server's master, which logs before (and without) loading Django:
    it gives the fields its workers will write once they have the settings.
    """
    global _assumed
    _assumed = dict(fields) if fields is not None else None


def read() -> dict[str, str]:
    """``{"name": ..., "environment": ...}`` as configured now (no environment if empty)."""
    if settings.configured:
        name, environment = conf.SERVICE_NAME, conf.ENVIRONMENT
    elif _assumed is not None:
        return _assumed
    else:
        # Logging before Django has loaded its settings (a server's own start-up
        # lines): don't import the settings module from inside a log call.
        module = os.environ.get("DJANGO_SETTINGS_MODULE") or "django"
        name = env_service_name() or module.split(".", 1)[0]
        environment = env_environment()
    service = {"name": name}
    if environment:
        service["environment"] = environment
    return service


def current() -> dict[str, str]:
    """The service fields, cached once the settings are loaded.

    The same dict is returned until :func:`reset`, so callers may cache what
    they derive from it and compare by identity. Callers must not change it.
    Never raises: broken settings give :data:`FALLBACK`.
    """
    global _cache
    cached = _cache
    if cached is None:
        try:
            cached = read()
        except Exception:  # broken settings must not cost us the log line
            return FALLBACK
        if settings.configured:
            _cache = cached
    return cached


def reset() -> None:
    """Forget the cached service fields: the next line reads them again."""
    global _cache
    _cache = None
