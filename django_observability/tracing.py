"""OpenTelemetry tracing from Django settings, fork-safe, and helpers.

:func:`setup` (called from ``AppConfig.ready()``) installs a TracerProvider
built from the ``OBSERVABILITY_TRACING_*`` settings, unless one is installed
already (the ``opentelemetry-instrument`` agent's, or the project's own), in
which case that one is used. It is idempotent.

Fork safety: the exporter (an HTTP session, a gRPC channel) is made in the
process that exports, on its first span, never inherited across ``fork()``.
So spans arrive from every gunicorn worker with or without ``--preload``.

The middleware and the database instrumentation use the OpenTelemetry *API*
only: they make real spans whenever any SDK provider is installed and cost
next to nothing when none is.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from django_observability.conf import conf, valid_or_default

logger = logging.getLogger("django_observability.tracing")

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the dependency is declared
    trace = None  # type: ignore[assignment]
    otel_context = None  # type: ignore[assignment]

INSTRUMENTATION_NAME = "django_observability"
SEMCONV_SCHEMA_URL = "https://opentelemetry.io/schemas/1.33.0"

EXPORTERS = ("none", "console", "otlp")
PROTOCOLS = ("http/protobuf", "grpc")

_lock = threading.Lock()
_installed_provider: Any = None


# --- settings, with the OTEL_* environment as fallback --------------------------------


_warned: set[str] = set()


def _warn_once(message: str, *args: Any) -> None:
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
    value = valid_or_default("TRACING_EXPORTER", None)
    if value is not None:
        value = value.lower()
        return () if value == "none" else (value,)
    names: list[str] = []
    for item in os.environ.get("OTEL_TRACES_EXPORTER", "").split(","):
        name = item.strip().lower()
        if not name or name == "none" or name in names:
            continue
        if name not in EXPORTERS:
            _warn_once(
                "OTEL_TRACES_EXPORTER names %r, which django-observability does not support "
                "(supported: console, otlp, none); left out",
                name,
            )
            continue
        names.append(name)
    return tuple(names)


def otlp_protocol() -> str:
    value = valid_or_default("TRACING_OTLP_PROTOCOL", None)
    if value is None:
        value = (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
    value = value.strip().lower()
    if value not in PROTOCOLS:
        _warn_once("OTLP protocol %r is not supported; using http/protobuf", value)
        return "http/protobuf"
    return value


def otlp_endpoint(protocol: str) -> str | None:
    """Where spans go: the setting (a base URL) wins over the environment.

    For OTLP/HTTP, ``/v1/traces`` is appended to a base URL, as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` specifies; ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    is used as it is. ``None`` lets the exporter pick its default.
    """
    base = valid_or_default("TRACING_OTLP_ENDPOINT", None)
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
    value = valid_or_default("TRACING_EXPORT_TIMEOUT", None)
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
        _warn_once(
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
    value = valid_or_default("TRACING_SAMPLE_RATIO", None)
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
        _warn_once("OTEL_TRACES_SAMPLER_ARG=%r is not a ratio from 0 to 1; sampling all", raw)
        return 1.0
    if sampler and sampler not in _ON_SAMPLERS:
        _warn_once("OTEL_TRACES_SAMPLER=%r is not supported; sampling all (parent-based)", sampler)
    return 1.0


# --- the provider ------------------------------------------------------------------


class PerProcessSpanProcessor:
    """A BatchSpanProcessor whose exporter is made in the process that exports.

    ``make_exporter`` runs on the first span a process ends; after a fork the
    child makes its own (the parent's HTTP connections and gRPC channels are
    not usable there).
    """

    def __init__(self, make_exporter: Callable[[], Any], **batch_options: Any) -> None:
        self._make_exporter = make_exporter
        self._batch_options = batch_options
        self._pid = 0
        self._processor: Any = None
        self._lock = threading.Lock()

    def _current(self) -> Any:
        processor = self._processor
        if processor is not None and self._pid == os.getpid():
            return processor
        with self._lock:
            if self._processor is None or self._pid != os.getpid():
                from opentelemetry.sdk.trace.export import BatchSpanProcessor

                self._processor = BatchSpanProcessor(self._make_exporter(), **self._batch_options)
                self._pid = os.getpid()
            return self._processor

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        try:
            self._current().on_end(span)
        except Exception:
            logger.exception("could not hand a span to the exporter")

    def shutdown(self) -> None:
        if self._processor is not None and self._pid == os.getpid():
            self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._processor is not None and self._pid == os.getpid():
            return bool(self._processor.force_flush(timeout_millis))
        return True


def _one_line(span: Any) -> str:
    return str(span.to_json(indent=None)) + "\n"


def _make_exporter(name: str) -> Callable[[], Any]:
    timeout = export_timeout()
    if name == "console":

        def console() -> Any:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            # One JSON object per line, like the logs it shares stdout with.
            return ConsoleSpanExporter(formatter=_one_line)

        return console
    protocol = otlp_protocol()
    endpoint = otlp_endpoint(protocol)
    if protocol == "grpc":

        def grpc() -> Any:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)

        return grpc

    def http() -> Any:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)

    return http


def build_provider(exporter: str | Sequence[str] | None = None) -> Any:
    """A TracerProvider from the settings (not installed anywhere).

    ``exporter`` (a name or several) overrides :func:`exporter_names`.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    # service.instance.id comes from the SDK's own detector, which makes it
    # again in each process after a fork (gunicorn --preload): one per worker.
    attributes = {"service.name": conf.SERVICE_NAME}
    if conf.SERVICE_VERSION:
        attributes["service.version"] = conf.SERVICE_VERSION
    if conf.ENVIRONMENT:
        attributes["deployment.environment.name"] = conf.ENVIRONMENT
    # Resource.create() merges OTEL_RESOURCE_ATTRIBUTES and the SDK's own
    # attributes; ours (from settings) win.
    resource = Resource.create(attributes)
    provider = TracerProvider(
        resource=resource,
        sampler=ParentBased(TraceIdRatioBased(sample_ratio())),
        shutdown_on_exit=False,  # we flush in our own atexit, once
    )
    if exporter is None:
        names: Sequence[str] = exporter_names()
    else:
        names = (exporter,) if isinstance(exporter, str) else exporter
    for name in names:
        if name in ("console", "otlp"):
            # The batch processor's own options (queue size, batch size, delay)
            # come from the OTEL_BSP_* variables, or the SDK's defaults.
            provider.add_span_processor(PerProcessSpanProcessor(_make_exporter(name)))
    return provider


def setup() -> Any:
    """Install a TracerProvider from the settings, once; returns the provider in use.

    Nothing is installed when the exporter is ``none`` (the default) and no
    provider exists: the API then stays a no-op and tracing costs nothing.
    A provider installed by someone else (the ``opentelemetry-instrument``
    agent, the project's own code) is used as it is.
    """
    global _installed_provider
    if trace is None:
        return None
    with _lock:
        current = trace.get_tracer_provider()
        if _installed_provider is not None or not isinstance(current, ProxyTracerProvider):
            return current
        names = exporter_names()
        if not names:
            return current
        if sdk_disabled():
            logger.info("tracing: OTEL_SDK_DISABLED is true; no spans are recorded")
            return current
        try:
            provider = build_provider(names)
            _set_propagators()
            trace.set_tracer_provider(provider)
        except Exception:
            logger.exception("tracing could not be set up; requests are served without it")
            return current
        _installed_provider = provider
        _cache.next_check = 0.0
        atexit.register(_flush_at_exit, provider)
        logger.info("tracing: exporting spans with %s", ", ".join(names))
        return provider


def _set_propagators() -> None:
    # W3C trace context and baggage, unless OTEL_PROPAGATORS says otherwise
    # (the API reads it itself when it is set).
    if os.environ.get("OTEL_PROPAGATORS"):
        return
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )


def _flush_at_exit(provider: Any) -> None:
    with contextlib.suppress(Exception):
        provider.shutdown()


# --- what the middleware and the helpers use -------------------------------------------


class _TracerCache:
    """The tracer of the provider in use, looked up again when the provider changes."""

    provider: Any = None
    tracer: Any = None
    override: Any = None
    next_check: float = 0.0


_cache = _TracerCache()


def use_tracer_provider(provider: Any) -> None:
    """Make the app's spans with ``provider`` instead of the global one (``None``: global).

    OpenTelemetry's global provider can be set only once per process; tests,
    and projects that keep a provider of their own, hand it in here.
    """
    _cache.override = provider
    _cache.provider = _cache.tracer = None
    _cache.next_check = 0.0


# How often the request path looks again for a provider installed later (by
# the project's own code or an agent) while it has none or the same one.
_RECHECK_SECONDS = 1.0


def get_tracer() -> Any:
    """Our tracer, or ``None`` while no SDK provider is installed (tracing off)."""
    if trace is None:
        return None
    now = time.monotonic()
    if now < _cache.next_check:
        return _cache.tracer
    _cache.next_check = now + _RECHECK_SECONDS
    provider = _cache.override or trace.get_tracer_provider()
    if provider is _cache.provider:
        return _cache.tracer
    tracer = None
    if not isinstance(provider, ProxyTracerProvider) and type(provider).__name__ != (
        "NoOpTracerProvider"
    ):
        from django_observability import __version__

        tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__, SEMCONV_SCHEMA_URL)
        if type(tracer).__name__ == "NoOpTracer":
            tracer = None  # an SDK provider under OTEL_SDK_DISABLED=true
    _cache.provider, _cache.tracer = provider, tracer
    return tracer


# OpenTelemetry's "suppress_instrumentation" context key: instrumentations make no
# span while it is set (the SDK's batch processor sets it while it exports, and
# opentelemetry-instrumentation's suppress_instrumentation() sets it).
_SUPPRESS_KEY: Any = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)


def spans_suppressed() -> bool:
    """Whether the current context asks instrumentation to make no spans.

    Set for requests that make no span (the app's own endpoints,
    ``OBSERVABILITY_EXCLUDE_PATHS``, ``@observability_exempt`` views) and for
    health checks, so their database queries and :func:`trace_operation`
    blocks do not start traces of their own.
    """
    if _SUPPRESS_KEY is None:
        return False
    return bool(otel_context.get_value(_SUPPRESS_KEY))


def suppress_spans() -> Any:
    """Set the suppression key in the current context; the token to ``detach``, or ``None``."""
    if _SUPPRESS_KEY is None:
        return None
    return otel_context.attach(otel_context.set_value(_SUPPRESS_KEY, True))


def end_suppression(token: Any) -> None:
    """Undo :func:`suppress_spans`."""
    if token is not None:
        otel_context.detach(token)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span as hex, if it is valid."""
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


@contextlib.contextmanager
def trace_operation(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around a block of code; exceptions are recorded and re-raised.

    ``with trace_operation("charge card", **{"payment.provider": "acme"}):``
    Without a tracer provider it does nothing (and yields ``None``); nor in
    requests that make no span (excluded paths, ``@observability_exempt``
    views) or in health checks.
    """
    tracer = get_tracer()
    if tracer is None or spans_suppressed():
        yield None
        return
    with tracer.start_as_current_span(
        name, kind=SpanKind.INTERNAL, attributes=attributes, record_exception=True
    ) as span:
        yield span


_F = TypeVar("_F", bound=Callable[..., Any])


def traced(name: str | None = None, **attributes: Any) -> Callable[[_F], _F]:
    """Decorator: each call of the (sync or async) function runs in a span.

    ``@traced()`` names the span after the function's qualified name.
    """

    def decorate(func: _F) -> _F:
        span_name = name or f"{func.__module__}.{func.__qualname__}"
        import inspect

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with trace_operation(span_name, **attributes):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with trace_operation(span_name, **attributes):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def set_error(span: Any, exc: BaseException | None, error_type: str) -> None:
    """Mark a span failed, the semantic-convention way."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR))
    if exc is not None:
        span.record_exception(exc)


__all__ = ["get_tracer", "setup", "trace_operation", "traced", "use_tracer_provider"]
