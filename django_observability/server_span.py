"""The server span of a request: started with the incoming trace context, finished with its outcome.

Attributes follow the HTTP semantic conventions (``http.request.method``,
``url.path``, ``server.address``, ``http.route``,
``http.response.status_code``...). When opentelemetry-instrumentation-django
made the server span already, it is enriched rather than doubled.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from django_observability.context import RequestState
from django_observability.formats import exception_name
from django_observability.metrics import OTHER_METHOD, UNMATCHED
from django_observability.tracing import set_error

__all__ = ["CACHE_HITS", "CACHE_MISSES", "REFINED_ROUTE", "finish", "request_attributes", "start"]

#: The span attribute for a route label the project refined (``routes.refine_route``);
#: ``http.route`` stays the URL pattern, as the semantic conventions define it.
REFINED_ROUTE = "django_observability.route"
#: The request's cache reads that hit and missed (``get_many``: per key), set when it made any.
CACHE_HITS = "django_observability.cache.hits"
CACHE_MISSES = "django_observability.cache.misses"

# Where opentelemetry-instrumentation-django keeps its span in request.META.
_OTEL_DJANGO_SPAN = "opentelemetry-instrumentor-django.span_key"


class _MetaGetter:
    """Reads propagation headers (``traceparent``...) from ``request.META``."""

    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_meta_getter = _MetaGetter()


class _Otel:
    """The OpenTelemetry functions the request path uses, looked up once.

    Imported on first use: ``opentelemetry.propagate`` loads the configured
    propagators, which is for the first traced request to pay, not the import.
    """

    def __init__(self) -> None:
        from opentelemetry import context, propagate
        from opentelemetry.trace import SpanKind, set_span_in_context

        self.extract = propagate.extract
        self.attach = context.attach
        self.set_span_in_context = set_span_in_context
        self.SERVER = SpanKind.SERVER


_otel: _Otel | None = None


def _load_otel() -> _Otel:
    global _otel
    _otel = _Otel()
    return _otel


def start(
    request: HttpRequest, tracer: Any, state: RequestState, extract_always: bool, request_id: str
) -> Any:
    """Start the request's server span and make it current.

    Returns the OpenTelemetry context token to detach when the request is
    done (``context.leave`` does), or ``None``
    when the span belongs to opentelemetry-instrumentation-django (it attached
    its own). ``extract_always``: extract the parent even without W3C headers
    (non-default propagators).
    """
    meta = request.META
    theirs = meta.get(_OTEL_DJANGO_SPAN)
    if theirs is not None:
        # opentelemetry-instrumentation-django made the server span: enrich
        # it rather than make a second one.
        if theirs.is_recording():
            theirs.set_attribute("http.request.id", request_id)
        state.span = theirs
        return None
    otel = _otel or _load_otel()
    parent = None
    if extract_always or "HTTP_TRACEPARENT" in meta or "HTTP_BAGGAGE" in meta:
        parent = otel.extract(meta, getter=_meta_getter)
    # Attributes go in with the span (one validation pass); the sampler has
    # decided nothing yet, so they are built even for spans it drops.
    span = tracer.start_span(
        state.method,
        context=parent,
        kind=otel.SERVER,
        attributes=request_attributes(request, state.method, request_id),
    )
    state.span = span
    state.owns_span = True
    return otel.attach(otel.set_span_in_context(span, parent))


def request_attributes(request: HttpRequest, method: str, request_id: str) -> dict[str, Any]:
    """HTTP semantic-convention attributes known when the request arrives.

    Never through ``request.get_host()``, which raises for a disallowed Host.
    """
    meta = request.META
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": request.path[:2048],
        "url.scheme": request.scheme or "http",
        "http.request.id": request_id,
    }
    if method == OTHER_METHOD:
        attributes["http.request.method_original"] = str(request.method)[:64]
    host = meta.get("HTTP_HOST") or meta.get("SERVER_NAME")
    if host:
        host = str(host)[:255]
        name, sep, port = host.rpartition(":")  # "[::1]:8000" -> "[::1]", "8000"
        if sep and port.isdigit():
            attributes["server.address"] = name
            attributes["server.port"] = int(port)
        else:
            attributes["server.address"] = host
    client = meta.get("REMOTE_ADDR")
    if client:
        attributes["client.address"] = client
    agent = meta.get("HTTP_USER_AGENT")
    if agent:
        attributes["user_agent.original"] = agent[:1024]
    protocol = meta.get("SERVER_PROTOCOL")  # WSGI: "HTTP/1.1"
    if protocol and "/" in protocol:
        attributes["network.protocol.version"] = protocol.split("/", 1)[1]
    else:
        scope = getattr(request, "scope", None)  # ASGI: {"http_version": "1.1"}
        if scope and scope.get("http_version"):
            attributes["network.protocol.version"] = str(scope["http_version"])
    return attributes


def finish(state: RequestState, span: Any) -> None:
    """Name the span after the route, set the status and any error, and end it (if ours)."""
    if not state.owns_span:
        return  # opentelemetry-instrumentation-django ends its own span
    if span.is_recording():
        status = state.status
        if state.route != UNMATCHED:
            span.update_name(f"{state.method} {state.route}")
            if status.isdigit():
                span.set_attributes(
                    {"http.route": state.route, "http.response.status_code": int(status)}
                )
            else:
                span.set_attribute("http.route", state.route)
        elif status.isdigit():
            span.set_attribute("http.response.status_code", int(status))
        if state.refined_route is not None:
            span.set_attribute(REFINED_ROUTE, state.refined_route)
        if state.cache_hits or state.cache_misses:
            span.set_attributes({CACHE_HITS: state.cache_hits, CACHE_MISSES: state.cache_misses})
        if state.exc is not None:
            set_error(span, state.exc, exception_name(state.exc))
        elif status and status >= "500" and len(status) == 3:
            set_error(span, None, status)
    span.end()
