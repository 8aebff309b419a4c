"""A request's ``route`` label: the URL pattern it matched, or a project's refinement of it.

A catch-all view serves many kinds of page from one URL pattern (Wagtail's
page serving: every page of the site is one ``route`` series).
:func:`refine_route` lets the project name the series a request belongs to
(its page type, say), from the view or from a hook that runs before it
(Wagtail's ``before_serve_page``).

A refined label replaces the URL pattern in the request metrics
(``http_server_request_duration_seconds``, ``http_server_response_body_size_bytes``,
``http_server_exceptions_total``) and in the access log's ``http.route``.
The server span keeps the URL pattern as its name and ``http.route`` (the
semantic conventions define ``http.route`` as the matched template) and
carries the refined label as ``django_observability.route``.

Refined labels come from the project's code and data, not from the URLconf,
so they are capped like every such label: at most
``OBSERVABILITY_METRICS_LABEL_CAP`` distinct refined values (shared by the
worker processes in multiprocess mode), the rest counted as ``_other``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django_observability.conf import valid_or_default
from django_observability.context import RequestState, current_request, state_of
from django_observability.metrics import CappedLabel, Metrics

__all__ = ["MAX_LENGTH", "refine_route", "series_route"]

#: Longer refined labels are cut to this many characters.
MAX_LENGTH = 200


def refine_route(request: Any, label: str | None) -> None:
    """Name the ``route`` series of the request being served: ``label`` instead of its URL pattern.

    Call it from the view, or from code that runs for the request before the
    response is returned (a Wagtail ``before_serve_page`` hook, a middleware
    below ours). ``request`` is the request being served (an API framework's
    request wrapper is accepted: the request being served in this context is
    used). ``None`` or an empty label undoes an earlier refinement. A request
    the app does not measure is left alone. Never raises.

    Choose labels from a small, fixed set (page types, not page titles): past
    ``OBSERVABILITY_METRICS_LABEL_CAP`` distinct values, new ones are counted
    as ``_other``.
    """
    state = state_of(request) or state_of(current_request())
    if state is None:
        return
    if label is None or not isinstance(label, str) or not label:
        state.refined_route = None
    else:
        state.refined_route = label[:MAX_LENGTH]


class _RefinedCap:
    """The cap on refined labels, one per set of instruments (made again with them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bound: tuple[Metrics, CappedLabel] | None = None

    def __call__(self, metrics: Metrics, label: str) -> str:
        bound = self._bound
        if bound is None or bound[0] is not metrics:
            with self._lock:
                bound = self._bound
                if bound is None or bound[0] is not metrics:
                    name = f"{metrics.namespace}_route" if metrics.namespace else "route"
                    capped = CappedLabel(
                        f"{name}_refined",
                        valid_or_default("METRICS_LABEL_CAP"),
                        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
                    )
                    bound = self._bound = (metrics, capped)
        return bound[1](label)


_cap = _RefinedCap()


def series_route(state: RequestState) -> str:
    """The ``route`` of the request's metric series: its refinement (capped), else its pattern."""
    refined = state.refined_route
    if refined is None:
        return state.route
    metrics = state.metrics
    return refined if metrics is None else _cap(metrics, refined)
