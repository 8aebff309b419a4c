"""What the app and its users call: the tracer, suppression, and spans around code.

These use the OpenTelemetry *API* only: they make real spans whenever any SDK
provider is installed and cost next to nothing when none is.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django_observability.formats import hex_ids
from django_observability.version import __version__

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the dependency is declared
    trace = None  # type: ignore[assignment]
    otel_context = None  # type: ignore[assignment]

__all__ = [
    "INSTRUMENTATION_NAME",
    "SEMCONV_SCHEMA_URL",
    "current_ids",
    "end_suppression",
    "get_tracer",
    "look_again",
    "set_error",
    "spans_suppressed",
    "suppress_spans",
    "trace_operation",
    "traced",
    "use_tracer_provider",
]

INSTRUMENTATION_NAME = "django_observability"
SEMCONV_SCHEMA_URL = "https://opentelemetry.io/schemas/1.33.0"


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


def provider_override() -> Any:
    """The provider handed to :func:`use_tracer_provider`, or ``None`` (the global one is used)."""
    return _cache.override


# How often the request path looks again for a provider installed later (by


def look_again() -> None:
    """Make the next :func:`get_tracer` look the global provider up again at once."""
    _cache.next_check = 0.0


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
    return hex_ids(context)


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
