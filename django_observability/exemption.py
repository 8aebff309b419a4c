"""Which requests are left out of the metrics, the spans and the access log.

Three kinds, all decided here:

* the app's own endpoints (``/metrics``, health), found by URL name wherever
  ``django_observability.urls`` is mounted (:func:`own_paths`);
* ``OBSERVABILITY_EXCLUDE_PATHS`` prefixes (read by the middleware with its
  other settings);
* views decorated with :func:`observability_exempt`, and the paths such views
  answered, remembered (bounded) so that their next requests start no server
  span either.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction

from django_observability import context
from django_observability.faults import fault
from django_observability.tracing import end_suppression, suppress_spans

__all__ = [
    "EXEMPT_PATHS_CAP",
    "EXEMPT_PATH_MAX_LENGTH",
    "forget",
    "forget_all",
    "is_learned",
    "learn_path",
    "learned_paths",
    "observability_exempt",
    "own_paths",
]

# How many paths of @observability_exempt views are remembered, and the
# longest remembered (an exempt view with a <path:...> converter must not let
# clients fill memory with long unique paths).
EXEMPT_PATHS_CAP = 1024
EXEMPT_PATH_MAX_LENGTH = 256

# Paths that an @observability_exempt view answered (learned, bounded). One set
# for the life of the process, cleared in place, so that is_learned stays bound.
_learned: set[str] = set()

#: Whether ``path`` was answered by an exempt view before (no server span for it).
is_learned: Callable[[str], bool] = _learned.__contains__

_OWN_URL_NAMES = (
    ("health_live", "live"),
    ("health_ready", "ready"),
    ("health", "report"),
    ("metrics", "metrics"),
)


def own_paths() -> dict[str, str]:
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
            fault("the app's own URLs")
            continue
        if path.startswith(prefix):
            path = "/" + path[len(prefix) :]
        paths[path] = kind
    return paths


def learned_paths() -> frozenset[str]:
    """The paths remembered as answered by exempt views (a copy)."""
    return frozenset(_learned)


def forget(request: Any) -> None:
    """The view that answered ``request`` was not exempt after all: trace its path again."""
    try:
        _learned.discard(request.path_info)
    except Exception:
        fault("exempt paths")


def forget_all() -> None:
    """Forget every learned path (the URLconf or the settings changed)."""
    _learned.clear()


def _learn(request: Any) -> None:
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
    learn_path(request.path_info)


def learn_path(path: str) -> bool:
    """Remember ``path`` as answered by an exempt view, within the bounds; whether it is.

    Up to ``EXEMPT_PATHS_CAP`` paths of at most ``EXEMPT_PATH_MAX_LENGTH``
    characters; the middleware starts no server span for them.
    """
    if len(path) <= EXEMPT_PATH_MAX_LENGTH and len(_learned) < EXEMPT_PATHS_CAP:
        _learned.add(path)
    return path in _learned


def _exempt(request: Any) -> Any:
    """An exempt view is about to run: leave its request out; the suppression token."""
    try:
        state = context.state_of(request)
        if state is not None:
            state.exclude()
            _learn(request)
        # A streamed body runs after the view returns: the middleware keeps it
        # under the suppression too.
        context.mark_no_spans(request)
        return suppress_spans()
    except Exception:
        fault("exempt view")
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
