"""Liveness and readiness probes answered by the middleware, before the rest of the stack.

The kubelet probes the pod's IP over plain HTTP: host validation
(``ALLOWED_HOSTS``), HTTPS redirects, sessions and login requirements would
turn a healthy pod's probe into a 400 or a 301. So ``GET``/``HEAD`` of the
live and ready URLs are answered as soon as the middleware sees them (unless
``OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE`` is off), by the same evaluation
and rendering as the health views.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.http.response import HttpResponseBase

from django_observability.faults import fault
from django_observability.health.views import aanswer_probe, answer_probe

__all__ = ["aanswer", "answer", "probe_kind", "probe_paths"]

_PROBE_KINDS = frozenset({"live", "ready"})
_PROBE_METHODS = frozenset({"GET", "HEAD"})


def probe_paths(own_paths: dict[str, str]) -> dict[str, str]:
    """The probe URLs among the app's own (``exemption.own_paths``): path -> "live"/"ready"."""
    return {path: kind for path, kind in own_paths.items() if kind in _PROBE_KINDS}


def probe_kind(request: HttpRequest, probes: dict[str, str]) -> str | None:
    """ "live" or "ready" if ``request`` is a probe to answer here, else ``None``."""
    kind = probes.get(request.path_info)
    if kind is not None and request.method in _PROBE_METHODS:
        return kind
    return None


def answer(request: HttpRequest, kind: str) -> HttpResponseBase | None:
    """The probe's response; ``None`` after a fault (the view then answers instead)."""
    try:
        return answer_probe(request, kind)
    except Exception:
        fault("health probe")
        return None


async def aanswer(request: HttpRequest, kind: str) -> HttpResponseBase | None:
    """As :func:`answer`, from the async middleware."""
    try:
        return await aanswer_probe(request, kind)
    except Exception:
        fault("health probe")
        return None
