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
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from django_observability import request_id as _request_id
from django_observability.conf import valid_or_default
from django_observability.metrics import (
    Metrics,
    exception_name,
    get_metrics,
    method_label,
    route_label,
)

logger = logging.getLogger("django_observability")

# Attributes we set on the request. Private: the public one is request_id.
_STATE = "_observability"
_EXCEPTION = "_observability_exception"

_perf_counter = time.perf_counter
_STATUS_LABELS = {code: str(code) for code in range(100, 600)}


class _Config:
    """The settings the middleware needs per request, read and checked once."""

    __slots__ = ("exclude_prefixes", "header", "meta_key", "probes", "trust_incoming")

    def __init__(self) -> None:
        self.header: str = valid_or_default("REQUEST_ID_HEADER", "X-Request-ID")
        self.meta_key = _request_id.meta_key(self.header)
        self.trust_incoming: bool = valid_or_default("REQUEST_ID_TRUST_INCOMING", True)
        self.exclude_prefixes: tuple[str, ...] = tuple(valid_or_default("EXCLUDE_PATHS", ()))
        self.probes: dict[str, str] = (
            _probe_paths() if valid_or_default("HEALTH_PROBES_IN_MIDDLEWARE", True) else {}
        )


_PROBE_METHODS = frozenset({"GET", "HEAD"})


def _probe_paths() -> dict[str, str]:
    """``path_info`` of the liveness and readiness URLs -> "live" / "ready".

    Found by URL name, wherever ``django_observability.urls`` is mounted; empty
    when it is not.
    """
    from django.urls import NoReverseMatch, get_script_prefix, reverse

    paths = {}
    prefix = get_script_prefix()
    for name, kind in (("health_live", "live"), ("health_ready", "ready")):
        try:
            path = reverse(f"django_observability:{name}")
        except NoReverseMatch:
            continue
        except Exception:
            _fault("health probe URLs")
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
    """Metrics state of one request, from the first middleware call to completion."""

    __slots__ = ("active", "body_bytes", "done", "method", "metrics", "route", "start", "status")

    def __init__(self, metrics: Metrics, method: str) -> None:
        self.metrics = metrics
        self.method = method
        self.active = metrics.active_child(method)
        self.active.inc()
        self.done = False
        self.route = ""
        self.status = ""
        self.body_bytes: int | None = None
        self.start = _perf_counter()

    def exclude(self) -> None:
        """Drop this request from the metrics (an excluded view is serving it)."""
        if not self.done:
            self.done = True
            self.active.dec()

    def complete(self) -> None:
        """Record the finished request; safe to call more than once."""
        if self.done:
            return
        self.done = True
        try:
            self.metrics.observe(
                self.method,
                self.route,
                self.status,
                _perf_counter() - self.start,
                self.body_bytes,
            )
        finally:
            self.active.dec()


def _begin(request: HttpRequest, config: _Config) -> tuple[Any, _Tracked | None]:
    """Request id and in-flight accounting; returns (contextvar token, tracked state)."""
    try:
        rid = _request_id.from_meta(request.META, config.meta_key, config.trust_incoming)
        request.request_id = rid  # type: ignore[attr-defined]
        token = _request_id._current.set(rid)
    except Exception:
        _fault("request id")
        return None, None
    try:
        metrics = get_metrics()
        if metrics is None or (
            config.exclude_prefixes and request.path_info.startswith(config.exclude_prefixes)
        ):
            return token, None
        tracked = _Tracked(metrics, method_label(request.method))
        setattr(request, _STATE, tracked)
        return token, tracked
    except Exception:
        _fault("request metrics (start)")
        return token, None


def _end(
    request: HttpRequest, config: _Config, tracked: _Tracked | None, response: HttpResponseBase
) -> None:
    """Echo the request id and record the metrics (now, or when a stream closes)."""
    try:
        rid = getattr(request, "request_id", None)
        if rid is not None:
            response.headers.setdefault(config.header, rid)
    except Exception:
        _fault("request id header")
    if tracked is None or tracked.done:
        return
    try:
        tracked.route = route = route_label(request.resolver_match)
        code = response.status_code
        tracked.status = _STATUS_LABELS.get(code) or str(code)
        exc = request.__dict__.get(_EXCEPTION)
        if exc is not None:
            tracked.metrics.count_exception(route, exc)
        if response.streaming:
            _complete_on_close(tracked, response)
            return
        tracked.body_bytes = 0 if tracked.method == "HEAD" else len(response.content)
        tracked.complete()
    except Exception:
        _fault("request metrics (end)")
        _give_up(tracked)


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
            name = request.__dict__.get(_EXCEPTION) or exception_name(exc)
            tracked.metrics.count_exception(route, name)
        tracked.complete()
    except Exception:
        _fault("request metrics (exception)")
        _give_up(tracked)


def _give_up(tracked: _Tracked) -> None:
    # Never leave the in-flight gauge counting a request we failed to record.
    try:
        tracked.exclude()
    except Exception:
        _fault("in-flight gauge")


def _complete_on_close(tracked: _Tracked, response: HttpResponseBase) -> None:
    """For a streaming response: record when the server closes it, count bytes as sent."""
    if tracked.method == "HEAD":
        tracked.body_bytes = 0
    else:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            tracked.body_bytes = int(length)
        else:
            tracked.body_bytes = 0
            if getattr(response, "is_async", False):
                response.streaming_content = _count_async(response.streaming_content, tracked)  # type: ignore[attr-defined]
            else:
                response.streaming_content = _count_sync(response.streaming_content, tracked)  # type: ignore[attr-defined]
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


def _count_sync(content: Iterator[bytes], tracked: _Tracked) -> Iterator[bytes]:
    for chunk in content:
        tracked.body_bytes += len(chunk)  # type: ignore[operator]
        yield chunk


async def _count_async(content: AsyncIterator[bytes], tracked: _Tracked) -> AsyncIterator[bytes]:
    async for chunk in content:
        tracked.body_bytes += len(chunk)  # type: ignore[operator]
        yield chunk


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
        try:
            request.__dict__[_EXCEPTION] = exception_name(exc)
        except Exception:
            _fault("exception receiver")


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

                    return answer_probe(request, kind)
                except Exception:
                    _fault("health probe")  # let the view answer instead
        token, tracked = _begin(request, config)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            _abort(request, tracked, exc)
            _reset(token)
            raise
        _end(request, config, tracked, response)
        _reset(token)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        config = _config or _get_config()
        if config.probes:
            kind = _probe_kind(request, config)
            if kind is not None:
                try:
                    from django_observability.health.views import aanswer_probe

                    return await aanswer_probe(request, kind)
                except Exception:
                    _fault("health probe")  # let the view answer instead
        token, tracked = _begin(request, config)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            _abort(request, tracked, exc)
            _reset(token)
            raise
        _end(request, config, tracked, response)
        _reset(token)
        return response


def _reset(token: Any) -> None:
    # try/except rather than contextlib.suppress: this runs on every request.
    if token is not None:
        try:  # noqa: SIM105
            _request_id._current.reset(token)
        except ValueError:
            # Created in another context (a response finished elsewhere).
            pass


_View = TypeVar("_View", bound=Callable[..., Any])


def observability_exempt(view: _View) -> _View:
    """Leave requests served by ``view`` out of the request metrics.

    The app's own endpoints (``/metrics``, health) carry it; use it on your
    own views the same way. Works for sync and async views.
    """

    def exclude(request: Any) -> None:
        tracked = getattr(request, _STATE, None)
        if tracked is not None:
            tracked.exclude()

    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            exclude(request)
            return await view(request, *args, **kwargs)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(view)
        def sync_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            exclude(request)
            return view(request, *args, **kwargs)

        wrapper = sync_wrapper
    wrapper.observability_exempt = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


__all__ = ["ObservabilityMiddleware", "observability_exempt"]
