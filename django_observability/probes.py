"""Requests the middleware answers itself, before the rest of the stack: the probes and the scrape.

The kubelet probes the pod's IP over plain HTTP, and Prometheus scrapes it the
same way: host validation (``ALLOWED_HOSTS``), HTTPS redirects, sessions and
login requirements would turn a healthy pod's probe or scrape into a 400 or a
301. So ``GET``/``HEAD`` of the live and ready URLs (unless
``OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE`` is off) and of ``/metrics``
(unless ``OBSERVABILITY_METRICS_IN_MIDDLEWARE`` is off) are answered as soon
as the middleware sees them, by the same code as their views: the health
evaluation and rendering, and for ``/metrics`` the same protection (token or
allowed address, compared in constant time) and exposition.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from django_observability.conf import valid_or_default
from django_observability.faults import fault
from django_observability.health.views import aanswer_probe, answer_probe
from django_observability.views import answer_scrape

__all__ = ["aanswer", "answer", "probe_kind", "probe_paths"]

_PROBE_KINDS = frozenset({"live", "ready"})
METRICS = "metrics"
_METHODS = frozenset({"GET", "HEAD"})
# What a fault is logged as (once per kind): a probe's, or the scrape's.
_FAULTS = {False: "health probe", True: "metrics scrape (early answer)"}


def probe_paths(own_paths: dict[str, str]) -> dict[str, str]:
    """The URLs among the app's own (``exemption.own_paths``) to answer early: path -> kind.

    "live"/"ready" with ``OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE``, "metrics"
    with ``OBSERVABILITY_METRICS_IN_MIDDLEWARE``.
    """
    kinds: set[str] = set()
    if valid_or_default("HEALTH_PROBES_IN_MIDDLEWARE"):
        kinds |= _PROBE_KINDS
    if valid_or_default("METRICS_IN_MIDDLEWARE"):
        kinds.add(METRICS)
    return {path: kind for path, kind in own_paths.items() if kind in kinds}


def probe_kind(request: HttpRequest, probes: dict[str, str]) -> str | None:
    """ "live", "ready" or "metrics" if ``request`` is one to answer here, else ``None``."""
    kind = probes.get(request.path_info)
    if kind is not None and request.method in _METHODS:
        return kind
    return None


def answer(request: HttpRequest, kind: str) -> HttpResponseBase | None:
    """The response; ``None`` after a fault (the view then answers instead)."""
    try:
        if kind == METRICS:
            return answer_scrape(request)
        return answer_probe(request, kind)
    except Exception:
        fault(_FAULTS[kind == METRICS])
        return None


async def aanswer(request: HttpRequest, kind: str) -> HttpResponseBase | None:
    """As :func:`answer`, from the async middleware.

    The exposition is sync (it reads the multiprocess files): it runs where
    Django would run the sync view.
    """
    try:
        if kind == METRICS:
            return await sync_to_async(answer_scrape)(request)
        return await aanswer_probe(request, kind)
    except Exception:
        fault(_FAULTS[kind == METRICS])
        return None
