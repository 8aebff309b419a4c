"""What tracing is configured to do: the settings, with the ``OTEL_*`` environment as fallback.

Each function reads its setting (``OBSERVABILITY_TRACING_*``) on every call,
falling back to the OpenTelemetry environment variables; a value it cannot
use is logged once, as a warning, and replaced by the default.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from django_observability.conf import DEFAULT_TRACING_EXIT_TIMEOUT, valid_or_default

logger = logging.getLogger("django_observability.tracing")

__all__ = [
    "DEFAULT_EXPORT_TIMEOUT",
    "EXPORTERS",
    "PROTOCOLS",
    "exit_timeout",
    "export_timeout",
    "exporter_names",
    "otlp_endpoint",
    "otlp_protocol",
    "reset",
    "sample_ratio",
    "sdk_disabled",
    "warn_once",
]

EXPORTERS = ("none", "console", "otlp")
PROTOCOLS = ("http/protobuf", "grpc")

_warned: set[str] = set()


def warn_once(message: str, *args: Any) -> None:
    """Log ``message % args`` as a warning, the first time only in this process."""
    key = message % args
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true``: the SDK records nothing, so we install nothing."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def exporter_names() -> tuple[str, ...]:
    """Where spans go: ``()`` for nowhere, else ``"console"`` and/or ``"otlp"``.

    The setting names one exporter and wins. Unset, ``OTEL_TRACES_EXPORTER``
    applies, which may list several (``otlp,console``); names we do not
    support (``zipkin``...) are left out with a warning.
    """
    value = valid_or_default("TRACING_EXPORTER")
    if value is not None:
        value = value.lower()
        return () if value == "none" else (value,)
    names: list[str] = []
    for item in os.environ.get("OTEL_TRACES_EXPORTER", "").split(","):
        name = item.strip().lower()
        if not name or name == "none" or name in names:
            continue
        if name not in EXPORTERS:
            warn_once(
                "OTEL_TRACES_EXPORTER names %r, which django-observability does not support "
                "(supported: console, otlp, none); left out",
                name,
            )
            continue
        names.append(name)
    return tuple(names)


def otlp_protocol() -> str:
    value = valid_or_default("TRACING_OTLP_PROTOCOL")
    if value is None:
        value = (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
    value = value.strip().lower()
    if value not in PROTOCOLS:
        warn_once("OTLP protocol %r is not supported; using http/protobuf", value)
        return "http/protobuf"
    return value


def otlp_endpoint(protocol: str) -> str | None:
    """Where spans go: the setting (a base URL) wins over the environment.

    For OTLP/HTTP, ``/v1/traces`` is appended to a base URL, as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` specifies; ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    is used as it is. ``None`` lets the exporter pick its default.
    """
    base = valid_or_default("TRACING_OTLP_ENDPOINT")
    if base is None:
        full = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if full:
            return full
        base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not base:
            return None
    if protocol == "grpc":
        return base
    return base.rstrip("/") + "/v1/traces"


# Seconds, when neither the setting nor the environment says.
DEFAULT_EXPORT_TIMEOUT = 5.0
_TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


def export_timeout() -> float:
    """Seconds one export may take: the setting, else the OTLP timeout variables.

    ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` then ``OTEL_EXPORTER_OTLP_TIMEOUT``,
    read in seconds as opentelemetry-python's exporters read them. A value
    that is not a positive number is logged and replaced by the default.
    """
    value = valid_or_default("TRACING_EXPORT_TIMEOUT")
    if value is not None:
        return float(value)
    for name in _TIMEOUT_VARIABLES:
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if 0 < seconds < math.inf:
            return seconds
        warn_once(
            "%s=%r is not a positive number of seconds; exports time out after %s s",
            name,
            raw,
            DEFAULT_EXPORT_TIMEOUT,
        )
        return DEFAULT_EXPORT_TIMEOUT
    return DEFAULT_EXPORT_TIMEOUT


_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
_OFF_SAMPLERS = ("always_off", "parentbased_always_off")
_ON_SAMPLERS = ("always_on", "parentbased_always_on")


def sample_ratio() -> float:
    """Share of new traces sampled (always parent-based: a sampled parent is followed).

    The setting wins. Unset, ``OTEL_TRACES_SAMPLER`` applies: the ratio
    samplers take ``OTEL_TRACES_SAMPLER_ARG`` (a number from 0 to 1, else 1.0
    with a warning), the ``always_off`` samplers give 0, anything else 1.
    """
    value = valid_or_default("TRACING_SAMPLE_RATIO")
    if value is not None:
        return float(value)
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler in _OFF_SAMPLERS:
        return 0.0
    if sampler in _RATIO_SAMPLERS:
        raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        if not raw:
            return 1.0
        try:
            ratio = float(raw)
        except ValueError:
            ratio = math.nan
        if 0.0 <= ratio <= 1.0:
            return ratio
        warn_once("OTEL_TRACES_SAMPLER_ARG=%r is not a ratio from 0 to 1; sampling all", raw)
        return 1.0
    if sampler and sampler not in _ON_SAMPLERS:
        warn_once("OTEL_TRACES_SAMPLER=%r is not supported; sampling all (parent-based)", sampler)
    return 1.0


def exit_timeout() -> float:
    """Seconds the flush at exit may wait in all: ``OBSERVABILITY_TRACING_EXIT_TIMEOUT``."""
    try:
        return float(valid_or_default("TRACING_EXIT_TIMEOUT"))
    except Exception:  # settings not configured (a process that never set Django up)
        return DEFAULT_TRACING_EXIT_TIMEOUT


def reset() -> None:
    """Forget which warnings were logged, so that each is logged once more (for tests)."""
    _warned.clear()
