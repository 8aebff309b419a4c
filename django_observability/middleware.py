"""``ObservabilityMiddleware``: the request path, sync and async; it orchestrates, owns no detail.

Put it first in ``MIDDLEWARE``. Per request it

* answers liveness and readiness probes and ``/metrics`` scrapes itself
  (:mod:`~django_observability.probes`);
* takes a valid incoming request id (``OBSERVABILITY_REQUEST_ID_HEADER``) or
  makes one (:mod:`~django_observability.request_id`), makes it and the request
  current (:mod:`~django_observability.context`) and echoes it on the response;
* leaves out what is exempt (:mod:`~django_observability.exemption`);
* starts the server span (:mod:`~django_observability.server_span`) and counts
  the request in ``http_server_active_requests``;
* when the response is done, records the span, the request metrics and the
  access-log line (:mod:`~django_observability.completion`); for streaming
  and file responses, when the server closes the response
  (:mod:`~django_observability.streaming`);
* counts exceptions that Django turned into a 500, by route and class.

Nothing here may break the user's request: a fault in the instrumentation is
logged (once per kind) and swallowed; the user's own exceptions pass through
unchanged after being counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from opentelemetry.context import detach

from django_observability import exemption, probes, request_id
from django_observability.access_log import access_logger
from django_observability.completion import complete
from django_observability.conf import valid_or_default
from django_observability.context import (
    RequestState,
    enter,
    leave,
    mark_no_spans,
    no_spans,
    request_id_of,
    state_of,
)
from django_observability.exemption import is_learned, observability_exempt
from django_observability.faults import fault
from django_observability.formats import exception_name
from django_observability.metrics import UNMATCHED, get_metrics, method_label, route_label
from django_observability.routes import series_route
from django_observability.server_span import start
from django_observability.streaming import complete_on_close, suppress_spans_in
from django_observability.tracing import get_tracer, suppress_spans

__all__ = ["ObservabilityMiddleware", "observability_exempt", "record_exception", "reset_config"]

_INFO = logging.INFO
_STATUS_LABELS = {code: str(code) for code in range(100, 600)}
# Module-level references: the request path looks them up as globals.
_from_meta = request_id.from_meta
_probe_kind = probes.probe_kind
_answer_probe = probes.answer
_aanswer_probe = probes.aanswer


class _Config:
    """The settings the middleware needs per request, read and checked once."""

    __slots__ = (
        "access_log",
        "exclude_prefixes",
        "extract_always",
        "header",
        "meta_key",
        "own_paths",
        "probes",
        "trust_incoming",
    )

    def __init__(self) -> None:
        self.header: str = valid_or_default("REQUEST_ID_HEADER")
        self.meta_key = request_id.meta_key(self.header)
        self.trust_incoming: bool = valid_or_default("REQUEST_ID_TRUST_INCOMING")
        self.exclude_prefixes: tuple[str, ...] = tuple(valid_or_default("EXCLUDE_PATHS"))
        self.access_log: bool = valid_or_default("ACCESS_LOG")
        own = exemption.own_paths()
        # The app's own endpoints: no metrics, no span, no access log line.
        self.own_paths = frozenset(own)
        # Answered before the rest of the stack (probes.py reads both opt-outs).
        self.probes: dict[str, str] = probes.probe_paths(own)
        # With the default propagators (W3C trace context and baggage), a
        # request without their headers has nothing to extract.
        propagators = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage")
        self.extract_always = {p.strip() for p in propagators.split(",")} - {
            "tracecontext",
            "baggage",
        } != set()


_config: _Config | None = None


def _get_config() -> _Config:
    global _config
    config = _config
    if config is None:
        config = _config = _Config()
    return config


def reset_config() -> None:
    """Forget the cached settings and the exempt paths learned under them.

    Called when an ``OBSERVABILITY_*`` setting or ``ROOT_URLCONF`` changes.
    """
    global _config
    _config = None
    exemption.forget_all()


def _begin(request: HttpRequest, config: _Config) -> tuple[Any, RequestState | None]:
    """Request id, in-flight accounting and the server span.

    Returns the context tokens to reset when the middleware returns, and the
    request's state (``None`` for an excluded request).
    """
    try:
        rid = _from_meta(request.META, config.meta_key, config.trust_incoming)
        # [request id token, request token, OpenTelemetry context token]
        tokens = enter(request, rid)
    except Exception:
        fault("request id")
        return None, None
    try:
        path = request.path_info
        if path in config.own_paths or (
            config.exclude_prefixes and path.startswith(config.exclude_prefixes)
        ):
            _no_spans(request, tokens)  # nor from what serves the request
            return tokens, None
        state = RequestState(request, get_metrics(), method_label(request.method), UNMATCHED)
    except Exception:
        fault("request metrics (start)")
        return tokens, None
    try:
        if is_learned(path):
            # An @observability_exempt view answered this path before: no span.
            # Its decorator still decides about metrics and the access log.
            state.presumed_exempt = True
            _no_spans(request, tokens)
        else:
            tracer = get_tracer()
            if tracer is not None:
                tokens[2] = start(request, tracer, state, config.extract_always, rid)
        state.log = config.access_log and access_logger.isEnabledFor(_INFO)
    except Exception:
        fault("request span (start)")
    return tokens, state


def _no_spans(request: HttpRequest, tokens: list[Any]) -> None:
    """No spans for this request: none of ours, none from its queries or streamed body."""
    tokens[2] = suppress_spans()
    mark_no_spans(request)


def _end(
    request: HttpRequest, config: _Config, state: RequestState | None, response: HttpResponseBase
) -> None:
    """Echo the request id and record the request (now, or when a stream closes)."""
    try:
        rid = request_id_of(request)
        if rid is not None:
            response.headers.setdefault(config.header, rid)
    except Exception:
        fault("request id header")
    if response.streaming and no_spans(request):
        suppress_spans_in(response)
    if state is None or state.done:
        return
    try:
        state.route = route = route_label(request.resolver_match)
        if state.refined_route is not None:
            route = series_route(state)
        state.series_route = route
        code = response.status_code
        state.status = _STATUS_LABELS.get(code) or str(code)
        exc = state.raised
        if exc is not None:
            state.exc = exc
            if state.metrics is not None and not state.excluded:
                state.metrics.count_exception(route, exception_name(exc))
        if response.streaming:
            complete_on_close(state, response)
            return
        state.body_bytes = 0 if state.method == "HEAD" else len(response.content)
    except Exception:
        fault("request metrics (end)")
    complete(state)


def _abort(request: HttpRequest, state: RequestState | None, exc: BaseException) -> None:
    """The rest of the stack raised instead of answering: record what became of it.

    Django turns exceptions into responses, so this happens only with
    DEBUG_PROPAGATE_EXCEPTIONS (a 500), when a worker is being killed (a 500),
    or under ASGI when the client went away and the view was cancelled
    (499, nginx's "client closed request"; not an exception of the app's).
    """
    if state is None or state.done:
        return
    try:
        state.route = route = route_label(request.resolver_match)
        if state.refined_route is not None:
            route = series_route(state)
        state.series_route = route
        if isinstance(exc, asyncio.CancelledError):
            state.status = "499"
        else:
            state.status = "500"
        if isinstance(exc, Exception):
            state.exc = state.raised or exc
            if state.metrics is not None and not state.excluded:
                state.metrics.count_exception(route, exception_name(state.exc))
    except Exception:
        fault("request metrics (exception)")
    complete(state)


def _reset(tokens: list[Any] | None) -> None:
    """Undo, in reverse order, the context changes ``_begin`` made."""
    if tokens is None:
        return
    try:
        if tokens[2] is not None:
            detach(tokens[2])
        leave(tokens)
    except Exception:
        fault("context reset")


def _with_request_id(
    request: HttpRequest, config: _Config, response: HttpResponseBase
) -> HttpResponseBase:
    """A probe answered here still echoes (or gets) a request id, as every response does."""
    try:
        rid = _from_meta(request.META, config.meta_key, config.trust_incoming)
        response.headers.setdefault(config.header, rid)
    except Exception:
        fault("request id header")
    return response


def record_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``got_request_exception`` receiver: remember which exception became a 500.

    Django sends the signal once per unhandled exception, just before it turns
    the exception into a 500 response, with the exception being handled. The
    middleware counts it when the response comes back through it.
    """
    state = state_of(request)
    if state is None:
        return
    exc = sys.exc_info()[1]
    if exc is not None:
        state.raised = exc


class ObservabilityMiddleware:
    """Request ids, metrics, the server span and the access log; natively sync and async."""

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
            kind = _probe_kind(request, config.probes)
            if kind is not None:
                answer = _answer_probe(request, kind)
                if answer is not None:
                    return _with_request_id(request, config, answer)
        tokens, state = _begin(request, config)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            _abort(request, state, exc)
            _reset(tokens)
            raise
        _end(request, config, state, response)
        _reset(tokens)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        config = _config or _get_config()
        if config.probes:
            kind = _probe_kind(request, config.probes)
            if kind is not None:
                answer = await _aanswer_probe(request, kind)
                if answer is not None:
                    return _with_request_id(request, config, answer)
        tokens, state = _begin(request, config)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            _abort(request, state, exc)
            _reset(tokens)
            raise
        _end(request, config, state, response)
        _reset(tokens)
        return response
