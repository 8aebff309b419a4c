"""Typed, lazily read settings.

Every property reads ``django.conf.settings`` each time it is used, so
``override_settings`` works in tests. Values are validated by the system checks
in :mod:`django_observability.checks`; at run time the code falls back to the
default (and logs once) rather than fail a request because of a bad setting.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from django.conf import settings

PREFIX = "OBSERVABILITY_"

# Request latency, seconds. Chosen so that common SLO thresholds (100 ms,
# 250 ms, 500 ms, 1 s, 2.5 s) sit exactly on a bucket boundary.
DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

# Response body sizes, bytes: 100 B to 100 MB in decades.
DEFAULT_SIZE_BUCKETS: tuple[float, ...] = (
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
    100_000_000.0,
)


# name -> dotted path, or (dotted path, options). Storage is left out by
# default: on a cloud bucket a write per probe period costs money.
DEFAULT_HEALTH_CHECKS: dict[str, Any] = {
    "database": "django_observability.health.builtin.DatabaseCheck",
    "cache": "django_observability.health.builtin.CacheCheck",
    "migrations": "django_observability.health.builtin.MigrationsCheck",
    "disk": "django_observability.health.builtin.DiskCheck",
    "memory": "django_observability.health.builtin.MemoryCheck",
    "metrics_store": "django_observability.health.builtin.MetricsStoreCheck",
}
DEFAULT_HEALTH_READINESS_CHECKS: tuple[str, ...] = ("database", "cache", "migrations")
SHOW_DETAILS_CHOICES = ("never", "authorized", "always")

# Seconds a process may spend exporting its last spans as it exits.
DEFAULT_TRACING_EXIT_TIMEOUT = 1.0


class Settings:
    """One property per ``OBSERVABILITY_*`` setting, with its default."""

    @property
    def SERVICE_NAME(self) -> str:
        value = getattr(settings, "OBSERVABILITY_SERVICE_NAME", None)
        if value:
            return str(value)
        env = env_service_name()
        if env:
            return env
        module = os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(
            settings, "SETTINGS_MODULE", None
        )
        return (module or "django").split(".", 1)[0]

    @property
    def SERVICE_VERSION(self) -> str:
        value = getattr(settings, "OBSERVABILITY_SERVICE_VERSION", None)
        if value:
            return str(value)
        return _otel_resource_attribute("service.version") or ""

    @property
    def ENVIRONMENT(self) -> str:
        value = getattr(settings, "OBSERVABILITY_ENVIRONMENT", None)
        if value:
            return str(value)
        return (
            _otel_resource_attribute("deployment.environment.name")
            or _otel_resource_attribute("deployment.environment")
            or ""
        )

    @property
    def METRICS_ENABLED(self) -> bool:
        return bool(getattr(settings, "OBSERVABILITY_METRICS_ENABLED", True))

    @property
    def METRICS_NAMESPACE(self) -> str:
        return getattr(settings, "OBSERVABILITY_METRICS_NAMESPACE", "") or ""

    @property
    def METRICS_LATENCY_BUCKETS(self) -> Sequence[float]:
        return getattr(settings, "OBSERVABILITY_METRICS_LATENCY_BUCKETS", DEFAULT_LATENCY_BUCKETS)

    @property
    def METRICS_SIZE_BUCKETS(self) -> Sequence[float]:
        return getattr(settings, "OBSERVABILITY_METRICS_SIZE_BUCKETS", DEFAULT_SIZE_BUCKETS)

    @property
    def METRICS_LABEL_CAP(self) -> int:
        return getattr(settings, "OBSERVABILITY_METRICS_LABEL_CAP", 50)

    @property
    def REQUEST_ID_HEADER(self) -> str:
        return getattr(settings, "OBSERVABILITY_REQUEST_ID_HEADER", "X-Request-ID")

    @property
    def REQUEST_ID_TRUST_INCOMING(self) -> bool:
        return bool(getattr(settings, "OBSERVABILITY_REQUEST_ID_TRUST_INCOMING", True))

    @property
    def AUTH_TOKEN(self) -> str | None:
        return getattr(settings, "OBSERVABILITY_AUTH_TOKEN", None) or None

    @property
    def ALLOWED_IPS(self) -> Sequence[str]:
        return getattr(settings, "OBSERVABILITY_ALLOWED_IPS", ()) or ()

    @property
    def EXCLUDE_PATHS(self) -> Sequence[str]:
        return getattr(settings, "OBSERVABILITY_EXCLUDE_PATHS", ()) or ()

    @property
    def TRUSTED_PROXIES(self) -> Sequence[str]:
        return getattr(settings, "OBSERVABILITY_TRUSTED_PROXIES", ()) or ()

    @property
    def HEALTH_CHECKS(self) -> dict[str, Any]:
        return getattr(settings, "OBSERVABILITY_HEALTH_CHECKS", DEFAULT_HEALTH_CHECKS)

    @property
    def HEALTH_READINESS_CHECKS(self) -> Sequence[str]:
        return getattr(
            settings, "OBSERVABILITY_HEALTH_READINESS_CHECKS", DEFAULT_HEALTH_READINESS_CHECKS
        )

    @property
    def HEALTH_TIMEOUT(self) -> float:
        return getattr(settings, "OBSERVABILITY_HEALTH_TIMEOUT", 0.5)

    @property
    def HEALTH_DEADLINE(self) -> float:
        return getattr(settings, "OBSERVABILITY_HEALTH_DEADLINE", 0.8)

    @property
    def HEALTH_CACHE_SECONDS(self) -> float:
        return getattr(settings, "OBSERVABILITY_HEALTH_CACHE_SECONDS", 1.0)

    @property
    def HEALTH_SHOW_DETAILS(self) -> str:
        return getattr(settings, "OBSERVABILITY_HEALTH_SHOW_DETAILS", "authorized")

    @property
    def HEALTH_PROBES_IN_MIDDLEWARE(self) -> bool:
        return getattr(settings, "OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE", True)

    @property
    def HEALTH_MAX_THREADS(self) -> int:
        return getattr(settings, "OBSERVABILITY_HEALTH_MAX_THREADS", 8)

    @property
    def TRACING_EXPORTER(self) -> str | None:
        return getattr(settings, "OBSERVABILITY_TRACING_EXPORTER", None)

    @property
    def TRACING_OTLP_ENDPOINT(self) -> str | None:
        return getattr(settings, "OBSERVABILITY_TRACING_OTLP_ENDPOINT", None)

    @property
    def TRACING_OTLP_PROTOCOL(self) -> str | None:
        return getattr(settings, "OBSERVABILITY_TRACING_OTLP_PROTOCOL", None)

    @property
    def TRACING_SAMPLE_RATIO(self) -> float | None:
        return getattr(settings, "OBSERVABILITY_TRACING_SAMPLE_RATIO", None)

    @property
    def TRACING_EXPORT_TIMEOUT(self) -> float | None:
        return getattr(settings, "OBSERVABILITY_TRACING_EXPORT_TIMEOUT", None)

    @property
    def TRACING_EXIT_TIMEOUT(self) -> float:
        return getattr(settings, "OBSERVABILITY_TRACING_EXIT_TIMEOUT", DEFAULT_TRACING_EXIT_TIMEOUT)

    @property
    def TRACING_DB_SPANS(self) -> bool:
        return getattr(settings, "OBSERVABILITY_TRACING_DB_SPANS", True)

    @property
    def DB_METRICS(self) -> bool:
        return getattr(settings, "OBSERVABILITY_DB_METRICS", True)

    @property
    def ACCESS_LOG(self) -> bool:
        return getattr(settings, "OBSERVABILITY_ACCESS_LOG", True)

    @property
    def AUDIT_MODELS(self) -> Sequence[str]:
        return getattr(settings, "OBSERVABILITY_AUDIT_MODELS", ()) or ()

    @property
    def AUTH_EVENTS(self) -> bool:
        return getattr(settings, "OBSERVABILITY_AUTH_EVENTS", True)

    @property
    def SECURITY_EVENTS(self) -> bool:
        return getattr(settings, "OBSERVABILITY_SECURITY_EVENTS", True)

    @property
    def AUDIT_LOG_USERNAMES(self) -> bool:
        return getattr(settings, "OBSERVABILITY_AUDIT_LOG_USERNAMES", False)

    @property
    def HEALTH_DRAIN_FILE(self) -> str:
        value = getattr(settings, "OBSERVABILITY_HEALTH_DRAIN_FILE", None)
        if value:
            return str(value)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.SERVICE_NAME)
        return os.path.join(tempfile.gettempdir(), f"django-observability-{safe}.draining")


def _otel_resource_attribute(key: str) -> str | None:
    """Read one ``key=value`` entry of ``OTEL_RESOURCE_ATTRIBUTES`` (percent-decoded)."""
    raw = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    for item in raw.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip() == key:
            return unquote(value.strip()) or None
    return None


def env_service_name() -> str | None:
    """The service name the OpenTelemetry environment gives, if any.

    ``OTEL_SERVICE_NAME``, else ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``.
    """
    return os.environ.get("OTEL_SERVICE_NAME") or _otel_resource_attribute("service.name")


conf = Settings()


# Validation, shared by the system checks and by the run-time fallback to the
# default. Each validator returns None when the value is fine, else a phrase
# that completes "OBSERVABILITY_<NAME> ...".

_METRIC_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# RFC 9110 token characters: what a header field name may contain.
_HEADER_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _optional_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return None
    return f"must be a string or None, not {type(value).__name__}"


def _bool(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    return f"must be True or False, not {value!r}"


def _namespace(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and _METRIC_NAME.fullmatch(value):
        return None
    return f"must be empty or a Prometheus name ([a-zA-Z_][a-zA-Z0-9_]*), not {value!r}"


def _buckets(value: Any) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        return "must be a non-empty list of increasing positive numbers"
    previous = 0.0
    for bound in value:
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            return f"must contain only numbers, not {bound!r}"
        if not math.isfinite(bound) and bound != math.inf:
            return f"must contain only finite numbers (or inf), not {bound!r}"
        if bound <= previous:
            return "must be positive and strictly increasing"
        previous = bound
    return None


def _positive_int(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return None
    return f"must be a positive integer, not {value!r}"


def _header_name(value: Any) -> str | None:
    if isinstance(value, str) and _HEADER_TOKEN.fullmatch(value):
        return None
    return f"must be an HTTP header name such as 'X-Request-ID', not {value!r}"


def _token(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"must be a string or None, not {type(value).__name__}"
    if value and (value != value.strip() or not value.isprintable() or len(value) > 1024):
        return "must be printable, without surrounding spaces, at most 1024 characters"
    return None


def _ip_networks(value: Any) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return "must be a list of IP addresses or networks such as '10.0.0.0/8'"
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            return f"contains {item!r}, which is not an IP address or network"
    return None


def _path_prefixes(value: Any) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return "must be a list of path prefixes such as ['/static/']"
    for item in value:
        if not isinstance(item, str) or not item.startswith("/"):
            return f"contains {item!r}; each prefix must be a string starting with '/'"
    return None


def _positive_number(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf:
        return None
    return f"must be a positive number of seconds, not {value!r}"


def _positive_number_or_none(value: Any) -> str | None:
    return None if value is None else _positive_number(value)


def _non_negative_number(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
        return None
    return f"must be a number of seconds, 0 or more, not {value!r}"


def _health_checks(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be a dict mapping a check name to a dotted path or a (path, options) pair"
    for name, spec in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
            return f"has the name {name!r}; names are letters, digits and _ . : -"
        if isinstance(spec, (list, tuple)):
            if len(spec) != 2 or not isinstance(spec[1], dict):
                return f"has {name!r}: {spec!r}; a pair must be (dotted path, dict of options)"
            spec = spec[0]
        if not isinstance(spec, str) and not callable(spec):
            return f"has {name!r}: {spec!r}, which is neither a dotted path nor a callable"
    return None


def _check_names(value: Any) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return "must be a list of check names"
    checks = getattr(settings, "OBSERVABILITY_HEALTH_CHECKS", DEFAULT_HEALTH_CHECKS)
    if isinstance(checks, dict):
        unknown = [n for n in value if n not in checks]
        if unknown:
            return f"names {unknown!r}, not in OBSERVABILITY_HEALTH_CHECKS"
    return None


def _show_details(value: Any) -> str | None:
    if value in SHOW_DETAILS_CHOICES:
        return None
    return f"must be one of {', '.join(SHOW_DETAILS_CHOICES)}, not {value!r}"


def _optional_path(value: Any) -> str | None:
    if value is None or (isinstance(value, (str, os.PathLike)) and str(value)):
        return None
    return f"must be a file path or None, not {value!r}"


def _choice_or_none(*choices: str) -> Callable[[Any], str | None]:
    def validator(value: Any) -> str | None:
        if value is None or (isinstance(value, str) and value.lower() in choices):
            return None
        return f"must be None or one of {', '.join(choices)}, not {value!r}"

    return validator


def _url_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        return None
    return f"must be None or a base URL such as 'http://collector:4318', not {value!r}"


def _ratio_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return None
    return f"must be None or a number from 0 to 1, not {value!r}"


def _model_labels(value: Any) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return "must be a list such as ['auth.User', 'shop.*']"
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(r"\w+\.(\w+|\*)", item):
            return f"contains {item!r}; entries are 'app_label.Model' or 'app_label.*'"
    return None


# Setting name (without the prefix) -> (system check id, validator).
VALIDATORS: dict[str, tuple[str, Callable[[Any], str | None]]] = {
    "SERVICE_NAME": ("E010", _optional_str),
    "SERVICE_VERSION": ("E011", _optional_str),
    "ENVIRONMENT": ("E012", _optional_str),
    "METRICS_ENABLED": ("E013", _bool),
    "METRICS_NAMESPACE": ("E014", _namespace),
    "METRICS_LATENCY_BUCKETS": ("E015", _buckets),
    "METRICS_SIZE_BUCKETS": ("E016", _buckets),
    "METRICS_LABEL_CAP": ("E017", _positive_int),
    "REQUEST_ID_HEADER": ("E018", _header_name),
    "REQUEST_ID_TRUST_INCOMING": ("E019", _bool),
    "AUTH_TOKEN": ("E020", _token),
    "ALLOWED_IPS": ("E021", _ip_networks),
    "EXCLUDE_PATHS": ("E022", _path_prefixes),
    "TRUSTED_PROXIES": ("E023", _ip_networks),
    "HEALTH_CHECKS": ("E030", _health_checks),
    "HEALTH_READINESS_CHECKS": ("E031", _check_names),
    "HEALTH_TIMEOUT": ("E032", _positive_number),
    "HEALTH_DEADLINE": ("E033", _positive_number),
    "HEALTH_CACHE_SECONDS": ("E034", _non_negative_number),
    "HEALTH_SHOW_DETAILS": ("E035", _show_details),
    "HEALTH_PROBES_IN_MIDDLEWARE": ("E036", _bool),
    "HEALTH_MAX_THREADS": ("E037", _positive_int),
    "HEALTH_DRAIN_FILE": ("E038", _optional_path),
    "TRACING_EXPORTER": ("E040", _choice_or_none("none", "console", "otlp")),
    "TRACING_OTLP_ENDPOINT": ("E041", _url_or_none),
    "TRACING_OTLP_PROTOCOL": ("E042", _choice_or_none("http/protobuf", "grpc")),
    "TRACING_SAMPLE_RATIO": ("E043", _ratio_or_none),
    "TRACING_EXPORT_TIMEOUT": ("E044", _positive_number_or_none),
    "TRACING_DB_SPANS": ("E045", _bool),
    "DB_METRICS": ("E046", _bool),
    "ACCESS_LOG": ("E047", _bool),
    "TRACING_EXIT_TIMEOUT": ("E048", _positive_number),
    "AUDIT_MODELS": ("E050", _model_labels),
    "AUTH_EVENTS": ("E051", _bool),
    "SECURITY_EVENTS": ("E052", _bool),
    "AUDIT_LOG_USERNAMES": ("E053", _bool),
}


def validate(name: str, value: Any) -> str | None:
    """Problem with ``OBSERVABILITY_<name>`` = ``value``, or ``None`` if it is fine."""
    return VALIDATORS[name][1](value)


def valid_or_default(name: str, default: Any) -> Any:
    """The setting's value if it is valid, else ``default`` (and an error log line)."""
    value = getattr(conf, name)
    problem = validate(name, value)
    if problem is None:
        return value
    logging.getLogger("django_observability").error(
        "OBSERVABILITY_%s %s; using %r instead (see the system checks)", name, problem, default
    )
    return default
