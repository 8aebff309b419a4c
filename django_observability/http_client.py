"""Outgoing HTTP: OpenTelemetry's client instrumentations, our metric, and the request id.

The spans, and the W3C ``traceparent`` they inject, are OpenTelemetry's own
(``opentelemetry-instrumentation-requests``, ``-httpx``, ``-urllib3``): the app
enables each library named in ``OBSERVABILITY_HTTP_CLIENT_INSTRUMENTATIONS``
once the project imports it, when its instrumentation package is installed
and nobody enabled it before (the ``opentelemetry-instrument`` agent does it
itself; then its spans are used as they are, without our metric). What we add
goes through the instrumentations' own seams, so there is never a second span
for a call:

* **The metric.** requests' instrumentation times the call and records the
  duration in a histogram it gets from the meter provider it is given. The
  app gives it :func:`meter_provider`, which hands that one histogram to
  ``http_client_request_duration_seconds{method, server_address, status}``
  (everything else it asks for is a no-op). So a call that fails without a
  response is counted too (``status="error"``), which the response hooks
  never see. httpx's and urllib3's instrumentations record nothing for a
  call that raised: the app times those itself (:func:`wrap_httpx`,
  :func:`wrap_urllib3`) and gives them no meter. ``server_address`` comes
  from outside the URLconf: it is capped
  by ``OBSERVABILITY_METRICS_LABEL_CAP`` (``_other``).
* **The stable HTTP conventions.** The instrumentations follow
  ``OTEL_SEMCONV_STABILITY_OPT_IN``, which the first instrumentation enabled in
  a process reads once; when it is unset the app sets it to ``http`` in
  ``ready()``, before any instrumentation it enables (``url.full``, ``http.request.method``,
  ``server.address``, ``http.response.status_code``, ``error.type``).
  The bridge reads the old conventions' histogram (milliseconds) only when
  the process was set to them before we could choose.
* **The request id** (``OBSERVABILITY_REQUEST_ID_HEADER``) goes out through
  each instrumentation's request hook, only to the hosts
  ``OBSERVABILITY_HTTP_CLIENT_REQUEST_ID_HOSTS`` names. The default is none:
  the id is an internal correlation key that joins a user's requests in your
  logs, and a third party has no use for it; ``traceparent`` already carries
  the trace to every host, as OpenTelemetry does by default. A header the
  caller set is left as it is.

Our hooks and the bridge never raise: a fault is logged once and the call
goes on as it would without us.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from django_observability.conf import valid_or_default
from django_observability.context import get_request_id
from django_observability.faults import fault
from django_observability.imports import after_import
from django_observability.metrics import get_metrics

__all__ = [
    "INSTRUMENTATIONS",
    "enable",
    "enabled",
    "host_allowed",
    "meter_provider",
    "request_id_header",
    "wrap_httpx",
    "wrap_urllib3",
]

logger = logging.getLogger("django_observability")

# name -> (the library's module, the instrumentation's module, its instrumentor class)
INSTRUMENTATIONS: dict[str, tuple[str, str, str]] = {
    "requests": (
        "requests",
        "opentelemetry.instrumentation.requests",
        "RequestsInstrumentor",
    ),
    "httpx": ("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    "urllib3": ("urllib3", "opentelemetry.instrumentation.urllib3", "URLLib3Instrumentor"),
}

_perf_counter = time.perf_counter
# Timed by the app rather than through the instrumentation's meter (which misses failures).
_TIMED_BY_US = frozenset({"httpx", "urllib3"})

_NEW_HISTOGRAM = "http.client.request.duration"  # seconds, the stable conventions
_OLD_HISTOGRAM = "http.client.duration"  # milliseconds, the old ones
_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"

# The names this process enabled (for tests and the health of the wiring).
_enabled: set[str] = set()


# --- the request id --------------------------------------------------------------------------


def host_allowed(host: str | None, allowed: Sequence[str]) -> bool:
    """Whether the request id may go to ``host``.

    ``allowed`` entries: a host name or address (exact), ``.example.com`` or
    ``*.example.com`` (that domain's subdomains), ``*`` (every host).
    """
    if not host or not allowed:
        return False
    host = host.lower().rstrip(".")
    for entry in allowed:
        if entry == "*":
            return True
        if entry.startswith("*."):
            entry = entry[1:]
        if entry.startswith("."):
            if host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def request_id_header(host: str | None) -> tuple[str, str] | None:
    """(header, value) to send to ``host``, or ``None`` (not allowed, or no request id now)."""
    allowed = valid_or_default("HTTP_CLIENT_REQUEST_ID_HOSTS")
    if not allowed or not host_allowed(host, allowed):
        return None
    request_id = get_request_id()
    if not request_id:
        return None
    return valid_or_default("REQUEST_ID_HEADER"), request_id


def _nothing_to_send() -> bool:
    """No request id now, or no host to send it to: the hooks need not look at the call."""
    return not get_request_id() or not valid_or_default("HTTP_CLIENT_REQUEST_ID_HOSTS")


def _requests_hook(span: Any, request: Any) -> None:
    """requests' ``request_hook``: ``request`` is the ``PreparedRequest`` about to go."""
    try:
        if _nothing_to_send():
            return
        header = request_id_header(urlsplit(request.url).hostname)
        if header is not None and header[0] not in request.headers:
            request.headers[header[0]] = header[1]
    except Exception:
        fault("http_client.request_id")


def _info_hook(span: Any, request: Any, *rest: Any) -> None:
    """httpx's and urllib3's ``request_hook``: a request info with ``url`` and ``headers``."""
    try:
        if _nothing_to_send():
            return
        url = request.url
        host = getattr(url, "host", None) if not isinstance(url, str) else urlsplit(url).hostname
        header = request_id_header(host)
        headers = request.headers
        if header is not None and headers is not None and header[0] not in headers:
            headers[header[0]] = header[1]
    except Exception:
        fault("http_client.request_id")


def _urllib3_hook(span: Any, pool: Any, request: Any) -> None:
    """urllib3's ``request_hook``: the pool knows the host; the info carries the headers."""
    try:
        if _nothing_to_send():
            return
        header = request_id_header(getattr(pool, "host", None))
        headers = request.headers
        if header is not None and headers is not None and header[0] not in headers:
            headers[header[0]] = header[1]
    except Exception:
        fault("http_client.request_id")


async def _async_info_hook(span: Any, request: Any) -> None:
    _info_hook(span, request)


# --- the metric --------------------------------------------------------------------------------


def _status(attributes: Any) -> str:
    code = attributes.get("http.response.status_code") or attributes.get("http.status_code")
    return str(code) if isinstance(code, int) and code > 0 else "error"


class _Duration:
    """The histogram an instrumentation records its calls in, turned into our metric."""

    def __init__(self, scale: float, keys: tuple[str, str], bridge: _Bridge) -> None:
        self.scale = scale  # to seconds
        self.method_key, self.host_key = keys
        self.bridge = bridge

    def record(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        try:
            if self.scale != 1.0 and self.bridge.has_new:
                return  # the process reports both conventions: count each call once
            metrics = get_metrics()
            if metrics is None or not attributes:
                return
            metrics.record_http_client(
                str(attributes.get(self.method_key) or "_OTHER"),
                str(attributes.get(self.host_key) or "unknown"),
                _status(attributes),
                max(0.0, float(amount) * self.scale),
            )
        except Exception:
            fault("http_client.metrics")


class _Bridge:
    """What the meters of one instrumentation share: whether it records the stable histogram."""

    has_new = False


def meter_provider() -> Any:
    """An OpenTelemetry ``MeterProvider`` for one instrumentation: its duration is our metric.

    The API's no-op provider, but for the request duration histogram: the
    stable conventions' (seconds), or the old conventions' (milliseconds)
    when the instrumentation does not make the stable one.
    """
    from opentelemetry.metrics import NoOpHistogram, NoOpMeter, NoOpMeterProvider

    bridge = _Bridge()

    class Recording(NoOpHistogram):
        def __init__(self, duration: _Duration) -> None:
            super().__init__("django_observability.http_client")
            self.duration = duration

        def record(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
            self.duration.record(amount, attributes, context)

    class Meter(NoOpMeter):
        def create_histogram(  # type: ignore[override]
            self, name: str, unit: str = "", description: str = "", **kwargs: Any
        ) -> Any:
            if name == _NEW_HISTOGRAM:
                bridge.has_new = True
                keys = ("http.request.method", "server.address")
                return Recording(_Duration(1.0, keys, bridge))
            if name == _OLD_HISTOGRAM:
                scale = 0.001 if unit == "ms" else 1.0
                return Recording(_Duration(scale, ("http.method", "net.peer.name"), bridge))
            return super().create_histogram(name, unit, description, **kwargs)

    class Provider(NoOpMeterProvider):
        def get_meter(self, name: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            return Meter(name)

    return Provider()


# --- httpx: timed at its transports -------------------------------------------------------------

# (class, method name) -> the function our wrapper replaced.
_httpx_originals: dict[tuple[type, str], Any] = {}


def _record_httpx(request: Any, status: str, seconds: float) -> None:
    try:
        metrics = get_metrics()
        if metrics is not None:
            metrics.record_http_client(
                str(request.method), str(request.url.host or "unknown"), status, seconds
            )
    except Exception:
        fault("http_client.metrics")


def _timed(original: Any) -> Any:
    def handle_request(self: Any, request: Any) -> Any:
        status = "error"
        start = _perf_counter()
        try:
            response = original(self, request)
            status = str(response.status_code)
            return response
        finally:
            _record_httpx(request, status, _perf_counter() - start)

    return handle_request


def _timed_async(original: Any) -> Any:
    async def handle_async_request(self: Any, request: Any) -> Any:
        status = "error"
        start = _perf_counter()
        try:
            response = await original(self, request)
            status = str(response.status_code)
            return response
        finally:
            _record_httpx(request, status, _perf_counter() - start)

    return handle_async_request


def wrap_httpx() -> None:
    """Time httpx's default transports (sync and async) for our metric, once."""
    import httpx

    for cls, name, wrap in (
        (httpx.HTTPTransport, "handle_request", _timed),
        (httpx.AsyncHTTPTransport, "handle_async_request", _timed_async),
    ):
        if (cls, name) in _httpx_originals:
            continue
        original = cls.__dict__[name]
        wrapper = wrap(original)
        _httpx_originals[(cls, name)] = (original, wrapper)
        setattr(cls, name, wrapper)


def unwrap_httpx() -> None:
    """Undo :func:`wrap_httpx` where our wrapper is still the method (for tests)."""
    for (cls, name), (original, wrapper) in list(_httpx_originals.items()):
        if cls.__dict__.get(name) is wrapper:
            setattr(cls, name, original)
        del _httpx_originals[(cls, name)]


# --- urllib3: timed at its connection pools ---------------------------------------------------

# The call of HTTPConnectionPool.urlopen being timed in this context: its retries and
# redirects, urlopen calling itself, belong to that call.
_URLLIB3_CALL: ContextVar[bool] = ContextVar("django_observability_urllib3_call", default=False)
_urllib3_original: Any = None
_urllib3_wrapper: Any = None


def _no_http_suppression() -> bool:
    return True


def _http_enabled_check() -> Callable[[], bool]:
    try:
        from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
    except ImportError:  # pragma: no cover - installed with any instrumentation
        return _no_http_suppression
    return is_http_instrumentation_enabled  # type: ignore[no-any-return]


def _timed_urlopen(original: Any) -> Any:
    # Whether no HTTP instrumentation up the stack times this call (requests over urllib3).
    http_enabled = _http_enabled_check()

    def urlopen(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        if _URLLIB3_CALL.get() or not http_enabled():
            return original(self, method, url, *args, **kwargs)
        token = _URLLIB3_CALL.set(True)
        status = "error"
        start = _perf_counter()
        try:
            response = original(self, method, url, *args, **kwargs)
            status = str(getattr(response, "status", "error"))
            return response
        finally:
            _URLLIB3_CALL.reset(token)
            seconds = _perf_counter() - start
            try:
                metrics = get_metrics()
                if metrics is not None:
                    host = str(getattr(self, "host", None) or "unknown")
                    metrics.record_http_client(str(method), host, status, seconds)
            except Exception:
                fault("http_client.metrics")

    return urlopen


def wrap_urllib3() -> None:
    """Time urllib3's calls for our metric, once; after its instrumentation (around its span).

    Its instrumentation records no duration for a call that raised, so the app
    times the calls itself; a call made by requests (whose instrumentation
    times it) is left to requests.
    """
    global _urllib3_original, _urllib3_wrapper
    from urllib3.connectionpool import HTTPConnectionPool

    if _urllib3_wrapper is not None:
        return
    _urllib3_original = HTTPConnectionPool.__dict__["urlopen"]
    # Through the class: the instrumentation's wrapper (wrapt) then takes the pool from
    # the first argument, as it does for a method called on an instance.
    _urllib3_wrapper = _timed_urlopen(HTTPConnectionPool.urlopen)
    HTTPConnectionPool.urlopen = _urllib3_wrapper  # type: ignore[method-assign]


def unwrap_urllib3() -> None:
    """Undo :func:`wrap_urllib3` where our wrapper is still the method (for tests)."""
    global _urllib3_original, _urllib3_wrapper
    if _urllib3_wrapper is None:
        return
    from urllib3.connectionpool import HTTPConnectionPool

    if HTTPConnectionPool.__dict__.get("urlopen") is _urllib3_wrapper:
        HTTPConnectionPool.urlopen = _urllib3_original  # type: ignore[method-assign]
    _urllib3_original = _urllib3_wrapper = None


# --- enabling ------------------------------------------------------------------------------------


def _hooks(name: str) -> dict[str, Callable[..., Any]]:
    if name == "requests":
        return {"request_hook": _requests_hook}
    if name == "httpx":
        return {"request_hook": _info_hook, "async_request_hook": _async_info_hook}
    return {"request_hook": _urllib3_hook}


def _provider() -> Any:
    from django_observability.tracing.api import provider_override

    return provider_override()  # None: the global one (a no-op until one is installed)


def _instrument(name: str) -> None:
    if name == "httpx":
        try:
            wrap_httpx()  # before the instrumentation: its span is around our timing
        except Exception:
            fault("http_client.httpx")
    try:
        _instrument_spans(name)
    finally:
        if name == "urllib3":
            try:
                wrap_urllib3()  # after the instrumentation: around its span, see there
            except Exception:
                fault("http_client.urllib3")


def _instrument_spans(name: str) -> None:
    import importlib

    _library, module, class_name = INSTRUMENTATIONS[name]
    try:
        instrumentor_class = getattr(importlib.import_module(module), class_name)
    except ImportError:
        logger.debug(
            "django_observability: %s is not installed; %s calls are not traced", module, name
        )
        return
    try:
        instrumentor = instrumentor_class()
        if instrumentor.is_instrumented_by_opentelemetry:
            if name not in _enabled and name == "requests":
                logger.info(
                    "django_observability: requests was instrumented before the app could: its "
                    "spans are kept, http_client_request_duration_seconds does not count its calls"
                )
            return
        if name in _TIMED_BY_US:
            from opentelemetry.metrics import NoOpMeterProvider

            meters = NoOpMeterProvider()  # timed by wrap_httpx() / wrap_urllib3() instead
        else:
            meters = meter_provider()
        instrumentor.instrument(tracer_provider=_provider(), meter_provider=meters, **_hooks(name))
        _enabled.add(name)
    except Exception:
        fault(f"http_client.{name}")


def enable() -> None:
    """Enable the instrumentations the setting names, each once its library is imported.

    From ``AppConfig.ready()``, after tracing is set up; imports nothing.
    """
    names = valid_or_default("HTTP_CLIENT_INSTRUMENTATIONS")
    if names:
        # Read once per process by the first instrumentation enabled (Celery's
        # too, which ready() enables after this): so set it before any of them.
        os.environ.setdefault(_OPT_IN, "http")
    for name in names:
        library = INSTRUMENTATIONS[name][0]
        after_import(library, lambda name=name: _instrument(name))


def enabled() -> frozenset[str]:
    """The names this process enabled."""
    return frozenset(_enabled)


def disable() -> None:
    """Undo :func:`enable` for what it enabled (for tests)."""
    import importlib

    unwrap_urllib3()  # first: around the instrumentation's wrapper
    for name in list(_enabled):
        _library, module, class_name = INSTRUMENTATIONS[name]
        getattr(importlib.import_module(module), class_name)().uninstrument()
        _enabled.discard(name)
    unwrap_httpx()
