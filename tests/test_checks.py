import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

MW = "django_observability.middleware.ObservabilityMiddleware"


def ids(tags=None):
    return sorted(m.id for m in run_checks(tags=tags) if m.id.startswith("django_observability"))


def test_project_passes_check_command():
    call_command("check", fail_level="WARNING")


@override_settings(MIDDLEWARE=["django.middleware.common.CommonMiddleware"])
def test_e001_middleware_missing():
    assert ids() == ["django_observability.E001"]


@override_settings(MIDDLEWARE=[MW, "django.middleware.common.CommonMiddleware", MW])
def test_e002_middleware_twice():
    assert ids() == ["django_observability.E002"]


@override_settings(MIDDLEWARE=["django.middleware.common.CommonMiddleware", MW])
def test_w001_not_first():
    (message,) = [m for m in run_checks() if m.id == "django_observability.W001"]
    assert "django.middleware.common.CommonMiddleware" in message.msg


@pytest.mark.parametrize(
    "first",
    [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware",
    ],
)
def test_timing_middleware_may_stand_before(first):
    with override_settings(MIDDLEWARE=[first, MW]):
        assert ids() == []


@override_settings(DEBUG=False, OBSERVABILITY_AUTH_TOKEN=None, OBSERVABILITY_ALLOWED_IPS=[])
def test_w002_public_metrics_without_debug():
    assert ids() == ["django_observability.W002"]
    with override_settings(DEBUG=True):
        assert ids() == []
    with override_settings(OBSERVABILITY_ALLOWED_IPS=["10.0.0.0/8"]):
        assert ids() == []


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("replace-me-with-the-OBSERVABILITY_AUTH_TOKEN-value", ["django_observability.W003"]),
        ("REPLACE-ME-later-with-something-long", ["django_observability.W003"]),
        ("short-token", ["django_observability.W003"]),
        ("Zm9vYmFyYmF6cXV4LXNlY3JldC12YWx1ZQ", []),
    ],
)
def test_w003_guessable_token(token, expected):
    with override_settings(DEBUG=False, OBSERVABILITY_AUTH_TOKEN=token):
        assert ids() == expected
    with override_settings(DEBUG=True, OBSERVABILITY_AUTH_TOKEN=token):
        assert ids() == []


def test_w003_knows_the_example_file():
    from django_observability.checks import EXAMPLE_TOKEN

    path = os.path.join(os.path.dirname(__file__), "..", "deploy", "prometheus")
    with open(os.path.join(path, "django-metrics-token"), encoding="utf-8") as fh:
        assert fh.read().strip() == EXAMPLE_TOKEN


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("SERVICE_NAME", 42, "E010"),
        ("SERVICE_VERSION", ["1"], "E011"),
        ("ENVIRONMENT", 1.5, "E012"),
        ("METRICS_ENABLED", "yes", "E013"),
        ("METRICS_NAMESPACE", "my-shop", "E014"),
        ("METRICS_NAMESPACE", "1shop", "E014"),
        ("METRICS_LATENCY_BUCKETS", [0.5, 0.1], "E015"),
        ("METRICS_LATENCY_BUCKETS", [], "E015"),
        ("METRICS_LATENCY_BUCKETS", "0.1,0.5", "E015"),
        ("METRICS_LATENCY_BUCKETS", [0, 1], "E015"),
        ("METRICS_LATENCY_BUCKETS", [0.1, "1"], "E015"),
        ("METRICS_SIZE_BUCKETS", [100, 100], "E016"),
        ("METRICS_LABEL_CAP", 0, "E017"),
        ("METRICS_LABEL_CAP", True, "E017"),
        ("REQUEST_ID_HEADER", "X Request ID", "E018"),
        ("REQUEST_ID_HEADER", "", "E018"),
        ("REQUEST_ID_TRUST_INCOMING", 1, "E019"),
        ("AUTH_TOKEN", 12345, "E020"),
        ("AUTH_TOKEN", " padded ", "E020"),
        ("AUTH_TOKEN", "line\nbreak", "E020"),
        ("ALLOWED_IPS", "10.0.0.0/8", "E021"),
        ("ALLOWED_IPS", ["10.0.0.300"], "E021"),
        ("EXCLUDE_PATHS", "/static/", "E022"),
        ("EXCLUDE_PATHS", ["static/"], "E022"),
        ("TRUSTED_PROXIES", ["proxy.local"], "E023"),
        ("HEALTH_CHECKS", ["database"], "E030"),
        ("HEALTH_CHECKS", {"db": ("path", "not a dict")}, "E030"),
        ("HEALTH_CHECKS", {"bad name!": "x.y"}, "E030"),
        ("HEALTH_READINESS_CHECKS", ["nope"], "E031"),
        ("HEALTH_READINESS_CHECKS", "database", "E031"),
        ("HEALTH_TIMEOUT", 0, "E032"),
        ("HEALTH_DEADLINE", "1", "E033"),
        ("HEALTH_CACHE_SECONDS", -1, "E034"),
        ("HEALTH_SHOW_DETAILS", "sometimes", "E035"),
        ("HEALTH_PROBES_IN_MIDDLEWARE", "yes", "E036"),
        ("METRICS_IN_MIDDLEWARE", "yes", "E070"),
        ("LOG_REDACT_KEYS", "tax_id", "E080"),
        ("HEALTH_MAX_THREADS", 0, "E037"),
        ("HEALTH_DRAIN_FILE", 5, "E038"),
        ("TRACING_EXPORTER", "jaeger", "E040"),
        ("TRACING_OTLP_ENDPOINT", "collector:4318", "E041"),
        ("TRACING_OTLP_PROTOCOL", "http/json", "E042"),
        ("TRACING_SAMPLE_RATIO", 1.5, "E043"),
        ("TRACING_EXPORT_TIMEOUT", 0, "E044"),
        ("TRACING_EXPORT_TIMEOUT", "5", "E044"),
        ("TRACING_DB_SPANS", "no", "E045"),
        ("DB_METRICS", None, "E046"),
        ("ACCESS_LOG", 0, "E047"),
        ("AUDIT_MODELS", "auth.User", "E050"),
        ("AUDIT_MODELS", ["User"], "E050"),
        ("AUTH_EVENTS", "yes", "E051"),
        ("SECURITY_EVENTS", 1, "E052"),
        ("AUDIT_LOG_USERNAMES", "no", "E053"),
    ],
)
def test_setting_errors(setting, value, check_id):
    with override_settings(**{f"OBSERVABILITY_{setting}": value}):
        messages = [m for m in run_checks() if m.id == f"django_observability.{check_id}"]
    assert len(messages) == 1
    assert f"OBSERVABILITY_{setting}" in messages[0].msg


@override_settings(
    OBSERVABILITY_SERVICE_NAME="shop",
    OBSERVABILITY_METRICS_NAMESPACE="shop",
    OBSERVABILITY_METRICS_LATENCY_BUCKETS=(0.1, 1, float("inf")),
    OBSERVABILITY_METRICS_LABEL_CAP=10,
    OBSERVABILITY_REQUEST_ID_HEADER="X-Correlation-ID",
    OBSERVABILITY_AUTH_TOKEN="s3cret-long-enough-0123456789",
    OBSERVABILITY_ALLOWED_IPS=["10.0.0.0/8", "::1"],
    OBSERVABILITY_EXCLUDE_PATHS=("/static/",),
    OBSERVABILITY_TRACING_EXPORT_TIMEOUT=None,
)
def test_valid_settings_pass():
    assert ids() == []


@override_settings(OBSERVABILITY_HEALTH_CHECKS={"gone": "no.such.module.check"})
def test_e039_health_check_cannot_load():
    messages = [m for m in run_checks() if m.id == "django_observability.E039"]
    assert len(messages) == 1
    assert "gone" in messages[0].msg


# --- W020: the app's URLs answered by another view ------------------------------------


def w020(urlconf, **settings):
    with override_settings(ROOT_URLCONF=urlconf, **settings):
        return [m for m in run_checks() if m.id == "django_observability.W020"]


def test_w020_catch_all_before_the_include():
    from tests import urls_catch_all

    messages = {m.msg.split()[0]: m for m in w020(urls_catch_all.CatchAllFirst)}
    assert set(messages) == {"/metrics", "/health/", "/health/live/", "/health/ready/"}
    report = messages["/health/"]
    assert report.msg.startswith(
        "/health/ is answered by tests.urls_catch_all.catch_all (URL name 'catch-all'), "
        "not by django_observability's health report"
    )
    assert 'include("django_observability.urls")) before catch-all' in report.hint
    # The probes and the scrape are still answered by the middleware: said, not hidden.
    assert "ObservabilityMiddleware answers" not in report.msg
    assert "OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE" in messages["/health/live/"].msg
    assert "OBSERVABILITY_METRICS_IN_MIDDLEWARE" in messages["/metrics"].msg
    off = w020(urls_catch_all.CatchAllFirst, OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE=False)
    assert not any("ObservabilityMiddleware answers" in m.msg for m in off if "health" in m.msg)


def test_w020_silent_when_the_include_comes_first_or_is_not_mounted():
    from tests import urls_catch_all

    assert w020(urls_catch_all.CatchAllLast) == []
    assert w020(urls_catch_all.NotMounted) == []


def test_w020_names_the_prefixed_paths():
    from tests import urls_catch_all

    shadowed = [m.msg.split()[0] for m in w020(urls_catch_all.PrefixedAfterCatchAll)]
    assert shadowed == ["/ops/health/", "/ops/health/live/", "/ops/health/ready/"]


def test_w020_fails_check_at_warning_level():
    from tests import urls_catch_all

    with (
        override_settings(ROOT_URLCONF=urls_catch_all.CatchAllFirst),
        pytest.raises(SystemCheckError, match="W020"),
    ):
        call_command("check", fail_level="WARNING")


def _check_wagtail_project(urlconf):
    """``manage.py check`` of a project with Wagtail's page URLs, in a process of its own."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TEST_ROOT_URLCONF": urlconf, "PYTHONPATH": root}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-m", "django", "check", "--settings", "tests.settings_wagtail_urls"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_w020_with_wagtails_catch_all():
    pytest.importorskip("wagtail")
    output = _check_wagtail_project("tests.urls_wagtail_last")
    warned = [
        line.split()[2] for line in output.splitlines() if "django_observability.W020" in line
    ]
    # Wagtail's page route matches paths ending in "/": /metrics is not shadowed.
    assert warned == ["/health/", "/health/live/", "/health/ready/"]
    assert "wagtail.views.serve (URL name 'wagtail_serve')" in output
    assert "W020" not in _check_wagtail_project("tests.urls_wagtail_first")
