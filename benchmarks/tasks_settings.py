"""Django settings of the task benchmark, chosen by ``BENCH_TASKS_CONFIG`` (see ``tasks.py``).

``bare``               Celery + Django; none of our app, no OpenTelemetry.
``otel_celery``        the same; ``tasks_app`` enables opentelemetry-instrumentation-celery
                       alone with the SDK pieces of the request benchmarks.
``ours_metrics_logs``  ``django_observability`` installed, tracing off: its Celery
                       receivers (metrics, task context) and ``logging_config()``'s
                       JSON lines with the task's fields.
``ours_full``          the same with tracing on (``tasks_app`` hands the app its
                       provider): our own consumer span, our metrics and our
                       log fields.

Every configuration logs at INFO to the file named by ``BENCH_TASKS_LOG``: Celery's
per-task lines (``received`` in a worker, ``succeeded`` wherever a task runs).
``bare`` and ``otel_celery`` keep Celery's own logging (text lines, set up by the worker
with ``--loglevel INFO --logfile``, or by ``tasks_child`` in process the same way); ours
write them as JSON through ``logging_config()``, pointed at a ``logging.FileHandler``.
"""

from __future__ import annotations

import os

from benchmarks.tasks_child import CONFIGS, OURS, TRACED

__all__ = ["CONFIG", "CONFIGS", "OURS", "TRACED"]

CONFIG = os.environ.get("BENCH_TASKS_CONFIG", "bare")
if CONFIG not in CONFIGS:
    raise RuntimeError(f"BENCH_TASKS_CONFIG must be one of {CONFIGS}, not {CONFIG!r}")

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]

CELERY_BROKER_URL = os.environ.get("BENCH_TASKS_BROKER", "memory://")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True

if CONFIG in OURS:
    INSTALLED_APPS.append("django_observability")
    OBSERVABILITY_SERVICE_NAME = "bench-tasks"
    # No OBSERVABILITY_TRACING_EXPORTER: ours_full gets its provider from tasks_app
    # (tracing.use_tracer_provider), the same SDK pieces otel_celery gets.

    from django_observability.logging import logging_config

    LOGGING = logging_config("INFO", mail_admins=False)
    LOGGING["handlers"]["console"] = {
        "class": "logging.FileHandler",
        "filename": os.environ["BENCH_TASKS_LOG"],
        "encoding": "utf-8",
        "formatter": "json",
        "filters": ["context"],
    }
