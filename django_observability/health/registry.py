"""``OBSERVABILITY_HEALTH_CHECKS`` -> check objects, made once and cached."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from django.utils.module_loading import import_string

from django_observability.conf import valid_or_default
from django_observability.health.base import FunctionCheck, HealthCheck, HealthError
from django_observability.health.runner import CheckSpec

logger = logging.getLogger("django_observability.health")

_lock = threading.Lock()
_specs: dict[str, CheckSpec] | None = None


class _Unloadable(HealthCheck):
    """Stands for a check that could not be loaded: it always fails."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def run(self) -> None:
        raise HealthError(self.problem)


def build_check(target: Any, options: dict[str, Any]) -> HealthCheck:
    """A check object from a class, an instance or a callable, with options."""
    options = dict(options)
    if isinstance(target, str):
        target = import_string(target)
    if isinstance(target, type):
        instance = target(**options) if issubclass(target, HealthCheck) else None
        if instance is None:
            obj = target(**{k: v for k, v in options.items() if k != "timeout"})
            if not callable(getattr(obj, "run", None)):
                raise TypeError(f"{target.__qualname__} has no run() method")
            instance = FunctionCheck(obj.run, timeout=options.get("timeout"))
        return instance
    if isinstance(target, HealthCheck):
        return target
    if callable(target):
        return FunctionCheck(target, **options)
    raise TypeError(f"{target!r} is neither a check class nor a callable")


def _load() -> dict[str, CheckSpec]:
    configured = valid_or_default("HEALTH_CHECKS")
    default_timeout = valid_or_default("HEALTH_TIMEOUT")
    specs: dict[str, CheckSpec] = {}
    for name, entry in configured.items():
        target, options = (entry[0], entry[1]) if isinstance(entry, (list, tuple)) else (entry, {})
        try:
            check = build_check(target, options)
        except Exception as exc:
            logger.error("health check %r could not be loaded from %r: %s", name, target, exc)
            check = _Unloadable(f"could not be loaded: {type(exc).__name__}: {exc}")
        timeout = getattr(check, "timeout", None) or default_timeout
        specs[name] = CheckSpec(name, check, float(timeout))
    return specs


def all_specs() -> dict[str, CheckSpec]:
    """Every configured check, by name."""
    global _specs
    specs = _specs
    if specs is None:
        with _lock:
            if _specs is None:
                _specs = _load()
            specs = _specs
    return specs


def specs_for(names: Sequence[str]) -> list[CheckSpec]:
    specs = all_specs()
    return [specs[name] for name in names if name in specs]


def readiness_specs() -> list[CheckSpec]:
    return specs_for(valid_or_default("HEALTH_READINESS_CHECKS"))


def reset() -> None:
    """Load the checks again from the settings on next use."""
    global _specs
    with _lock:
        _specs = None
