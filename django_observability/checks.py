"""Django system checks (``manage.py check``). IDs are documented in docs/checks.md."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_observability.conf import SETTINGS, conf

MIDDLEWARE_PATH = "django_observability.middleware.ObservabilityMiddleware"

# Middleware that may stand before ours without a warning: they only time or
# trace the request and want to be outermost too.
ALLOWED_BEFORE = frozenset(
    {
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware",
    }
)


@register(Tags.compatibility)
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    count = middleware.count(MIDDLEWARE_PATH)
    if count == 0:
        return [
            Error(
                f"{MIDDLEWARE_PATH} is not in MIDDLEWARE.",
                hint="Add it as the first entry of MIDDLEWARE.",
                id="django_observability.E001",
            )
        ]
    if count > 1:
        return [
            Error(
                f"{MIDDLEWARE_PATH} is listed {count} times in MIDDLEWARE.",
                hint="List it once, first; twice would count every request twice.",
                id="django_observability.E002",
            )
        ]
    before = [m for m in middleware[: middleware.index(MIDDLEWARE_PATH)] if m not in ALLOWED_BEFORE]
    if before:
        return [
            Warning(
                f"{MIDDLEWARE_PATH} is not first in MIDDLEWARE; {', '.join(before)} "
                "run before it, so their time and their responses are not measured.",
                hint="Move it to the top of MIDDLEWARE.",
                id="django_observability.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every ``OBSERVABILITY_*`` setting the project sets, by its declared validator."""
    errors: list[CheckMessage] = []
    for setting in SETTINGS.values():
        if not setting.is_set():
            continue
        problem = setting.validate(setting.raw())
        if problem is not None:
            errors.append(
                Error(
                    f"{setting.setting} {problem}.", id=f"django_observability.{setting.check_id}"
                )
            )
    return errors


@register(Tags.security)
def check_metrics_protected(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    if conf.AUTH_TOKEN or conf.ALLOWED_IPS:
        return []
    return [
        Warning(
            "/metrics is readable by anyone: neither OBSERVABILITY_AUTH_TOKEN nor "
            "OBSERVABILITY_ALLOWED_IPS is set.",
            hint="Set a token for your scraper, or the addresses it scrapes from.",
            id="django_observability.W002",
        )
    ]


# The example value deploy/prometheus/django-metrics-token ships with.
EXAMPLE_TOKEN = "replace-me-with-the-OBSERVABILITY_AUTH_TOKEN-value"  # noqa: S105 - a public value
MIN_TOKEN_LENGTH = 16


@register(Tags.security)
def check_token_strength(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A token that is public (the example's) or short enough to guess."""
    if settings.DEBUG:
        return []
    token = conf.AUTH_TOKEN
    if (
        not isinstance(token, str)
        or not token
        or SETTINGS["AUTH_TOKEN"].validate(token) is not None
    ):
        return []  # unset, or reported by check_settings
    if token == EXAMPLE_TOKEN or token.lower().startswith("replace-me"):
        problem = "is the example value from deploy/prometheus/django-metrics-token"
    elif len(token) < MIN_TOKEN_LENGTH:
        problem = f"is shorter than {MIN_TOKEN_LENGTH} characters"
    else:
        return []
    return [
        Warning(
            f"OBSERVABILITY_AUTH_TOKEN {problem}: anyone can guess it and read /metrics.",
            hint='Use a long random value: python -c "import secrets; '
            'print(secrets.token_urlsafe(32))"',
            id="django_observability.W003",
        )
    ]


@register(Tags.compatibility)
def check_health_checks_load(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every configured health check can be imported and built with its options."""
    from django_observability.health.registry import build_check

    configured = conf.HEALTH_CHECKS
    if SETTINGS["HEALTH_CHECKS"].validate(configured) is not None:
        return []  # reported by check_settings
    errors: list[CheckMessage] = []
    for name, entry in configured.items():
        target, options = (entry[0], entry[1]) if isinstance(entry, (list, tuple)) else (entry, {})
        try:
            build_check(target, options)
        except Exception as exc:
            errors.append(
                Error(
                    f"Health check {name!r} ({target!r}) cannot be loaded: "
                    f"{type(exc).__name__}: {exc}",
                    id="django_observability.E039",
                )
            )
    return errors


_KIND_NAMES = {
    "live": "liveness probe",
    "ready": "readiness probe",
    "report": "health report",
    "metrics": "metrics endpoint",
}
_EARLY_SETTINGS = {
    "live": "OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE",
    "ready": "OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE",
    "metrics": "OBSERVABILITY_METRICS_IN_MIDDLEWARE",
}


@register(Tags.urls)
def check_urls_not_shadowed(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Each of the app's URLs, where it is mounted, reaches the app's view (not a catch-all).

    Silent when the app's URLs are not mounted at all: serving them is the
    project's choice. A URLconf that cannot be loaded is Django's own check to report.
    """
    from django_observability.mounting import shadowed, view_name
    from django_observability.probes import probe_paths

    try:
        found = shadowed()
    except Exception:
        return []
    in_middleware = MIDDLEWARE_PATH in (getattr(settings, "MIDDLEWARE", None) or [])
    warnings: list[CheckMessage] = []
    for mount in found:
        what = _KIND_NAMES[mount.kind]
        if mount.answered_by is None:
            answer = "resolves to no view"
        else:
            named = f" (URL name {mount.answered_by_name!r})" if mount.answered_by_name else ""
            answer = f"is answered by {view_name(mount.answered_by)}{named}"
        message = (
            f"{mount.path} {answer}, not by django_observability's {what}: "
            "a pattern listed before the app's URLs matches it first."
        )
        if in_middleware and probe_paths({mount.path: mount.kind}):
            setting = _EARLY_SETTINGS[mount.kind]
            message += (
                " ObservabilityMiddleware answers its GET and HEAD requests before URL "
                f"resolution all the same, but not with {setting} = False, nor other methods."
            )
        warnings.append(
            Warning(
                message,
                hint='Put path("", include("django_observability.urls")) before catch-all '
                "patterns (such as Wagtail's include(wagtail_urls), or a "
                're_path(r"^(?P<path>.*)$", ...)) in your URLconf.',
                id="django_observability.W020",
            )
        )
    return warnings
