"""Health checks: what they are, the built-in ones, and how they are run.

Write your own as a function or a :class:`HealthCheck` subclass and name it in
``OBSERVABILITY_HEALTH_CHECKS``; see docs/health.md.
"""

from __future__ import annotations

from django_observability.health.base import (
    FAIL,
    PASS,
    WARN,
    CheckResult,
    Component,
    HealthCheck,
    HealthError,
    HealthWarning,
)

__all__ = [
    "FAIL",
    "PASS",
    "WARN",
    "CheckResult",
    "Component",
    "HealthCheck",
    "HealthError",
    "HealthWarning",
]
