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

One job a module; every name is importable from here as before:

- :mod:`.environment`: the settings, with the ``OTEL_*`` environment as fallback;
- :mod:`.outcomes`: how the last exports ended, shared by the processes of a server;
- :mod:`.processor`: the per-process batch processor, recording each export's outcome;
- :mod:`.exit_flush`: the bounded flush at exit;
- :mod:`.provider`: building the provider, and installing it at start-up;
- :mod:`.api`: what the app and its users call (tracer, suppression, spans around code).

A test that changes a module-level value patches it in the module that reads it.
"""

from __future__ import annotations

# Re-exports: every name that was importable from the single module stays so;
# __all__ keeps the public helpers a star import gives, as before.
# ruff: noqa: F401
from django_observability.tracing.api import (
    INSTRUMENTATION_NAME,
    SEMCONV_SCHEMA_URL,
    current_ids,
    end_suppression,
    get_tracer,
    provider_override,
    set_error,
    spans_suppressed,
    suppress_spans,
    trace_operation,
    traced,
    use_tracer_provider,
)
from django_observability.tracing.environment import (
    DEFAULT_EXPORT_TIMEOUT,
    EXPORTERS,
    PROTOCOLS,
    exit_timeout,
    export_timeout,
    exporter_names,
    otlp_endpoint,
    otlp_protocol,
    sample_ratio,
    sdk_disabled,
)
from django_observability.tracing.exit_flush import flush_on_exit
from django_observability.tracing.outcomes import (
    FAILURE_MEMORY,
    OUTCOME_FAILED,
    OUTCOME_NONE,
    OUTCOME_OK,
)
from django_observability.tracing.processor import PerProcessSpanProcessor
from django_observability.tracing.provider import build_provider, installed_provider, setup

__all__ = [
    "flush_on_exit",
    "get_tracer",
    "setup",
    "trace_operation",
    "traced",
    "use_tracer_provider",
]
