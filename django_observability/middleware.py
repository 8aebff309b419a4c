"""``ObservabilityMiddleware``: request ids and request metrics, sync and async.

Put it first in ``MIDDLEWARE``. Per request it

* takes a valid incoming request id (``OBSERVABILITY_REQUEST_ID_HEADER``) or
  makes one, exposes it as ``request.request_id`` and through
  :func:`django_observability.get_request_id`, and echoes it on the response;
* counts the request in ``http_server_active_requests`` while it is served;
* records its duration and body size by method, route template and status
  when the response is done (for streaming and file responses: when the
  server closes the response, after the last byte);
* counts exceptions that Django turned into a 500, by route and class.

Nothing here may break the user's request: a fault in the instrumentation is
logged (once per kind) and swallowed; the user's own exceptions pass through
unchanged after being counted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.functional import empty

from django_observability import request_id as _request_id
from django_observability.conf import valid_or_default
from django_observability.metrics import (
    OTHER_METHOD,
    UNMATCHED,
    Metrics,
    exception_name,
    get_metrics,
    method_label,
    route_label,
)
from django_observability.tracing import end_suppression, get_tracer, set_error, suppress_spans

logger = logging.getLogger("django_observability")

# Attributes we set on the request. Private: the public one is request_id.
_STATE = "_observability"
_EXCEPTION = "_observability_exception"

_perf_counter = time.perf_counter
_STATUS_LABELS = {code: str(code) for code in range(100, 600)}


class _Config:
    """The settings the middleware needs per request, read and checked once."""

    __slots__ = (
        "access_log",
        "exclude_prefixes",
        "exempt_paths",
        "extract_always",
        "header",
        "meta_key",
        "own_paths",
        "probes",
        "trust_incoming",
    )

    def __init__(self) -> None:
        self.header: str = valid_or_default("REQUEST_ID_HEADER", "X-Request-ID")
        self.meta_key = _request_id.meta_key(self.header)
        self.trust_incoming: bool = valid_or_default("REQUEST_ID_TRUST_INCOMING", True)
        self.exclude_prefixes: tuple[str, ...] = tuple(valid_or_default("EXCLUDE_PATHS", ()))
        self.access_log: bool = valid_or_default("ACCESS_LOG", True)
        own = _own_paths()
        # The app's own endpoints: no metrics, no span, no access log line.
        self.own_paths = frozenset(own)
        # Paths that an @observability_exempt view answered (learned, bounded).
        self.exempt_paths: set[str] = set()
        self.probes: dict[str, str] = (
            {path: kind for path, kind in own.items() if kind in ("live", "ready")}
            if valid_or_default("HEALTH_PROBES_IN_MIDDLEWARE", True)
            else {}
        )
        # With the default propagators (W3C trace context and baggage), a
        # request without their headers has nothing to extract.
        propagators = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage")
        self.extract_always = {p.strip() for p in propagators.split(",")} - {
            "tracecontext",
            "baggage",
        } != set()


_PROBE_METHODS = frozenset({"GET", "HEAD"})
_OWN_URL_NAMES = (
    ("health_live", "live"),
    ("health_ready", "ready"),
    ("health", "report"),
    ("metrics", "metrics"),
)


def _own_paths() -> dict[str, str]:
    """``path_info`` of the app's own URLs -> "live", "ready", "report", "metrics".

    Found by URL name, wherever ``django_observability.urls`` is mounted; empty
    when it is not.
    """
    from django.urls import NoReverseMatch, get_script_prefix, reverse

    paths = {}
    prefix = get_script_prefix()
    for name, kind in _OWN_URL_NAMES:
        try:
            path = reverse(f"django_observability:{name}")
        except NoReverseMatch:
            continue
        except Exception:
            _fault("the app's own URLs")
            continue
        if path.startswith(prefix):
            path = "/" + path[len(prefix) :]
        paths[path] = kind
    return paths


def _probe_kind(request: HttpRequest, config: _Config) -> str | None:
    kind = config.probes.get(request.path_info)
    if kind is not None and request.method in _PROBE_METHODS:
        return kind
    return None


_config: _Config | None = None


def _get_config() -> _Config:
    global _config
    config = _config
    if config is None:
        config = _config = _Config()
    return config


def reset_config() -> None:
    """Forget the cached settings (called when an ``OBSERVABILITY_*`` setting changes)."""
    global _config
    _config = None


_reported: set[str] = set()


def _fault(where: str) -> None:
    """Log a fault in our own code: with its traceback the first time, briefly after."""
    if where in _reported:
        logger.debug("django_observability: fault in %s", where, exc_info=True)
        return
    _reported.add(where)
    logger.exception("django_observability: fault in %s; the request is served regardless", where)


class _Tracked:
    """Instrumentation state of one request, from the first middleware call to completion.

    Each part (metrics, span, access log) may be absent; each is recorded in
    its own ``try`` so that a fault in one leaves the others, and the
    response, alone.
    """

    __slots__ = (
        "active",
        "body_bytes",
        "context",
        "done",
        "exc",
        "excluded",
        "ids",
        "log",
        "method",
        "metrics",
        "owns_span",
        "presumed_exempt",
        "queries",
        "request",
        "route",
        "span",
        "start",
        "status",
    )

    def __init__(self, request: HttpRequest, metrics: Metrics | None, method: str) -> None:
        self.request = request
        self.metrics = metrics
        self.method = method
        self.active = None
        if metrics is not None:
            self.active = metrics.active_child(method)
            self.active.inc()
        self.done = False
        self.excluded = False
        self.route = UNMATCHED
        self.status = ""
        self.body_bytes: int | None = None
        self.exc: BaseException | None = None
        self.span: Any = None
        self.context: Any = None  # the span's context, kept when the span is let go
        self.ids: tuple[str, str, bool] | bool | None = False  # False: not read yet
        self.owns_span = False
        self.presumed_exempt = False
        self.log = False
        self.queries: list[float] = [0, 0.0]
        self.start = _perf_counter()

    def exclude(self) -> None:
        """Leave this request out of the metrics and the access log (an exempt view)."""
        if not self.excluded:
            self.excluded = True
            if self.active is not None and not self.done:
                self.active.dec()

    def span_ids(self) -> tuple[str, str, bool] | None:
        """(trace id, span id, sampled) of the request's span, in hex; ``None`` if none.

        Formatted once, for the exemplar and the access log alike.
        """
        ids = self.ids
        if ids is False:
            ids = None
            context = self.context
            if context is None and self.span is not None:
                context = self.span.get_span_context()
            if context is not None and context.is_valid:
                ids = (
                    format(context.trace_id, "032x"),
                    format(context.span_id, "016x"),
                    bool(context.trace_flags.sampled),
                )
            self.ids = ids
        return ids  # type: ignore[return-value]

    def sampled_ids(self) -> tuple[str, str, bool] | None:
        """:meth:`span_ids` if the span is sampled (what an exemplar may point to)."""
        ids = self.span_ids()
        return ids if ids is not None and ids[2] else None

    def complete(self) -> None:
        """Record the finished request; safe to call more than once."""
        if self.done:
            return
        self.done = True
        seconds = _perf_counter() - self.start
        span = self.span
        if span is not None:
            try:
                _finish_span(self, span)
            except Exception:
                _fault("request span")
        if not self.excluded:
            self._record(seconds, span)
            if self.presumed_exempt:
                # The exempt view did not answer this time (another URLconf, or
                # a middleware answered first): the path gets spans again.
                _forget_exempt(self.request)
        if span is not None and self.ids is False:
            # Its ids, formatted only if a record Django logs after us
            # (django.request) asks for them.
            try:
                self.context = span.get_span_context()
            except Exception:
                _fault("request span")
        # Nothing else reads them past this point: let the span and the request
        # go when the request does, without waiting for the cycle collector.
        self.span = None
        self.request = None  # type: ignore[assignment]

    def _record(self, seconds: float, span: Any) -> None:
        if self.metrics is not None:
            try:
                self.metrics.observe(
                    self.method,
                    self.route,
                    self.status,
                    seconds,
                    self.body_bytes,
                    None if span is None else self.sampled_ids,
                )
            except Exception:
                _fault("request metrics")
            finally:
                self.active.dec()  # type: ignore[union-attr]
        if self.log:
            try:
                _access_log(self, seconds)
            except Exception:
                _fault("access log")


def _begin(request: HttpRequest, config: _Config) -> tuple[Any, _Tracked | None]:
    """Request id, in-flight accounting and the server span.

    Returns the context tokens to reset when the middleware returns, and the
    tracked state (``None`` for an excluded request).
    """
    try:
        rid = _request_id.from_meta(request.META, config.meta_key, config.trust_incoming)
        request.request_id = rid  # type: ignore[attr-defined]
        # [request id token, request token, OpenTelemetry context token]
        tokens: list[Any] = [
            _request_id._current.set(rid),
            _request_id._request.set(request),
            None,
        ]
    except Exception:
        _fault("request id")
        return None, None
    try:
        path = request.path_info
        if path in config.own_paths or (
            config.exclude_prefixes and path.startswith(config.exclude_prefixes)
        ):
            _no_spans(request, tokens)  # nor from what serves the request
            return tokens, None
        tracked = _Tracked(request, get_metrics(), method_label(request.method))
        setattr(request, _STATE, tracked)
    except Exception:
        _fault("request metrics (start)")
        return tokens, None
    try:
        if path in config.exempt_paths:
            # An @observability_exempt view answered this path before: no span.
            # Its decorator still decides about metrics and the access log.
            tracked.presumed_exempt = True
            _no_spans(request, tokens)
        else:
            tracer = get_tracer()
            if tracer is not None:
                _start_span(request, tracer, tracked, config, rid, tokens)
        tracked.log = config.access_log and access_logger.isEnabledFor(logging.INFO)
    except Exception:
        _fault("request span (start)")
    return tokens, tracked


def _no_spans(request: HttpRequest, tokens: list[Any]) -> None:
    """No spans for this request: none of ours, none from its queries or streamed body."""
    tokens[2] = suppress_spans()
    request.__dict__[_SUPPRESSED] = True


_OTEL_DJANGO_SPAN = "opentelemetry-instrumentor-django.span_key"


class _MetaGetter:
    """Reads propagation headers (``traceparent``...) from ``request.META``."""

    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_meta_getter = _MetaGetter()


def _start_span(
    request: HttpRequest,
    tracer: Any,
    tracked: _Tracked,
    config: _Config,
    rid: str,
    tokens: list[Any],
) -> None:
    meta = request.META
    theirs = meta.get(_OTEL_DJANGO_SPAN)
    if theirs is not None:
        # opentelemetry-instrumentation-django made the server span: enrich
        # it rather than make a second one.
        if theirs.is_recording():
            theirs.set_attribute("http.request.id", rid)
        tracked.span = theirs
        return
    otel = _otel or _load_otel()
    parent = None
    if config.extract_always or "HTTP_TRACEPARENT" in meta or "HTTP_BAGGAGE" in meta:
        parent = otel.extract(meta, getter=_meta_getter)
    # Attributes go in with the span (one validation pass); the sampler has
    # decided nothing yet, so they are built even for spans it drops.
    span = tracer.start_span(
        tracked.method,
        context=parent,
        kind=otel.SERVER,
        attributes=_request_attributes(request, tracked.method, rid),
    )
    tracked.span = span
    tracked.owns_span = True
    tokens[2] = otel.attach(otel.set_span_in_context(span, parent))


class _Otel:
    """The OpenTelemetry functions the request path uses, looked up once."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate
        from opentelemetry.trace import SpanKind, set_span_in_context

        self.extract = propagate.extract
        self.attach = context.attach
        self.detach = context.detach
        self.set_span_in_context = set_span_in_context
        self.SERVER = SpanKind.SERVER


_otel: _Otel | None = None


def _load_otel() -> _Otel:
    global _otel
    _otel = _Otel()
    return _otel


def _request_attributes(request: HttpRequest, method: str, rid: str) -> dict[str, Any]:
    """HTTP semantic-convention attributes known when the request arrives.

    Never through ``request.get_host()``, which raises for a disallowed Host.
    """
    meta = request.META
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": request.path[:2048],
        "url.scheme": request.scheme or "http",
        "http.request.id": rid,
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


def _finish_span(tracked: _Tracked, span: Any) -> None:
    if not tracked.owns_span:
        return  # opentelemetry-instrumentation-django ends its own span
    if span.is_recording():
        status = tracked.status
        if tracked.route != UNMATCHED:
            span.update_name(f"{tracked.method} {tracked.route}")
            if status.isdigit():
                span.set_attributes(
                    {"http.route": tracked.route, "http.response.status_code": int(status)}
                )
            else:
                span.set_attribute("http.route", tracked.route)
        elif status.isdigit():
            span.set_attribute("http.response.status_code", int(status))
        if tracked.exc is not None:
            set_error(span, tracked.exc, exception_name(tracked.exc))
        elif status and status >= "500" and len(status) == 3:
            set_error(span, None, status)
    span.end()


access_logger = logging.getLogger("django_observability.access")
_NS = 1_000_000_000


def _access_log(tracked: _Tracked, seconds: float) -> None:
    request = tracked.request
    path = request.path
    if len(path) > 2048:
        path = path[:2048]
    extra: dict[str, Any] = {
        "http.request.method": tracked.method,
        "url.path": path,
        "http.route": tracked.route,
        "http.response.status_code": int(tracked.status) if tracked.status.isdigit() else None,
        "http.response.body.bytes": tracked.body_bytes,
        "event.duration": int(seconds * _NS),
        "client.ip": request.META.get("REMOTE_ADDR"),
        "db.queries.count": int(tracked.queries[0]),
        "db.queries.duration": int(tracked.queries[1] * _NS),
        # Explicit, for responses that finish after the request's context is gone.
        "request_id": getattr(request, "request_id", None),
    }
    user_id = _loaded_user_id(request)
    if user_id is not None:
        extra["user.id"] = user_id
    ids = tracked.span_ids()
    if ids is not None:
        extra["trace_id"], extra["span_id"] = ids[0], ids[1]
    # Made here and handed to the logger's handlers directly: the record
    # logger.info() would make (through the installed record factory), without
    # its walk up the stack to find the caller (always this function) or its
    # check of every extra against the record's own attributes (none of ours
    # clash with them).
    record = _record_factory()(
        access_logger.name,
        logging.INFO,
        __file__,
        _ACCESS_LINE,
        "%s %s %s",
        (tracked.method, path, tracked.status),
        None,
        "_access_log",
        None,
    )
    record.__dict__.update(extra)
    access_logger.handle(record)


_record_factory = logging.getLogRecordFactory
_ACCESS_LINE = _access_log.__code__.co_firstlineno


def _loaded_user_id(request: HttpRequest) -> str | None:
    """The user's id if the request already loaded its user; never a database query.

    Reading ``request.user`` would load it (a query, and from async code a
    SynchronousOnlyOperation), so only a user already loaded is used.
    """
    state = request.__dict__
    user = state.get("_cached_user") or state.get("_acached_user")
    if user is None:
        lazy = state.get("user")
        if lazy is not None:
            wrapped = lazy.__dict__.get("_wrapped", lazy) if hasattr(lazy, "__dict__") else lazy
            if wrapped is not empty:
                user = wrapped
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return None if pk is None else str(pk)


def _end(
    request: HttpRequest, config: _Config, tracked: _Tracked | None, response: HttpResponseBase
) -> None:
    """Echo the request id and record the request (now, or when a stream closes)."""
    try:
        rid = getattr(request, "request_id", None)
        if rid is not None:
            response.headers.setdefault(config.header, rid)
    except Exception:
        _fault("request id header")
    if response.streaming and request.__dict__.get(_SUPPRESSED):
        _suppress_stream(response)
    if tracked is None or tracked.done:
        return
    try:
        tracked.route = route = route_label(request.resolver_match)
        code = response.status_code
        tracked.status = _STATUS_LABELS.get(code) or str(code)
        exc = request.__dict__.get(_EXCEPTION)
        if exc is not None:
            tracked.exc = exc
            if tracked.metrics is not None and not tracked.excluded:
                tracked.metrics.count_exception(route, exception_name(exc))
        if response.streaming:
            _complete_on_close(tracked, response)
            return
        tracked.body_bytes = 0 if tracked.method == "HEAD" else len(response.content)
    except Exception:
        _fault("request metrics (end)")
    tracked.complete()


def _abort(request: HttpRequest, tracked: _Tracked | None, exc: BaseException) -> None:
    """The rest of the stack raised instead of answering: record what became of it.

    Django turns exceptions into responses, so this happens only with
    DEBUG_PROPAGATE_EXCEPTIONS (a 500), when a worker is being killed (a 500),
    or under ASGI when the client went away and the view was cancelled
    (499, nginx's "client closed request"; not an exception of the app's).
    """
    if tracked is None or tracked.done:
        return
    try:
        tracked.route = route = route_label(request.resolver_match)
        if isinstance(exc, asyncio.CancelledError):
            tracked.status = "499"
        else:
            tracked.status = "500"
        if isinstance(exc, Exception):
            tracked.exc = request.__dict__.get(_EXCEPTION) or exc
            if tracked.metrics is not None and not tracked.excluded:
                tracked.metrics.count_exception(route, exception_name(tracked.exc))
    except Exception:
        _fault("request metrics (exception)")
    tracked.complete()


def _complete_on_close(tracked: _Tracked, response: HttpResponseBase) -> None:
    """For a streaming response: record when the server closes it, count bytes as sent.

    The body is watched while the server iterates it: an exception raised by
    the view's generator is counted (``http_server_exceptions_total``) and
    marks the span, though the status line has long been sent.
    """
    count = False
    if tracked.method == "HEAD":
        tracked.body_bytes = 0
    else:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            tracked.body_bytes = int(length)
        else:
            tracked.body_bytes = 0
            count = True
    # A FileResponse of known length keeps its file for the server's
    # wsgi.file_wrapper (sendfile): its body is not wrapped.
    if count or getattr(response, "file_to_stream", None) is None:
        content = response.streaming_content  # type: ignore[attr-defined]
        if getattr(response, "is_async", False):
            response.streaming_content = _watch_async(content, tracked, count)  # type: ignore[attr-defined]
        else:
            response.streaming_content = _watch_sync(content, tracked, count)  # type: ignore[attr-defined]
    close = response.close

    def close_and_record() -> None:
        try:
            close()
        finally:
            try:
                tracked.complete()
            except Exception:
                _fault("request metrics (stream close)")

    response.close = close_and_record  # type: ignore[method-assign]


_SUPPRESSED = "_observability_no_spans"


def _suppress_stream(response: HttpResponseBase) -> None:
    """Run each step of a streamed body with spans suppressed (excluded, exempt requests).

    A FileResponse of known length is left alone (sendfile; files make no spans).
    """
    try:
        if getattr(response, "file_to_stream", None) is not None:
            return
        content = response.streaming_content  # type: ignore[attr-defined]
        if getattr(response, "is_async", False):
            response.streaming_content = _no_spans_async(content)  # type: ignore[attr-defined]
        else:
            response.streaming_content = _no_spans_sync(content)  # type: ignore[attr-defined]
    except Exception:
        _fault("streamed body (no spans)")


def _no_spans_sync(content: Iterable[bytes]) -> Iterator[bytes]:
    iterator = iter(content)
    while True:
        token = suppress_spans()
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        finally:
            end_suppression(token)
        yield chunk


async def _no_spans_async(content: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    iterator = aiter(content)
    while True:
        token = suppress_spans()
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        finally:
            end_suppression(token)
        yield chunk


def _stream_failed(tracked: _Tracked, exc: Exception) -> None:
    """The body's generator raised: count it and record the request now.

    Now, not at close: an ASGI server whose response failed does not close it
    (Django's ASGIHandler closes only responses that were sent in full).
    """
    try:
        if tracked.done or tracked.exc is not None:
            return
        tracked.exc = exc
        if tracked.metrics is not None and not tracked.excluded:
            tracked.metrics.count_exception(tracked.route, exception_name(exc))
    except Exception:
        _fault("request metrics (stream error)")
    try:
        tracked.complete()
    except Exception:
        _fault("request metrics (stream error)")


def _watch_sync(content: Iterator[bytes], tracked: _Tracked, count: bool) -> Iterator[bytes]:
    try:
        for chunk in content:
            if count:
                tracked.body_bytes += len(chunk)  # type: ignore[operator]
            yield chunk
    except Exception as exc:
        _stream_failed(tracked, exc)
        raise


async def _watch_async(
    content: AsyncIterator[bytes], tracked: _Tracked, count: bool
) -> AsyncIterator[bytes]:
    try:
        async for chunk in content:
            if count:
                tracked.body_bytes += len(chunk)  # type: ignore[operator]
            yield chunk
    except Exception as exc:
        _stream_failed(tracked, exc)
        raise


def record_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``got_request_exception`` receiver: remember which exception became a 500.

    Django sends the signal once per unhandled exception, just before it turns
    the exception into a 500 response, with the exception being handled. The
    middleware counts it when the response comes back through it.
    """
    if request is None or not hasattr(request, _STATE):
        return
    exc = sys.exc_info()[1]
    if exc is not None:
        request.__dict__[_EXCEPTION] = exc


class ObservabilityMiddleware:
    """Request ids and request metrics; natively sync and async."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        config = _config or _get_config()
        if config.probes:
            kind = _probe_kind(request, config)
            if kind is not None:
                try:
                    from django_observability.health.views import answer_probe

                    return _with_request_id(request, config, answer_probe(request, kind))
                except Exception:
                    _fault("health probe")  # let the view answer instead
        tokens, tracked = _begin(request, config)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            _abort(request, tracked, exc)
            _reset(tokens)
            raise
        _end(request, config, tracked, response)
        _reset(tokens)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        config = _config or _get_config()
        if config.probes:
            kind = _probe_kind(request, config)
            if kind is not None:
                try:
                    from django_observability.health.views import aanswer_probe

                    return _with_request_id(request, config, await aanswer_probe(request, kind))
                except Exception:
                    _fault("health probe")  # let the view answer instead
        tokens, tracked = _begin(request, config)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            _abort(request, tracked, exc)
            _reset(tokens)
            raise
        _end(request, config, tracked, response)
        _reset(tokens)
        return response


def _with_request_id(
    request: HttpRequest, config: _Config, response: HttpResponseBase
) -> HttpResponseBase:
    """A probe answered here still echoes (or gets) a request id, as every response does."""
    try:
        rid = _request_id.from_meta(request.META, config.meta_key, config.trust_incoming)
        response.headers.setdefault(config.header, rid)
    except Exception:
        _fault("request id header")
    return response


def _reset(tokens: list[Any] | None) -> None:
    """Undo, in reverse order, the context changes ``_begin`` made."""
    if tokens is None:
        return
    try:
        if tokens[2] is not None:
            (_otel or _load_otel()).detach(tokens[2])
        _request_id._request.reset(tokens[1])
        _request_id._current.reset(tokens[0])
    except Exception:
        _fault("context reset")


# How many paths of @observability_exempt views the middleware remembers, and
# the longest it remembers (an exempt view with a <path:...> converter must not
# let clients fill memory with long unique paths).
EXEMPT_PATHS_CAP = 1024
EXEMPT_PATH_MAX_LENGTH = 256


def _learn_exempt(request: Any) -> None:
    """Remember that an exempt view answers this path: its next requests get no span.

    Only for a route without converters or groups (``health/``, not
    ``ping/<int:n>/``): the paths remembered are then the project's own, and
    clients cannot fill the set.
    """
    if getattr(request, "urlconf", None) is not None:
        return  # routed by a URLconf of its own (per host...): not ours to generalise
    match = getattr(request, "resolver_match", None)
    if match is None or match.args or getattr(match, "captured_kwargs", match.kwargs):
        return
    path = request.path_info
    paths = (_config or _get_config()).exempt_paths
    if len(path) <= EXEMPT_PATH_MAX_LENGTH and len(paths) < EXEMPT_PATHS_CAP:
        paths.add(path)


def _forget_exempt(request: Any) -> None:
    try:
        (_config or _get_config()).exempt_paths.discard(request.path_info)
    except Exception:
        _fault("exempt paths")


def _exempt(request: Any) -> Any:
    """An exempt view is about to run: leave its request out; the suppression token."""
    try:
        tracked = getattr(request, _STATE, None)
        if tracked is not None:
            tracked.exclude()
            _learn_exempt(request)
        # A streamed body runs after the view returns: the middleware keeps it
        # under the suppression too.
        request.__dict__[_SUPPRESSED] = True
        return suppress_spans()
    except Exception:
        _fault("exempt view")
        return None


_View = TypeVar("_View", bound=Callable[..., Any])


def observability_exempt(view: _View) -> _View:
    """Leave requests served by ``view`` out of the metrics, the spans and the access log.

    The app's own endpoints (``/metrics``, health) carry it; use it on your
    own views the same way. Works for sync and async views. The view's own
    queries and ``trace_operation`` blocks make no spans, nor does a streamed
    body while it is sent. The request may still get a server span (it starts
    before routing): for a route without converters the middleware remembers
    the path after its first request (up to ``EXEMPT_PATHS_CAP`` paths) and
    makes none for it again.
    """
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            token = _exempt(request)
            try:
                return await view(request, *args, **kwargs)
            finally:
                end_suppression(token)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(view)
        def sync_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            token = _exempt(request)
            try:
                return view(request, *args, **kwargs)
            finally:
                end_suppression(token)

        wrapper = sync_wrapper
    wrapper.observability_exempt = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


__all__ = ["ObservabilityMiddleware", "observability_exempt"]
