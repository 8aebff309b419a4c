"""The pieces of the full-stack configurations: tracing and JSON access logs.

``anchors_full``     django-prometheus + opentelemetry-instrumentation-django +
                     one python-json-logger line per request (what a team
                     assembles from the anchors).
``ours_full``        ObservabilityMiddleware with metrics, request id, a server
                     span and its JSON access log.
``ours_full_10pct``  the same, with 10% of traces sampled.

Both stacks get the same OpenTelemetry SDK pieces (a TracerProvider, a
BatchSpanProcessor with its default limits, and an exporter that counts spans
and discards them), and both write one JSON line per request to a real file
through ``logging.FileHandler``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

FULL_CONFIGS = ("anchors_full", "ours_full", "ours_full_10pct")
SAMPLE_RATIOS = {"anchors_full": 1.0, "ours_full": 1.0, "ours_full_10pct": 0.1}
# The worker points this at a file in a fresh temporary directory before Django starts.
LOG_FILE_ENV = "BENCH_LOG_FILE"
# Logger that the anchors' access-log middleware writes to.
ANCHORS_LOGGER = "bench.access"
OURS_LOGGER = "django_observability.access"


def logging_settings(config: str, filename: str) -> dict[str, Any]:
    """The ``LOGGING`` dict of a full configuration: access lines to ``filename`` only."""
    if config == "anchors_full":
        formatters = {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            }
        }
        filters: dict[str, Any] = {}
        handler_filters: list[str] = []
        logger = ANCHORS_LOGGER
    else:
        formatters = {"json": {"()": "django_observability.logging.JsonFormatter"}}
        filters = {"context": {"()": "django_observability.logging.ContextFilter"}}
        handler_filters = ["context"]
        logger = OURS_LOGGER
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "filters": filters,
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": filename,
                "encoding": "utf-8",
                "formatter": "json",
                "filters": handler_filters,
            }
        },
        "loggers": {logger: {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }


# --- the anchors' access log: the middleware a team would write ----------------------

access_logger = logging.getLogger(ANCHORS_LOGGER)


class JsonAccessLogMiddleware:
    """One python-json-logger line per request: method, path, status, duration.

    Placed right after ``PrometheusBeforeMiddleware`` (outside Django's own
    stack), so that it logs the status the client gets (``CommonMiddleware``
    turns a 404 into an ``APPEND_SLASH`` redirect on the way out).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        access_logger.info(
            "request finished",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
            },
        )
        return response


# --- tracing: identical SDK pieces for both stacks -----------------------------------


class DiscardingExporter(SpanExporter):
    """Counts the spans it is handed and drops them.

    Keeps the ids of a few spans (the first ones, then the first of each
    batch) so that the worker can check log lines against them.
    """

    first = 32
    most = 256

    def __init__(self) -> None:
        self.exported = 0
        self.batches = 0
        self.kept: list[tuple[str, str, str, str]] = []

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.exported += len(spans)
        self.batches += 1
        kept = self.kept
        if len(kept) < self.most:
            take = spans[: max(1, self.first - len(kept))]
            for span in take:
                context = span.context
                kept.append(
                    (
                        format(context.trace_id, "032x"),
                        format(context.span_id, "016x"),
                        span.name,
                        span.kind.name,
                    )
                )
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def make_provider(ratio: float, exporter: DiscardingExporter) -> Any:
    """An SDK TracerProvider sampling ``ratio`` of new traces, batching into ``exporter``."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    root = ALWAYS_ON if ratio >= 1.0 else TraceIdRatioBased(ratio)
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench"}),
        sampler=ParentBased(root),
        shutdown_on_exit=False,  # the worker shuts it down after counting
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install_tracing(config: str) -> tuple[Any, DiscardingExporter]:
    """Build the provider for ``config`` and hand it to the stack, the way each documents.

    Call before ``django.setup()``: DjangoInstrumentor adds its middleware to
    ``settings.MIDDLEWARE``, so it must run before the handler loads it (as in
    a project's ``wsgi.py``).
    """
    exporter = DiscardingExporter()
    provider = make_provider(SAMPLE_RATIOS[config], exporter)
    if config == "anchors_full":
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument(tracer_provider=provider)
    else:
        from django_observability.tracing import use_tracer_provider

        use_tracer_provider(provider)
    return provider, exporter
