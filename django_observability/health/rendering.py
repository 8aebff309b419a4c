"""What a health answer says, and to whom: the health+json document and the text lines.

One rule, here and nowhere else, decides what a caller without details (a
stranger) is told: the overall status, each check's name, and the status of
each of its components. Nothing else: no ``componentId`` (a disk check's path,
a host name), no ``output`` (exception text), no ``observedValue``, no
``serviceId`` or ``releaseId`` (the service and its version), no ``system``
section. Checks report everything they know; they do not decide who may read it.

Callers with details (token, allowed address, staff user; the ``health``
management command) get the full document. Every field is described in
docs/health.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django_observability.conf import conf
from django_observability.health.base import FAIL, PASS, CheckResult

__all__ = ["LIVE", "READY", "REPORT", "render_json", "render_text"]

LIVE, READY, REPORT = "live", "ready", "report"
_DESCRIPTIONS = {LIVE: "liveness", READY: "readiness", REPORT: "health"}
_TEXT_TITLES = {LIVE: "livez", READY: "readyz", REPORT: "healthz"}


def render_json(
    kind: str, status: str, results: Sequence[CheckResult], details: bool
) -> dict[str, Any]:
    """The health+json document for ``kind``: in full with ``details``, else statuses only."""
    if not details:
        body: dict[str, Any] = {"status": status}
        if results:
            body["checks"] = {r.name: [{"status": c.status} for c in r.components] for r in results}
        return body
    body = {"status": status}
    release = conf.SERVICE_VERSION
    if release:
        body["releaseId"] = release
    body["serviceId"] = conf.SERVICE_NAME
    body["description"] = _DESCRIPTIONS[kind]
    if results:
        body["checks"] = {r.name: [c.as_dict() for c in r.components] for r in results}
    if kind == REPORT:
        from django_observability.health.builtin import system_summary

        body["system"] = system_summary()
    return body


def render_text(kind: str, status: str, results: Sequence[CheckResult], details: bool) -> str:
    """Kubernetes-style ``[+]name ok`` lines: one per component with ``details``, else per check."""
    lines = []
    for result in results:
        if details:
            for component in result.components:
                name = result.name
                if component.component_id is not None and len(result.components) > 1:
                    name = f"{name}:{component.component_id}"
                lines.append(_line(name, component.status, component.output))
        else:
            lines.append(_line(result.name, result.status, None))
    title = _TEXT_TITLES[kind]
    lines.append(f"{title} check {'failed' if status == FAIL else 'passed'}")
    return "\n".join(lines) + "\n"


def _line(name: str, status: str, output: str | None) -> str:
    if status == FAIL:
        return f"[-]{name} failed: {output or 'reason withheld'}"
    word = "ok" if status == PASS else "warn"
    return f"[+]{name} {word}: {output}" if output else f"[+]{name} {word}"
