"""Settings of the worker test project, from the environment.

``WORKER_APP_BROKER_URL`` (default ``memory://``), ``WORKER_APP_METRICS_PORT``
(``OBSERVABILITY_WORKER_METRICS_PORT``: a port number or ``address:port``),
``WORKER_APP_TOKEN`` (``OBSERVABILITY_AUTH_TOKEN``), ``WORKER_APP_HEARTBEAT``
(the heartbeat file) and ``WORKER_APP_HEARTBEAT_INTERVAL`` (seconds).
"""

import os

from django_observability.logging import logging_config

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["django_observability"]
MIDDLEWARE = ["django_observability.middleware.ObservabilityMiddleware"]
ROOT_URLCONF = "tests.worker_app.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
LOGGING = logging_config()
OBSERVABILITY_SERVICE_NAME = "worker-app"

_port = os.environ.get("WORKER_APP_METRICS_PORT")
OBSERVABILITY_WORKER_METRICS_PORT = int(_port) if _port and _port.isdigit() else _port or None
OBSERVABILITY_AUTH_TOKEN = os.environ.get("WORKER_APP_TOKEN") or None
OBSERVABILITY_WORKER_HEARTBEAT_FILE = os.environ.get("WORKER_APP_HEARTBEAT") or None
OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL = float(
    os.environ.get("WORKER_APP_HEARTBEAT_INTERVAL", "10")
)

CELERY_BROKER_URL = os.environ.get("WORKER_APP_BROKER_URL", "memory://")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
