"""Settings for one benchmark configuration, chosen by the ``BENCH_CONFIG`` environment variable.

``bare``               Django's default middleware stack, no instrumentation.
``django_prometheus``  the same stack between django-prometheus's Before/After middleware.
``ours``               the same stack behind ``ObservabilityMiddleware``.

Everything else (URLconf, apps, templates, databases) is identical across the
three, so a difference in cost is the instrumentation's.
"""

from __future__ import annotations

import os

CONFIGS = ("bare", "django_prometheus", "ours")

CONFIG = os.environ.get("BENCH_CONFIG", "bare")
if CONFIG not in CONFIGS:
    raise RuntimeError(f"BENCH_CONFIG must be one of {CONFIGS}, not {CONFIG!r}")

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
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
elif CONFIG == "django_prometheus":
    INSTALLED_APPS.append("django_prometheus")
    MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *_STACK,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]
else:
    INSTALLED_APPS.append("django_observability")
    MIDDLEWARE = ["django_observability.middleware.ObservabilityMiddleware", *_STACK]
    # Open /metrics, as in a cluster where only the scraper can reach the pod.
    OBSERVABILITY_AUTH_TOKEN = None
