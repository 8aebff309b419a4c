"""Liveness, readiness and the full health report.

Answers are ``application/health+json`` (IETF draft "Health Check Response
Format for HTTP APIs"), or Kubernetes-style ``[+]name ok`` lines for humans
(``?verbose``, or ``Accept: text/plain``). ``pass`` and ``warn`` answer 200,
``fail`` 503. Here: who gets details, evaluation and the HTTP answer; what the
answer says to whom is :mod:`django_observability.health.rendering`'s
(``render_json`` and ``render_text`` stay importable from here).

Liveness and readiness are normally answered by ``ObservabilityMiddleware``
itself (``django_observability.probes``, through :func:`answer_probe`), before
host validation and HTTPS redirects, because the kubelet probes the pod IP over
plain HTTP. The views below serve them too, for projects that turn that off.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from django_observability.conf import conf, valid_or_default
from django_observability.exemption import observability_exempt
from django_observability.health import registry
from django_observability.health.base import FAIL, PASS, CheckResult, Component, worst
from django_observability.health.rendering import LIVE, READY, REPORT, render_json, render_text
from django_observability.health.runner import runner
from django_observability.metrics import get_metrics
from django_observability.permissions import credentials_match, head_without_body

try:  # Django >= 5.1
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover

    def login_not_required(view):  # type: ignore[no-untyped-def]
        return view


logger = logging.getLogger("django_observability.health")

CONTENT_TYPE = "application/health+json"


# --- who sees details -------------------------------------------------------------


def _policy() -> str:
    return valid_or_default("HEALTH_SHOW_DETAILS")


def details_allowed(request: HttpRequest) -> bool:
    """Details for this caller, judged without the session (token or address only)."""
    policy = _policy()
    if policy == "always":
        return True
    if policy == "never":
        return False
    return credentials_match(request)


async def adetails_allowed(request: HttpRequest) -> bool:
    """Details for this caller: token, address, or a logged-in staff user."""
    if details_allowed(request):
        return True
    if _policy() != "authorized" or not hasattr(request, "auser"):
        return False
    user = await request.auser()
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


# --- draining ---------------------------------------------------------------------


def draining() -> bool:
    """Whether this pod is shutting down (the drain marker file exists)."""
    return os.path.exists(conf.HEALTH_DRAIN_FILE)


def _drain_result() -> CheckResult:
    return CheckResult(
        "shutdown",
        [Component(status=FAIL, output="shutting down: draining before exit")],
    )


# --- evaluation -------------------------------------------------------------------


def _ready_outcome(results: list[CheckResult]) -> tuple[str, list[CheckResult]]:
    if draining():
        results = [*results, _drain_result()]
    status = worst(r.status for r in results)
    try:
        metrics = get_metrics()
        if metrics is not None:
            metrics.set_ready(status != FAIL)
    except Exception:  # never fail a probe over a gauge
        logger.exception("could not record health_ready")
    return status, results


def evaluate(kind: str) -> tuple[str, list[CheckResult]]:
    """Overall status and results for ``kind``, blocking (at most the deadline)."""
    if kind == LIVE:
        return PASS, []
    if kind == READY:
        return _ready_outcome(runner.evaluate(registry.readiness_specs()))
    results = runner.evaluate(list(registry.all_specs().values()))
    return worst(r.status for r in results), results


async def aevaluate(kind: str) -> tuple[str, list[CheckResult]]:
    """As :func:`evaluate`, without blocking the event loop."""
    if kind == LIVE:
        return PASS, []
    if kind == READY:
        return _ready_outcome(await runner.aevaluate(registry.readiness_specs()))
    results = await runner.aevaluate(list(registry.all_specs().values()))
    return worst(r.status for r in results), results


# --- rendering --------------------------------------------------------------------


def _wants_text(request: HttpRequest) -> bool:
    if "verbose" in request.GET:
        return True
    accept = request.META.get("HTTP_ACCEPT", "")
    return "text/plain" in accept and "json" not in accept


def render(
    request: HttpRequest,
    kind: str,
    status: str,
    results: Sequence[CheckResult],
    details: bool,
) -> HttpResponse:
    code = 503 if status == FAIL else 200
    if _wants_text(request):
        response = HttpResponse(
            render_text(kind, status, results, details),
            status=code,
            content_type="text/plain; charset=utf-8",
        )
    else:
        body = render_json(kind, status, results, details)
        response = HttpResponse(
            json.dumps(body, separators=(",", ":")), status=code, content_type=CONTENT_TYPE
        )
    add_never_cache_headers(response)
    head_without_body(request, response)
    # A failing probe is an expected answer, not a server error: keep it out of
    # Django's "django.request" error log (the runner logs status changes).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


# --- answering ----------------------------------------------------------------------


def answer_probe(request: HttpRequest, kind: str) -> HttpResponse:
    """Liveness or readiness from the (sync) middleware: no session, no host check."""
    status, results = evaluate(kind)
    return render(request, kind, status, results, details_allowed(request))


async def aanswer_probe(request: HttpRequest, kind: str) -> HttpResponse:
    """As :func:`answer_probe`, from the async middleware."""
    status, results = await aevaluate(kind)
    return render(request, kind, status, results, details_allowed(request))


def _health_view(kind: str) -> Any:
    @observability_exempt
    @csrf_exempt
    @login_not_required
    @require_safe
    async def view(request: HttpRequest) -> HttpResponse:
        status, results = await aevaluate(kind)
        return render(request, kind, status, results, await adetails_allowed(request))

    view.__name__ = view.__qualname__ = f"health_{kind}"
    return view


live = _health_view(LIVE)
ready = _health_view(READY)
report = _health_view(REPORT)
