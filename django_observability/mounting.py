"""Where the app's URLs are mounted in the project's URLconf, and which view answers each there.

Django answers a path with the first pattern that matches it, so a catch-all
listed before ``include("django_observability.urls")`` (Wagtail's
``path("", include(wagtail_urls))``, a CMS page route, a
``re_path(r"^(?P<path>.*)$", ...)`` fallback) answers ``/health/`` itself,
silently. :func:`mounts` walks the URLconf for the app's own views, wherever
and however often they are mounted, and resolves each one's path the way a
request would; the system check ``django_observability.W020`` reports those
another view answers (:func:`shadowed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.exceptions import Resolver404
from django.utils.regex_helper import normalize

__all__ = ["Mount", "mounts", "own_views", "shadowed", "view_name"]


@dataclass(frozen=True)
class Mount:
    """One of the app's views as mounted: its path and what a request for that path reaches."""

    #: ``path_info`` of the mounted URL, such as ``/health/`` or ``/ops/metrics``.
    path: str
    #: "live", "ready", "report" or "metrics".
    kind: str
    #: The app's view mounted there.
    view: Callable[..., Any]
    #: The view a request for ``path`` reaches; ``None`` when it resolves to nothing.
    answered_by: Callable[..., Any] | None
    #: The URL name of the pattern that answers, if it has one.
    answered_by_name: str | None = None

    @property
    def is_shadowed(self) -> bool:
        return self.answered_by is not self.view


def own_views() -> dict[Callable[..., Any], str]:
    """The app's view callables -> "live", "ready", "report", "metrics"."""
    from django_observability import views
    from django_observability.health import views as health

    return {
        health.live: "live",
        health.ready: "ready",
        health.report: "report",
        views.metrics: "metrics",
    }


def _literal(pattern: Any) -> str | None:
    """The one path a pattern (or include prefix) matches; ``None`` if it takes parameters."""
    regex = pattern.regex
    forms = normalize(regex.pattern)
    if len(forms) != 1 or forms[0][1]:
        return None
    literal = forms[0][0] % {}
    # An optional part may have been dropped by ``normalize``: keep the literal
    # only if the pattern itself matches it.
    return literal if regex.match(literal) else None


def _walk(
    patterns: Iterable[Any], prefix: str, own: dict[Callable[..., Any], str]
) -> Iterable[tuple[str, Callable[..., Any], str]]:
    for entry in patterns:
        literal = _literal(entry.pattern)
        if literal is None:
            continue
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + literal, own)
        elif isinstance(entry, URLPattern) and entry.callback in own:
            yield prefix + literal, entry.callback, own[entry.callback]


def mounts(urlconf: str | None = None) -> list[Mount]:
    """Every mount of the app's views in ``urlconf`` (default ``ROOT_URLCONF``), resolved.

    Views mounted under a prefix that takes parameters (``<str:tenant>/``)
    have no single path and are left out.
    """
    resolver = get_resolver(urlconf)
    found = []
    for path, view, kind in _walk(resolver.url_patterns, "/", own_views()):
        try:
            match = resolver.resolve(path)
        except Resolver404:
            found.append(Mount(path, kind, view, None))
            continue
        name = match.view_name if match.url_name else None
        found.append(Mount(path, kind, view, match.func, name))
    return found


def shadowed(urlconf: str | None = None) -> list[Mount]:
    """The mounts of the app's views that a request reaches some other view for."""
    return [mount for mount in mounts(urlconf) if mount.is_shadowed]


def view_name(view: Callable[..., Any] | None) -> str:
    """A view's dotted name, as a person would look it up (``wagtail.views.serve``)."""
    if view is None:
        return "no view"
    target = getattr(view, "view_class", None) or view
    module = getattr(target, "__module__", None) or "?"
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{name}"
