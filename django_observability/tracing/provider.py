"""The TracerProvider built from the settings, and its installation at start-up.

:func:`setup` (called from ``AppConfig.ready()``) installs a provider built
by :func:`build_provider`, unless one is installed already (the
``opentelemetry-instrument`` agent's, or the project's own), in which case
that one is used. It is idempotent.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django_observability.conf import conf
from django_observability.tracing import api, exit_flush
from django_observability.tracing.environment import (
    export_timeout,
    exporter_names,
    otlp_endpoint,
    otlp_protocol,
    sample_ratio,
    sdk_disabled,
)
from django_observability.tracing.processor import PerProcessSpanProcessor, adopt

try:
    from opentelemetry import trace
    from opentelemetry.trace import ProxyTracerProvider
except ImportError:  # pragma: no cover - the dependency is declared
    trace = None  # type: ignore[assignment]

logger = logging.getLogger("django_observability.tracing")

__all__ = ["build_provider", "installed_provider", "make_exporter", "reset", "setup"]

_lock = threading.Lock()
_installed_provider: Any = None


def _one_line(span: Any) -> str:
    return str(span.to_json(indent=None)) + "\n"


def make_exporter(name: str) -> Callable[[], Any]:
    """A factory of the exporter ``name`` (``"console"``, ``"otlp"``), set up from the settings."""
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
            processor = PerProcessSpanProcessor(make_exporter(name), name=name)
            provider.add_span_processor(processor)
            adopt(provider, processor)
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
        api.look_again()
        exit_flush.watch(provider)
        # Bounded like gunicorn's worker_exit hook; whichever runs first flushes.
        atexit.register(exit_flush.flush_on_exit)
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


def installed_provider() -> Any:
    """The provider :func:`setup` installed in this process, or ``None``."""
    return _installed_provider


def reset() -> None:
    """Forget the provider :func:`setup` installed, and the flush at exit (for tests).

    The global OpenTelemetry provider is not touched: it cannot be unset.
    """
    global _installed_provider
    _installed_provider = None
    exit_flush.reset()
