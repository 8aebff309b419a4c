"""Settings of the Celery test project; the environment says where the broker and database are.

``CELERY_APP_BROKER_URL`` (default ``memory://``), ``CELERY_APP_DB`` (a SQLite
file; default in memory). Tracing comes from the ``OTEL_*`` environment.
"""

import os

from django_observability.logging import logging_config

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["django_observability"]
MIDDLEWARE = ["django_observability.middleware.ObservabilityMiddleware"]
ROOT_URLCONF = "tests.celery_app.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CELERY_APP_DB", ":memory:"),
    }
}
USE_TZ = True
LOGGING = logging_config()
OBSERVABILITY_SERVICE_NAME = "celery-app"

CELERY_BROKER_URL = os.environ.get("CELERY_APP_BROKER_URL", "memory://")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
