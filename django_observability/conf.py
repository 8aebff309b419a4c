"""Typed, lazily read settings, each declared once.

Every ``OBSERVABILITY_*`` setting is one :class:`Setting` line in
:class:`Settings`: its default, its validator, its system-check id and how the
stored value is read. Everything else derives from that line: the attribute
``conf.NAME`` (read from ``django.conf.settings`` on every access, so
``override_settings`` works), the system check that reports a bad value
(:mod:`django_observability.checks`) and :func:`valid_or_default`, the run-time
reading that falls back to the default (with an error log line) rather than
fail a request because of a bad setting. Both judge the value as the user
wrote it, so a value ``manage.py check`` reports is a value the run time
replaces, and only such a value.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, overload
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


# --- validators ---------------------------------------------------------------------
# Each returns None when the value is fine, else a phrase that completes
# "OBSERVABILITY_<NAME> ...". They judge the value as the user wrote it (what
# the system check sees), before a Setting's ``read`` turns it into what the
# code uses.

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


def _redact_words(value: Any) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return "must be a list of key names or fragments such as ['iban', 'tax_id']"
    for item in value:
        if not isinstance(item, str) or not re.search(r"[0-9A-Za-z]", item):
            return f"contains {item!r}; each entry must be a string with a letter or digit"
    return None


HTTP_CLIENT_NAMES = ("requests", "httpx", "urllib3")


def _http_clients(value: Any) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return f"must be a list of names among {list(HTTP_CLIENT_NAMES)}, not {value!r}"
    for item in value:
        if item not in HTTP_CLIENT_NAMES:
            return f"contains {item!r}; the names are {list(HTTP_CLIENT_NAMES)}"
    return None


_HOST_PATTERN = re.compile(r"\*|(\*?\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?|[0-9a-fA-F:]+")


def _host_patterns(value: Any) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return "must be a list of host names such as ['api.internal', '.svc.cluster.local']"
    for item in value:
        if not isinstance(item, str) or not _HOST_PATTERN.fullmatch(item):
            return (
                f"contains {item!r}; entries are host names or addresses ('api.internal', "
                "'10.0.0.5'), domains ('.internal' or '*.internal': its subdomains) or '*'"
            )
    return None


def _lower_tuple(value: Any) -> tuple[str, ...]:
    return tuple(item.lower() for item in value) if value else ()


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
    checks = conf.HEALTH_CHECKS
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


def _pushgateway_url(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        return None
    return f"must be None or a URL such as 'http://pushgateway:9091', not {value!r}"


# The keys one job's declaration may have in OBSERVABILITY_JOBS.
JOB_KEYS = frozenset({"interval"})


def _jobs(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be a dict of job name -> {{'interval': seconds}}, not {value!r}"
    for name, spec in value.items():
        if not isinstance(name, str) or not name.strip() or len(name) > 200 or "\n" in name:
            return f"has a job name {name!r} that is not a non-empty one-line string"
        if not isinstance(spec, dict) or set(spec) - JOB_KEYS or "interval" not in spec:
            return f"[{name!r}] must be a dict with the key 'interval' only, not {spec!r}"
        interval = spec["interval"]
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            return f"[{name!r}]['interval'] must be a positive number of seconds, not {interval!r}"
    return None


def _listen_address_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if listen_address(value) is not None:
        return None
    return (
        "must be None, a port number (1-65535, bound on 127.0.0.1) or 'address:port' "
        f"such as '0.0.0.0:9808' or '[::]:9808', not {value!r}"
    )


def listen_address(value: Any) -> tuple[str, int] | None:
    """(address, port) from ``OBSERVABILITY_WORKER_METRICS_PORT``'s value; ``None`` if invalid.

    A port number binds 127.0.0.1; ``"address:port"`` binds that address
    (an IPv6 address in brackets: ``"[::1]:9808"``).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return ("127.0.0.1", value) if 0 < value < 65536 else None
    if not isinstance(value, str):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # an IPv6 address goes in brackets
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host):
            return None
    return host, int(port)


def _model_labels(value: Any) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return "must be a list such as ['auth.User', 'shop.*']"
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(r"\w+\.(\w+|\*)", item):
            return f"contains {item!r}; entries are 'app_label.Model' or 'app_label.*'"
    return None


# --- reading ------------------------------------------------------------------------
# How a stored value (or the default) becomes what the code uses. Kept apart
# from the defaults: a falsy value means "not set" for some settings, and a few
# defaults come from the environment.


def otel_resource_attribute(key: str) -> str | None:
    """One ``key=value`` entry of ``OTEL_RESOURCE_ATTRIBUTES`` (percent-decoded), if any."""
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
    return os.environ.get("OTEL_SERVICE_NAME") or otel_resource_attribute("service.name")


def env_environment() -> str:
    """The deployment environment the OpenTelemetry environment gives, else ``""``.

    ``deployment.environment.name`` in ``OTEL_RESOURCE_ATTRIBUTES``, else the
    older ``deployment.environment``.
    """
    return (
        otel_resource_attribute("deployment.environment.name")
        or otel_resource_attribute("deployment.environment")
        or ""
    )


def _service_name(value: Any) -> str:
    if value:
        return str(value)
    env = env_service_name()
    if env:
        return env
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(settings, "SETTINGS_MODULE", None)
    return (module or "django").split(".", 1)[0]


def _service_version(value: Any) -> str:
    if value:
        return str(value)
    return otel_resource_attribute("service.version") or ""


def _environment(value: Any) -> str:
    return str(value) if value else env_environment()


def _drain_file(value: Any) -> str:
    if value:
        return str(value)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", conf.SERVICE_NAME)
    return os.path.join(tempfile.gettempdir(), f"django-observability-{safe}.draining")


def _heartbeat_file(value: Any) -> str:
    if value:
        return str(value)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", conf.SERVICE_NAME)
    return os.path.join(tempfile.gettempdir(), f"django-observability-{safe}.worker-heartbeat")


def _or_empty_str(value: Any) -> Any:
    return value or ""


def _or_empty_dict(value: Any) -> Any:
    return value or {}


def _or_none(value: Any) -> Any:
    return value or None


def _or_empty_tuple(value: Any) -> Any:
    return value or ()


# --- the declarations ---------------------------------------------------------------

T = TypeVar("T")


class Setting(Generic[T]):
    """One ``OBSERVABILITY_*`` setting: the one place its default is written.

    ``default`` is what an unset setting stands for; ``validator`` judges a
    value as the user wrote it; ``check_id`` is the id of the system check
    that reports a bad value (``django_observability.<check_id>``); ``read``,
    when given, turns the stored value (or the default) into what the code
    uses. As a class attribute of :class:`Settings` it reads
    ``django.conf.settings`` on every access, without validation.
    """

    __slots__ = ("check_id", "default", "name", "read", "setting", "validator")

    def __init__(
        self,
        check_id: str,
        default: Any,
        validator: Callable[[Any], str | None],
        read: Callable[[Any], T] | None = None,
    ) -> None:
        self.check_id = check_id
        self.default = default
        self.validator = validator
        self.read = read
        self.name = ""
        self.setting = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.setting = PREFIX + name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Setting[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = getattr(settings, self.setting, self.default)
        return value if self.read is None else self.read(value)

    def is_set(self) -> bool:
        """Whether the project's settings name this setting at all."""
        return hasattr(settings, self.setting)

    def raw(self) -> Any:
        """The value as the user wrote it, or the default when unset."""
        return getattr(settings, self.setting, self.default)

    def validate(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this setting, or ``None`` if it is fine."""
        return self.validator(value)

    def valid_value(self) -> T:
        """The value the code should use: the setting's if valid, else the default's.

        An invalid value is logged (an error line per call, naming the system
        check that reports it) and replaced by the default, read the same way.
        """
        value = self.raw()
        problem = self.validator(value)
        if problem is not None:
            value = self.default
            fallback = value if self.read is None else self.read(value)
            logging.getLogger("django_observability").error(
                "%s %s; using %r instead (see the system checks)", self.setting, problem, fallback
            )
            return fallback
        return value if self.read is None else self.read(value)


class Settings:
    """One :class:`Setting` per ``OBSERVABILITY_*`` setting (name without the prefix).

    The system check ids are public (documented with the settings); so are the
    names and the defaults.
    """

    SERVICE_NAME: Setting[str] = Setting("E010", None, _optional_str, _service_name)
    SERVICE_VERSION: Setting[str] = Setting("E011", None, _optional_str, _service_version)
    ENVIRONMENT: Setting[str] = Setting("E012", None, _optional_str, _environment)
    METRICS_ENABLED: Setting[bool] = Setting("E013", True, _bool, bool)
    METRICS_NAMESPACE: Setting[str] = Setting("E014", "", _namespace, _or_empty_str)
    METRICS_LATENCY_BUCKETS: Setting[Sequence[float]] = Setting(
        "E015", DEFAULT_LATENCY_BUCKETS, _buckets
    )
    METRICS_SIZE_BUCKETS: Setting[Sequence[float]] = Setting("E016", DEFAULT_SIZE_BUCKETS, _buckets)
    METRICS_LABEL_CAP: Setting[int] = Setting("E017", 50, _positive_int)
    REQUEST_ID_HEADER: Setting[str] = Setting("E018", "X-Request-ID", _header_name)
    REQUEST_ID_TRUST_INCOMING: Setting[bool] = Setting("E019", True, _bool, bool)
    AUTH_TOKEN: Setting[str | None] = Setting("E020", None, _token, _or_none)
    ALLOWED_IPS: Setting[Sequence[str]] = Setting("E021", (), _ip_networks, _or_empty_tuple)
    EXCLUDE_PATHS: Setting[Sequence[str]] = Setting("E022", (), _path_prefixes, _or_empty_tuple)
    TRUSTED_PROXIES: Setting[Sequence[str]] = Setting("E023", (), _ip_networks, _or_empty_tuple)
    HEALTH_CHECKS: Setting[dict[str, Any]] = Setting("E030", DEFAULT_HEALTH_CHECKS, _health_checks)
    HEALTH_READINESS_CHECKS: Setting[Sequence[str]] = Setting(
        "E031", DEFAULT_HEALTH_READINESS_CHECKS, _check_names
    )
    HEALTH_TIMEOUT: Setting[float] = Setting("E032", 0.5, _positive_number)
    HEALTH_DEADLINE: Setting[float] = Setting("E033", 0.8, _positive_number)
    HEALTH_CACHE_SECONDS: Setting[float] = Setting("E034", 1.0, _non_negative_number)
    HEALTH_SHOW_DETAILS: Setting[str] = Setting("E035", "authorized", _show_details)
    HEALTH_PROBES_IN_MIDDLEWARE: Setting[bool] = Setting("E036", True, _bool)
    METRICS_IN_MIDDLEWARE: Setting[bool] = Setting("E070", True, _bool)
    HEALTH_MAX_THREADS: Setting[int] = Setting("E037", 8, _positive_int)
    HEALTH_DRAIN_FILE: Setting[str] = Setting("E038", None, _optional_path, _drain_file)
    TRACING_EXPORTER: Setting[str | None] = Setting(
        "E040", None, _choice_or_none("none", "console", "otlp")
    )
    TRACING_OTLP_ENDPOINT: Setting[str | None] = Setting("E041", None, _url_or_none)
    TRACING_OTLP_PROTOCOL: Setting[str | None] = Setting(
        "E042", None, _choice_or_none("http/protobuf", "grpc")
    )
    TRACING_SAMPLE_RATIO: Setting[float | None] = Setting("E043", None, _ratio_or_none)
    TRACING_EXPORT_TIMEOUT: Setting[float | None] = Setting("E044", None, _positive_number_or_none)
    TRACING_DB_SPANS: Setting[bool] = Setting("E045", True, _bool)
    DB_METRICS: Setting[bool] = Setting("E046", True, _bool)
    CACHE_METRICS: Setting[bool] = Setting("E120", True, _bool)
    TRACING_CACHE_SPANS: Setting[bool] = Setting("E121", True, _bool)
    DB_CONNECTION_METRICS: Setting[bool] = Setting("E140", True, _bool)
    DB_POOL_METRICS_INTERVAL: Setting[float] = Setting("E141", 5.0, _positive_number)
    DB_SQL_COMMENTS: Setting[bool] = Setting("E142", False, _bool)
    REDIS_METRICS: Setting[bool] = Setting("E150", True, _bool)
    TRACING_REDIS_SPANS: Setting[bool] = Setting("E151", True, _bool)
    ACCESS_LOG: Setting[bool] = Setting("E047", True, _bool)
    TRACING_EXIT_TIMEOUT: Setting[float] = Setting(
        "E048", DEFAULT_TRACING_EXIT_TIMEOUT, _positive_number
    )
    AUDIT_MODELS: Setting[Sequence[str]] = Setting("E050", (), _model_labels, _or_empty_tuple)
    AUTH_EVENTS: Setting[bool] = Setting("E051", True, _bool)
    SECURITY_EVENTS: Setting[bool] = Setting("E052", True, _bool)
    AUDIT_LOG_USERNAMES: Setting[bool] = Setting("E053", False, _bool)
    LOG_REDACT_KEYS: Setting[Sequence[str]] = Setting("E080", (), _redact_words, _or_empty_tuple)
    HTTP_CLIENT_INSTRUMENTATIONS: Setting[Sequence[str]] = Setting(
        "E130", HTTP_CLIENT_NAMES, _http_clients, tuple
    )
    HTTP_CLIENT_REQUEST_ID_HOSTS: Setting[Sequence[str]] = Setting(
        "E131", (), _host_patterns, _lower_tuple
    )
    WORKER_METRICS_PORT: Setting[int | str | None] = Setting("E095", None, _listen_address_or_none)
    WORKER_HEARTBEAT_FILE: Setting[str] = Setting("E096", None, _optional_path, _heartbeat_file)
    WORKER_HEARTBEAT_INTERVAL: Setting[float] = Setting("E097", 10.0, _positive_number)
    JOBS: Setting[dict[str, dict[str, float]]] = Setting("E100", {}, _jobs, _or_empty_dict)
    PUSHGATEWAY_URL: Setting[str | None] = Setting("E101", None, _pushgateway_url)
    PUSHGATEWAY_TIMEOUT: Setting[float] = Setting("E102", 2.0, _positive_number)


conf = Settings()

# Setting name (without the prefix) -> its declaration, in declaration order.
SETTINGS: dict[str, Setting[Any]] = {
    name: value for name, value in vars(Settings).items() if isinstance(value, Setting)
}


def validate(name: str, value: Any) -> str | None:
    """Problem with ``OBSERVABILITY_<name>`` = ``value``, or ``None`` if it is fine."""
    return SETTINGS[name].validate(value)


def valid_or_default(name: str, default: Any = None) -> Any:
    """``OBSERVABILITY_<name>`` if its value is valid, else its declared default.

    An invalid value is logged as an error and replaced by the default from
    the setting's declaration in :class:`Settings` (see
    :meth:`Setting.valid_value`). ``default`` is accepted only so that callers
    written for the old two-argument form keep working; it is ignored, since
    the declaration is the one place a default is written.
    """
    return SETTINGS[name].valid_value()
