"""Settings for one benchmark configuration, chosen by the ``BENCH_CONFIG`` environment variable.

``bare``               Django's default middleware stack, no instrumentation.
``django_prometheus``  the same stack between django-prometheus's Before/After middleware.
``ours``               the same stack behind ``ObservabilityMiddleware``.

The full stacks (tracing and a JSON access log as well; see ``stacks.py``):

``anchors_full``       django-prometheus's Before/After, plus a python-json-logger
                       access-log middleware; the worker adds
                       opentelemetry-instrumentation-django's middleware.
``ours_full``          ``ObservabilityMiddleware`` with its access log on; the
                       worker hands it a TracerProvider sampling every trace.
``ours_full_10pct``    the same, sampling 10% of traces.

A reference (``stacks.py``), not a stack anyone would deploy:

``sdk_span_floor``     the same stack as ``bare`` behind ``SdkSpanFloorMiddleware``:
                       the OpenTelemetry SDK's own server span, nothing else.
``sdk_span_log_floor`` the same, plus one plain-text line per request through
                       ``logging.FileHandler`` (``SdkSpanLogFloorMiddleware``).

Everything else (URLconf, apps, templates, databases) is identical across
configurations, so a difference in cost is the instrumentation's.
"""

from __future__ import annotations

import os

from benchmarks.worker import CONFIGS

CONFIG = os.environ.get("BENCH_CONFIG", "bare")
if CONFIG not in CONFIGS:
    raise RuntimeError(f"BENCH_CONFIG must be one of {CONFIGS}, not {CONFIG!r}")

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1"]  # in process; over HTTP
ROOT_URLCONF = "benchmarks.urls"
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]

# The stack `django-admin startproject` writes: what a typical project runs.
_STACK = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if CONFIG == "bare":
    MIDDLEWARE = list(_STACK)
elif CONFIG == "sdk_span_floor":
    # The worker builds the provider (stacks.install_tracing) before Django loads this.
    MIDDLEWARE = ["benchmarks.stacks.SdkSpanFloorMiddleware", *_STACK]
elif CONFIG == "sdk_span_log_floor":
    MIDDLEWARE = ["benchmarks.stacks.SdkSpanLogFloorMiddleware", *_STACK]
elif CONFIG == "django_prometheus":
    INSTALLED_APPS.append("django_prometheus")
    MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *_STACK,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]
elif CONFIG == "anchors_full":
    INSTALLED_APPS.append("django_prometheus")
    MIDDLEWARE = [
        # DjangoInstrumentor().instrument() inserts its middleware before this one.
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        "benchmarks.stacks.JsonAccessLogMiddleware",
        *_STACK,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]
else:
    INSTALLED_APPS.append("django_observability")
    MIDDLEWARE = ["django_observability.middleware.ObservabilityMiddleware", *_STACK]
    # Open /metrics, as in a cluster where only the scraper can reach the pod.
    OBSERVABILITY_AUTH_TOKEN = None

if CONFIG in ("ours_full", "ours_full_10pct"):
    OBSERVABILITY_ACCESS_LOG = True
    OBSERVABILITY_TRACING_DB_SPANS = True  # the views make no queries: no DB spans
    # No OBSERVABILITY_TRACING_EXPORTER: the worker hands the app its provider
    # (tracing.use_tracer_provider), the same SDK pieces the anchors get.

if CONFIG in ("anchors_full", "ours_full", "ours_full_10pct", "sdk_span_log_floor"):
    from benchmarks.stacks import LOG_FILE_ENV, logging_settings

    if not os.environ.get(LOG_FILE_ENV):
        raise RuntimeError(f"{CONFIG} writes its access log to the file named by ${LOG_FILE_ENV}")
    LOGGING = logging_settings(CONFIG, os.environ[LOG_FILE_ENV])
