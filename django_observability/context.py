"""The request being served and what the app keeps about it, reached through functions.

One owner for the per-request facts that several modules need:

* the request id and the request itself, in context variables, so that code
  serving the request (sync or async, through ``sync_to_async`` too) finds
  them without being handed the request: :func:`get_request_id`,
  :func:`current_request`;
* the per-request state (:class:`RequestState`: metrics, span, access-log
  facts), kept on the request: :func:`state_of`, :func:`span_ids`,
  :func:`count_query`, :func:`count_cache`;
* the marks a request carries (no spans for it);
* the id of the request's user, read without a database query:
  :func:`loaded_user_id`, :func:`user_id`.

Other modules never read the request's attributes by name: they call these
functions, so the names can change here alone.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from django.utils.functional import empty

from django_observability.formats import hex_ids

__all__ = [
    "REQUEST_ID",
    "RequestState",
    "count_cache",
    "count_query",
    "current_request",
    "enter",
    "get_request_id",
    "leave",
    "loaded_user_id",
    "mark_no_spans",
    "no_spans",
    "request_id_of",
    "span_ids",
    "state_of",
    "user_id",
]

#: The id of the request being served in this context (``None`` outside one).
#: Public so that work run outside a request (a test, a task runner) can carry
#: an id: ``token = REQUEST_ID.set("rid")`` ... ``REQUEST_ID.reset(token)``.
REQUEST_ID: ContextVar[str | None] = ContextVar("django_observability_request_id", default=None)

# The request being served, for records made out of the view's reach (model
# signals, queries).
_REQUEST: ContextVar[Any] = ContextVar("django_observability_request", default=None)

# What we keep on the request (private: the public attribute is request_id).
# The names are read only in this module.
_STATE = "_observability"
_NO_SPANS = "_observability_no_spans"

_perf_counter = time.perf_counter
_set_request_id = REQUEST_ID.set
_set_request = _REQUEST.set
_reset_request_id = REQUEST_ID.reset
_reset_request = _REQUEST.reset
_current_request = _REQUEST.get


def get_request_id() -> str | None:
    """The id of the request being served in this context, or ``None`` outside a request."""
    return REQUEST_ID.get()


def current_request() -> Any:
    """The request being served in this context, or ``None``."""
    return _REQUEST.get()


def request_id_of(request: Any) -> str | None:
    """The id the middleware gave ``request`` (``request.request_id``), or ``None``.

    For code that holds the request after its context ended (a streamed
    body's last line, ``django.request`` records).
    """
    return getattr(request, "request_id", None)


def enter(request: Any, request_id: str) -> list[Any]:
    """Make ``request`` and its id current, and expose the id as ``request.request_id``.

    Returns the tokens for :func:`leave`: ``[request id, request, slot]``; the
    third slot takes the OpenTelemetry context token the caller attaches for
    the request (its server span, or the suppression of spans).
    """
    request.request_id = request_id
    return [_set_request_id(request_id), _set_request(request), None]


def leave(tokens: list[Any]) -> None:
    """Undo :func:`enter` (the caller detaches its OpenTelemetry token, the third slot, first)."""
    _reset_request(tokens[1])
    _reset_request_id(tokens[0])


class RequestState:
    """What the app records about one request, from the middleware's first call to completion.

    Made by the middleware for each request it measures and kept on the
    request (:func:`state_of`). Each part (metrics, span, access log) may be
    absent. The recording itself is ``completion.complete``'s; this class only
    holds the facts and formats the span's ids.
    """

    __slots__ = (
        "active",
        "body_bytes",
        "cache_hits",
        "cache_misses",
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
        "raised",
        "refined_route",
        "request",
        "route",
        "series_route",
        "span",
        "start",
        "status",
    )

    def __init__(self, request: Any, metrics: Any, method: str, route: str) -> None:
        self.request = request
        self.metrics = metrics
        self.method = method
        self.active = None
        if metrics is not None:
            self.active = metrics.active_child(method)
            self.active.inc()
        self.done = False
        self.excluded = False
        self.route = route  # the URL pattern it matched (the span's http.route)
        self.refined_route: str | None = None  # the project's label for it (routes.refine_route)
        # The route of its metric series and access line: refined_route, capped, else route.
        self.series_route = route
        self.status = ""
        self.body_bytes: int | None = None
        self.exc: BaseException | None = None
        self.raised: BaseException | None = None  # the exception Django turned into a 500
        self.span: Any = None
        self.context: Any = None  # the span's context, kept when the span is let go
        self.ids: tuple[str, str, bool] | bool | None = False  # False: not read yet
        self.owns_span = False
        self.presumed_exempt = False
        self.log = False
        self.queries: list[float] = [0, 0.0]  # [count, seconds] of the request's queries
        self.cache_hits = 0  # cache reads that found their key (get_many: per key)
        self.cache_misses = 0
        self.start = _perf_counter()
        request.__dict__[_STATE] = self

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
                trace_id, span_id = hex_ids(context)
                ids = (trace_id, span_id, bool(context.trace_flags.sampled))
            self.ids = ids
        return ids  # type: ignore[return-value]

    def sampled_ids(self) -> tuple[str, str, bool] | None:
        """:meth:`span_ids` if the span is sampled (what an exemplar may point to)."""
        ids = self.span_ids()
        return ids if ids is not None and ids[2] else None


def state_of(request: Any) -> RequestState | None:
    """The state the middleware keeps for ``request``; ``None`` if it does not measure it."""
    state = getattr(request, "__dict__", None)
    return state.get(_STATE) if isinstance(state, dict) else None


def span_ids(request: Any) -> tuple[str, str, bool] | None:
    """(trace id, span id, sampled) of the server span of ``request``, in hex, or ``None``.

    Works after the middleware has returned (Django logs a 4xx/5xx response
    about the request when its context is gone).
    """
    state = state_of(request)
    return None if state is None else state.span_ids()


def count_query(seconds: float) -> None:
    """Add one database query of ``seconds`` to the request being served (for its access line)."""
    request = _current_request()
    if request is not None:
        state = request.__dict__.get(_STATE)
        if state is not None:
            queries = state.queries
            queries[0] += 1
            queries[1] += seconds


def count_cache(hits: int, misses: int) -> None:
    """Add cache reads that hit and missed to the request being served (its access line, span)."""
    request = _current_request()
    if request is not None:
        state = request.__dict__.get(_STATE)
        if state is not None:
            state.cache_hits += hits
            state.cache_misses += misses


def mark_no_spans(request: Any) -> None:
    """Remember that ``request`` makes no spans (its streamed body included)."""
    request.__dict__[_NO_SPANS] = True


def no_spans(request: Any) -> bool:
    """Whether :func:`mark_no_spans` was called for ``request``."""
    return bool(request.__dict__.get(_NO_SPANS))


def user_id(user: Any) -> str | None:
    """The id of an authenticated user as a string; ``None`` for anonymous or no user."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return None if pk is None else str(pk)


def loaded_user_id(request: Any) -> str | None:
    """The id of the user the request ended with, if already loaded; never a database query.

    Reading ``request.user`` would load it (a query, and from async code a
    SynchronousOnlyOperation), so only a user already in hand is used, in
    this order:

    * a user that an API framework's authentication returned as
      ``request.auth`` (django-ninja keeps the result of its auth callback
      there, and leaves ``request.user`` alone);
    * ``request.user`` when something put a user object there (Django REST
      framework's authentication, ``login()``, ``logout()``) or evaluated the
      lazy one ``AuthenticationMiddleware`` set;
    * the user ``AuthenticationMiddleware`` cached (``request.user`` or
      ``await request.auser()``).

    So a request authenticated by a token during the view carries that user,
    not the anonymous session user the middleware saw first.
    """
    state = request.__dict__
    auth = _loaded(state.get("auth"))
    if auth is not None and _is_user_model(auth) and user_id(auth) is not None:
        return user_id(auth)
    user = _loaded(state.get("user"))
    if user is None:
        user = state.get("_cached_user") or state.get("_acached_user")
    return None if user is None else user_id(user)


def _loaded(value: Any) -> Any:
    """``value``, or the object a lazy ``value`` wraps; ``None`` if not evaluated yet.

    Never through ``isinstance`` or an attribute of a lazy object: either
    would evaluate it.
    """
    if value is None:
        return None
    own = getattr(value, "__dict__", None)
    if isinstance(own, dict) and "_wrapped" in own:
        wrapped = own["_wrapped"]
        return None if wrapped is empty else wrapped
    return value


def _is_user_model(value: Any) -> bool:
    """Whether ``value`` is a user model instance (not a token or a claims dict)."""
    from django.contrib.auth.base_user import AbstractBaseUser

    return isinstance(value, AbstractBaseUser)
