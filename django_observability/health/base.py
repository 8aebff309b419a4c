"""What a health check is, and what it reports.

A check is either a plain callable or a :class:`HealthCheck` subclass; either
may be sync or async. What it does decides the result:

* returns ``None``: ``pass``;
* returns a number: ``pass`` with that number as ``observedValue``;
* returns a :class:`Component` or a list of them: those components;
* raises :class:`HealthWarning`: ``warn``, its message as ``output``;
* raises anything else: ``fail``; the output is the exception's type and
  message, shown only to authorized callers; the traceback goes to the log.
"""

from __future__ import annotations

import datetime
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PASS = "pass"  # noqa: S105 (a status, not a password)
WARN = "warn"
FAIL = "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}


class HealthWarning(Exception):
    """Raise from a check to report ``warn``: degraded, still serving."""


class HealthError(Exception):
    """Raise from a check to report ``fail`` with a message of your own."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


@dataclass
class Component:
    """One result object of a check (one per component, e.g. per database alias)."""

    status: str = PASS
    component_id: str | None = None
    component_type: str | None = None
    observed_value: Any = None
    observed_unit: str | None = None
    output: str | None = None
    time: str = field(default_factory=_now)

    def as_dict(self) -> dict[str, Any]:
        """Every field, for a caller with details (``health/rendering.py`` decides who that is)."""
        data: dict[str, Any] = {}
        if self.component_id is not None:
            data["componentId"] = self.component_id
        if self.component_type is not None:
            data["componentType"] = self.component_type
        data["status"] = self.status
        if self.observed_value is not None:
            data["observedValue"] = self.observed_value
        if self.observed_unit is not None:
            data["observedUnit"] = self.observed_unit
        data["time"] = self.time
        if self.output:
            data["output"] = self.output
        return data


def worst(statuses: Iterable[str]) -> str:
    """The overall status of several: ``fail`` over ``warn`` over ``pass``."""
    result = PASS
    for status in statuses:
        if _RANK[status] > _RANK[result]:
            result = status
    return result


@dataclass
class CheckResult:
    """What one run of one check found."""

    name: str
    components: list[Component]
    duration: float = 0.0
    #: The unexpected exception behind a failure, for the server's log only.
    error: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def status(self) -> str:
        return worst(c.status for c in self.components)


class HealthCheck:
    """Base class for checks. Implement :meth:`run` (``def`` or ``async def``).

    Keyword arguments given in ``OBSERVABILITY_HEALTH_CHECKS`` (the second item
    of a ``(path, kwargs)`` pair) become attributes, so class attributes are
    the defaults. ``timeout`` (seconds) overrides
    ``OBSERVABILITY_HEALTH_TIMEOUT`` for this check.
    """

    timeout: float | None = None
    component_type: str | None = None
    observed_unit: str | None = None

    def __init__(self, **options: Any) -> None:
        for key, value in options.items():
            if not hasattr(type(self), key):
                raise TypeError(f"{type(self).__name__} has no option {key!r}")
            setattr(self, key, value)

    def run(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement run()")


class FunctionCheck(HealthCheck):
    """Adapts a plain callable (sync or async) to a check."""

    def __init__(self, func: Callable[..., Any], **kwargs: Any) -> None:
        self.timeout = kwargs.pop("timeout", None)
        self.func = func
        self.kwargs = kwargs

    def run(self) -> Any:
        return self.func(**self.kwargs)


def is_async(check: HealthCheck) -> bool:
    target = check.func if isinstance(check, FunctionCheck) else check.run
    return inspect.iscoroutinefunction(target)


def to_components(check: HealthCheck, returned: Any) -> list[Component]:
    """Turn what ``run()`` returned into components."""
    if returned is None:
        return [Component(component_type=check.component_type)]
    if isinstance(returned, Component):
        return [returned]
    if isinstance(returned, bool):
        return [Component(status=PASS if returned else FAIL, component_type=check.component_type)]
    if isinstance(returned, (int, float)):
        return [
            Component(
                observed_value=returned,
                observed_unit=check.observed_unit,
                component_type=check.component_type,
            )
        ]
    if isinstance(returned, (list, tuple)) and all(isinstance(c, Component) for c in returned):
        return list(returned) or [Component(component_type=check.component_type)]
    raise TypeError(
        f"a health check returned {type(returned).__name__}; expected None, a number, "
        "a Component or a list of Components"
    )


def failure_output(exc: BaseException) -> str:
    """What an authorized caller is told about an unexpected exception."""
    message = str(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


__all__ = [
    "FAIL",
    "PASS",
    "WARN",
    "CheckResult",
    "Component",
    "HealthCheck",
    "HealthError",
    "HealthWarning",
    "worst",
]
