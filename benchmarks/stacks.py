"""The pieces of the full-stack configurations: tracing and JSON access logs.

``anchors_full``     django-prometheus + opentelemetry-instrumentation-django +
                     one python-json-logger line per request (what a team
                     assembles from the anchors).
``ours_full``        ObservabilityMiddleware with metrics, request id, a server
                     span and its JSON access log.
``ours_full_10pct``  the same, with 10% of traces sampled.

Both stacks get the same OpenTelemetry SDK pieces (a TracerProvider, a
BatchSpanProcessor with its default batching and a larger queue, see
``make_provider``, and an exporter that counts spans and discards them), and
both write one JSON line per request to a real file through
``logging.FileHandler``.

References, not stacks a team would run:

``sdk_span_floor``   bare Django plus ``SdkSpanFloorMiddleware``, which does only
                     what the OpenTelemetry SDK itself costs for a server span
                     (start it with the attributes ours sets, attach its context,
                     name it by route, end it), through the same SDK pieces. What
                     it adds over bare is the part of the full-stack budget that no
                     instrumentation built on the SDK can avoid.
``sdk_span_log_floor`` the same plus the least a request log line can be: one
                     plain-text line per request (``GET /path 200``) through
                     ``logging.FileHandler`` with ``Formatter("%(message)s")``.
                     No JSON, no ids, no metrics: the span and the act of
                     writing a line through the standard library's logging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

FULL_CONFIGS = ("anchors_full", "ours_full", "ours_full_10pct")
# The SDK's own server span and nothing else: a floor, no access log, no metrics.
SPAN_FLOOR = "sdk_span_floor"
# The same plus one plain-text line per request through the standard library's logging.
SPAN_LOG_FLOOR = "sdk_span_log_floor"
FLOORS = (SPAN_FLOOR, SPAN_LOG_FLOOR)
# Configurations that write a log line per request to the file named by LOG_FILE_ENV.
LOGGED_CONFIGS = (*FULL_CONFIGS, SPAN_LOG_FLOOR)
# Configurations that get a provider from install_tracing (and have their spans checked).
TRACED_CONFIGS = (*FULL_CONFIGS, *FLOORS)
SAMPLE_RATIOS = {
    "anchors_full": 1.0,
    "ours_full": 1.0,
    "ours_full_10pct": 0.1,
    SPAN_FLOOR: 1.0,
    SPAN_LOG_FLOOR: 1.0,
}
# The BatchSpanProcessor's queue, for every stack alike (see make_provider).
SPAN_QUEUE_SIZE = 65_536
# sdk_span_floor's provider, set by install_tracing before Django loads the middleware.
_floor_provider: Any = None
# The worker points this at a file in a fresh temporary directory before Django starts.
LOG_FILE_ENV = "BENCH_LOG_FILE"
# Logger that the anchors' access-log middleware writes to.
ANCHORS_LOGGER = "bench.access"
OURS_LOGGER = "django_observability.access"
# Logger of sdk_span_log_floor's plain lines.
FLOOR_LOGGER = "bench.floor"
LOGGERS = {
    "anchors_full": ANCHORS_LOGGER,
    "ours_full": OURS_LOGGER,
    "ours_full_10pct": OURS_LOGGER,
    SPAN_LOG_FLOOR: FLOOR_LOGGER,
}


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
    elif config == SPAN_LOG_FLOOR:
        formatters = {"plain": {"format": "%(message)s"}}
        filters = {}
        handler_filters = []
        logger = FLOOR_LOGGER
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
                "formatter": next(iter(formatters)),
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
    # A larger queue than the SDK's default 2048, and nothing else changed: the
    # schedule delay and the export batch size (512, which is also the queue
    # length that wakes the export thread) stay at their defaults, so spans are
    # batched and exported exactly as before. In this tight in-process loop
    # (no network wait between requests) the export thread sometimes does not
    # get the GIL before another 2048 spans have queued up; the SDK then logs
    # "Queue full, dropping Span" and the worker's one-span-per-request check
    # fails; a dropped span also skips its export, which would flatter whichever
    # run drops most. The same queue for every stack keeps the comparison fair.
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=SPAN_QUEUE_SIZE))
    return provider


def install_tracing(config: str) -> tuple[Any, DiscardingExporter]:
    """Build the provider for ``config`` and hand it to the stack, the way each documents.

    Call before ``django.setup()``: DjangoInstrumentor adds its middleware to
    ``settings.MIDDLEWARE``, so it must run before the handler loads it (as in
    a project's ``wsgi.py``). ``sdk_span_floor`` keeps the provider here for
    ``SdkSpanFloorMiddleware`` to take its tracer from when Django loads it.
    """
    exporter = DiscardingExporter()
    provider = make_provider(SAMPLE_RATIOS[config], exporter)
    if config in FLOORS:
        global _floor_provider
        _floor_provider = provider  # SdkSpanFloorMiddleware takes its tracer from it
    elif config == "anchors_full":
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument(tracer_provider=provider)
    else:
        from django_observability.tracing import use_tracer_provider

        use_tracer_provider(provider)
    return provider, exporter


# --- the reference: the SDK's own server span, nothing else ---------------------------

# A fixed request id: ours generates one per request, but that is ours, not the SDK's.
_FLOOR_REQUEST_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class SdkSpanFloorMiddleware:
    """What the OpenTelemetry SDK itself costs for one server span, and nothing more.

    Outermost middleware of ``sdk_span_floor``: starts a ``SERVER`` span with
    the attributes ``ObservabilityMiddleware`` gives a span at start, makes it
    current around the rest of the stack, then names it by route, sets the
    route and status and ends it. No metrics, no logging, no request id, no
    propagation and no error handling: what is left is the SDK's span cycle
    (ids, sampler, attribute validation, context, the batch processor's
    queue), which every instrumentation built on the SDK pays.
    """

    def __init__(self, get_response):
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind

        if _floor_provider is None:
            raise RuntimeError("sdk_span_floor: call install_tracing() before django.setup()")
        self.get_response = get_response
        self.tracer = _floor_provider.get_tracer("benchmarks.sdk_span_floor")
        self.attach = context.attach
        self.detach = context.detach
        self.set_span_in_context = trace.set_span_in_context
        self.server = SpanKind.SERVER

    def __call__(self, request):
        meta = request.META
        method = request.method
        attributes = {
            "http.request.method": method,
            "url.path": request.path,
            "url.scheme": meta.get("wsgi.url_scheme", "http"),
            "http.request.id": _FLOOR_REQUEST_ID,
            "server.address": meta.get("HTTP_HOST") or meta.get("SERVER_NAME", ""),
            "client.address": meta.get("REMOTE_ADDR", ""),
            "user_agent.original": meta.get("HTTP_USER_AGENT", ""),
            "network.protocol.version": meta.get("SERVER_PROTOCOL", "HTTP/1.1")[5:],
        }
        span = self.tracer.start_span(method, kind=self.server, attributes=attributes)
        token = self.attach(self.set_span_in_context(span))
        try:
            response = self.get_response(request)
        finally:
            self.detach(token)
        match = request.resolver_match
        route = match.route if match is not None else "<unmatched>"
        span.update_name(f"{method} {route}")
        span.set_attributes(
            {"http.route": route, "http.response.status_code": response.status_code}
        )
        span.end()
        return response


floor_logger = logging.getLogger(FLOOR_LOGGER)


class SdkSpanLogFloorMiddleware(SdkSpanFloorMiddleware):
    """The SDK's server span, plus one plain-text line per request: ``GET /path 200``.

    The least a request log line can cost: a ``logger.info`` call that
    ``logging.FileHandler`` writes with ``Formatter("%(message)s")``. No JSON,
    no ids, no extras. Logged after the span has ended, with the status the
    client gets (this middleware is outermost).
    """

    def __call__(self, request):
        response = super().__call__(request)
        floor_logger.info("%s %s %s", request.method, request.path, response.status_code)
        return response
