"""The ``service`` field of every line: name and environment, read once and cached.

Read from the settings (``OBSERVABILITY_SERVICE_NAME``,
``OBSERVABILITY_ENVIRONMENT``) once Django has them, from the environment
before. :func:`reset` forgets the cached value; it runs when an
``OBSERVABILITY_`` setting changes (``override_settings`` in tests).
"""

from __future__ import annotations

import os

from django.conf import settings

from django_observability.conf import conf, env_environment, env_service_name

__all__ = ["current", "read", "reset"]

# Written on a line when the settings cannot be read.
FALLBACK = {"name": "django"}

_cache: dict[str, str] | None = None


def read() -> dict[str, str]:
    """``{"name": ..., "environment": ...}`` as configured now (no environment if empty)."""
    if settings.configured:
        name, environment = conf.SERVICE_NAME, conf.ENVIRONMENT
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
