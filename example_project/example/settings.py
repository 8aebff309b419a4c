"""Settings of the example project: every django-observability setting, shown.

Values come from the environment where a deployment would want to change them
(the Makefile's demo and the tests set a few).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_observability",
    "shop",
]

MIDDLEWARE = [
    "django_observability.middleware.ObservabilityMiddleware",  # first
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- django-observability -------------------------------------------------
# Identity of the service (service_version appears in the build info metric).
OBSERVABILITY_SERVICE_NAME = "example-shop"
OBSERVABILITY_SERVICE_VERSION = "1.0.0"
OBSERVABILITY_ENVIRONMENT = os.environ.get("EXAMPLE_ENVIRONMENT", "demo")
# Metrics: namespace prefix for every metric name (empty = the names of the
# README and of deploy/), buckets, and the cap on free-form label values.
OBSERVABILITY_METRICS_ENABLED = True
OBSERVABILITY_METRICS_NAMESPACE = ""
OBSERVABILITY_METRICS_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
OBSERVABILITY_METRICS_SIZE_BUCKETS = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
OBSERVABILITY_METRICS_LABEL_CAP = 50
# Request ids: accepted from this header when valid, else generated; echoed.
OBSERVABILITY_REQUEST_ID_HEADER = "X-Request-ID"
OBSERVABILITY_REQUEST_ID_TRUST_INCOMING = True
# Who may read /metrics: a bearer token OR an allowed address. The demo leaves
# loopback open so that `curl 127.0.0.1:8000/metrics` works; a token from the
# environment protects it from everyone else.
OBSERVABILITY_AUTH_TOKEN = os.environ.get("OBSERVABILITY_AUTH_TOKEN") or None
OBSERVABILITY_ALLOWED_IPS = ["127.0.0.1/32", "::1/128"]
# Left out of the request metrics, besides the app's own endpoints.
OBSERVABILITY_EXCLUDE_PATHS = ["/static/"]
