"""Settings of the example project: every django-observability setting, shown.

Values come from the environment where a deployment would want to change them
(the Makefile's demo and the tests set a few).
"""

import os
from importlib.util import find_spec
from pathlib import Path

from django_observability.logging import logging_config

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
    # Django's task framework: django.tasks on Django 6.0 and later, the
    # django-tasks backport (an app of its own) on 5.2; django-tasks-db is
    # its database backend and worker (a table of tasks: `manage.py migrate`).
    *([] if find_spec("django.tasks") else ["django_tasks"]),
    "django_tasks_db",
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
if os.environ.get("EXAMPLE_PG_PORT"):
    # PostgreSQL instead of SQLite (the tests run a private server).
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("EXAMPLE_PG_NAME", "example"),
        "USER": os.environ.get("EXAMPLE_PG_USER", "postgres"),
        "HOST": os.environ.get("EXAMPLE_PG_HOST", "127.0.0.1"),
        "PORT": os.environ["EXAMPLE_PG_PORT"],
        "OPTIONS": {"connect_timeout": 2},
    }

# Behind a TLS-terminating proxy in production: redirect plain HTTP. Probes
# still reach /health/live/ and /health/ready/ (the middleware answers them).
SECURE_SSL_REDIRECT = os.environ.get("EXAMPLE_SSL_REDIRECT", "0") == "1"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Background work: Celery ------------------------------------------------
# `celery -A example worker` (from example_project/) runs the tasks of
# shop/tasks.py; example/celery.py reads every CELERY_* setting below. The
# broker is a folder by default (Kombu's filesystem transport: no server, so
# `make demo` needs nothing installed by hand); EXAMPLE_CELERY_BROKER_URL
# points the web processes and the worker at a real one, e.g.
# redis://127.0.0.1:6379/0. See docs/example-tasks.md.
celery_dir = Path(os.environ.get("EXAMPLE_CELERY_DIR") or BASE_DIR.parent / ".demo" / "celery")
CELERY_BROKER_URL = os.environ.get("EXAMPLE_CELERY_BROKER_URL") or "filesystem://localhost//"
if CELERY_BROKER_URL.startswith("filesystem:"):
    # One folder is the queue (each message a file, which the worker moves
    # out), one keeps the messages once taken (read their headers: the request
    # id and trace context travel there), one the exchange bindings.
    # example/celery.py creates them when a process first publishes or a
    # worker starts.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(celery_dir / "queue"),
        "data_folder_out": str(celery_dir / "queue"),
        "store_processed": True,
        "processed_folder": str(celery_dir / "processed"),
        "control_folder": str(celery_dir / "control"),
        "polling_interval": 0.2,  # seconds between looks at the queue folder
    }
elif CELERY_BROKER_URL.startswith(("redis:", "rediss:")):
    # A Redis that stops answering (paused, overloaded, or gone without closing
    # the TCP connection) fails a command after socket_timeout seconds; with
    # Kombu's default (no timeout) a publish waits for it forever, and under
    # gunicorn the request lasted until the 30 s worker timeout killed the worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request that enqueues waits a couple of seconds at most for a broker that
# does not answer, then POST /api/v1/reports/ answers 503: each attempt is
# bounded (the socket timeouts above for Redis, CELERY_BROKER_CONNECTION_TIMEOUT
# for a connection to an AMQP broker) and a failed publish is retried once on
# a new connection (which is enough when the broker has just restarted), not
# Celery's default three times. A paused Redis: 503 in about 3 s.
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# No result backend: POST /api/v1/reports/ answers with the task id, and the
# worker's log line "Task ... succeeded" (JSON, with task.id) shows the result.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# The worker keeps settings.LOGGING (JSON lines from logging_config()) instead
# of replacing the root logger's handlers with its own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery beat: one periodic task. `make demo` embeds beat in the worker
# (`celery worker -B`), fine for one worker; in production run one
# `celery -A example beat` of its own.
CELERY_BEAT_SCHEDULE = {
    "refresh-stats": {
        "task": "shop.tasks.refresh_stats",
        "schedule": float(os.environ.get("EXAMPLE_BEAT_SECONDS", "60")),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(celery_dir / "beat-schedule")

# --- Background work: Django's task framework ---------------------------------
# The tasks of shop/background.py (POST /api/v1/exports/ enqueues one) go to
# django-tasks-db's database backend: a row in this database, which `python
# manage.py db_worker` (from example_project/) takes and runs. No import here:
# the setting names the backend by its path, on Django 6 and on 5.2 alike.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# --- django-observability -------------------------------------------------
# Identity of the service (service_version appears in the build info metric).
OBSERVABILITY_SERVICE_NAME = "example-shop"
OBSERVABILITY_SERVICE_VERSION = "1.0.0"
OBSERVABILITY_ENVIRONMENT = os.environ.get("EXAMPLE_ENVIRONMENT", "demo")
# Metrics: namespace prefix for every metric name (empty = the names of the
# docs/metrics.md and of deploy/), buckets, and the cap on free-form label values.
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
# Behind a proxy: whose X-Forwarded-For to believe when checking ALLOWED_IPS.
OBSERVABILITY_TRUSTED_PROXIES = []

# Health: every check of the full report (/health/), and those readiness runs.
OBSERVABILITY_HEALTH_CHECKS = {
    "database": "django_observability.health.builtin.DatabaseCheck",
    "cache": "django_observability.health.builtin.CacheCheck",
    "migrations": "django_observability.health.builtin.MigrationsCheck",
    "disk": (
        "django_observability.health.builtin.DiskCheck",
        {"path": str(BASE_DIR), "warn_percent": 90, "fail_percent": 97},
    ),
    "memory": "django_observability.health.builtin.MemoryCheck",
    # Prometheus multiprocess mode: the store is writable and has room.
    "metrics_store": "django_observability.health.builtin.MetricsStoreCheck",
    "storage": "django_observability.health.builtin.StorageCheck",
    "inventory": ("shop.health.inventory_service", {"timeout": 0.3}),
    # Celery's broker (the app's broker_url), one connection attempt. In the
    # full report only: most requests do not enqueue, so a broker outage
    # should not take the web processes out of rotation.
    "broker": "django_observability.health.broker.BrokerCheck",
}
OBSERVABILITY_HEALTH_READINESS_CHECKS = ["database", "cache", "migrations"]
OBSERVABILITY_HEALTH_TIMEOUT = 0.5  # seconds, per check
OBSERVABILITY_HEALTH_DEADLINE = 0.8  # seconds, whole evaluation (< the 1 s probe timeout)
OBSERVABILITY_HEALTH_CACHE_SECONDS = 1.0
OBSERVABILITY_HEALTH_SHOW_DETAILS = "authorized"  # never | authorized | always
OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE = True
OBSERVABILITY_HEALTH_MAX_THREADS = 8
OBSERVABILITY_HEALTH_DRAIN_FILE = os.environ.get("EXAMPLE_DRAIN_FILE") or None

if os.environ.get("EXAMPLE_SLOW_CHECK_SECONDS"):
    # A check that hangs, to show (and test) that probes still answer on time.
    OBSERVABILITY_HEALTH_CHECKS["slow"] = "shop.health.slow_dependency"
    OBSERVABILITY_HEALTH_READINESS_CHECKS.append("slow")

MEDIA_ROOT = os.environ.get("EXAMPLE_MEDIA_ROOT", str(BASE_DIR / "media"))

# Tracing: None means "as the OTEL_* environment says" (OTEL_TRACES_EXPORTER,
# OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER_ARG...); a value here wins.
OBSERVABILITY_TRACING_EXPORTER = (
    os.environ.get("EXAMPLE_TRACING_EXPORTER") or None
)  # none|console|otlp
OBSERVABILITY_TRACING_OTLP_ENDPOINT = None  # e.g. "http://collector:4318"
OBSERVABILITY_TRACING_OTLP_PROTOCOL = None  # "http/protobuf" (default) or "grpc"
OBSERVABILITY_TRACING_SAMPLE_RATIO = None  # 0.0-1.0, parent-based; None: 1.0
OBSERVABILITY_TRACING_EXPORT_TIMEOUT = 2.0  # seconds; exports run off the request path
OBSERVABILITY_TRACING_DB_SPANS = True
OBSERVABILITY_DB_METRICS = True
# One JSON line per request on the logger django_observability.access.
OBSERVABILITY_ACCESS_LOG = True

# Every log record, Django's, gunicorn's, uvicorn's and Python's warnings
# included, as one JSON line on stdout with service, request id, trace id and
# span id. The servers' own access lines are left out (the access line above
# replaces them); server_access_log=True keeps them, with secrets masked.
LOGGING = logging_config(os.environ.get("EXAMPLE_LOG_LEVEL", "INFO"))
# Redacted in log lines besides the built-in names (passwords, tokens, cards...).
OBSERVABILITY_LOG_REDACT_KEYS = ["coupon_code"]

# Dependencies (docs/cache.md, docs/http-client.md). Every CACHES alias is
# measured and traced with its BACKEND as it is; EXAMPLE_REDIS_URL puts the
# default cache on a Redis server (Django's RedisCache) instead of memory.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "example",
    }
}
if os.environ.get("EXAMPLE_REDIS_URL"):
    CACHES["default"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["EXAMPLE_REDIS_URL"],
    }
OBSERVABILITY_CACHE_METRICS = True  # cache_operations_total, cache_operation_duration_seconds
OBSERVABILITY_TRACING_CACHE_SPANS = True  # a span per operation inside a trace
# Every command redis-py sends (RedisCache here, Kombu's Redis broker, your own
# clients): redis_command_duration_seconds, and with tracing on a client span
# per command from OpenTelemetry's Redis instrumentation (docs/redis.md).
OBSERVABILITY_REDIS_METRICS = True
OBSERVABILITY_TRACING_REDIS_SPANS = True
# Outgoing calls (requests, httpx, urllib3): OpenTelemetry's instrumentations,
# a client span and http_client_request_duration_seconds each. The request id
# goes only to these hosts (our own services); the traceparent goes to all.
OBSERVABILITY_HTTP_CLIENT_INSTRUMENTATIONS = ["requests", "httpx", "urllib3"]
OBSERVABILITY_HTTP_CLIENT_REQUEST_ID_HOSTS = os.environ.get(
    "EXAMPLE_REQUEST_ID_HOSTS", "127.0.0.1,localhost"
).split(",")
# What GET /api/v1/upstream/ calls: by default the example's own echo view.
EXAMPLE_UPSTREAM_URL = (
    os.environ.get("EXAMPLE_UPSTREAM_URL") or "http://127.0.0.1:8000/api/v1/echo/"
)

# Auth, audit and security events (counters + records on django_observability.audit).
OBSERVABILITY_AUDIT_MODELS = ["auth.User", "auth.Group"]
OBSERVABILITY_AUTH_EVENTS = True
OBSERVABILITY_SECURITY_EVENTS = True
OBSERVABILITY_AUDIT_LOG_USERNAMES = False

# Background work: a worker (the Celery worker's main process, or `manage.py
# db_worker`) serves the same protected /metrics on this port (127.0.0.1);
# Celery's prefork children write to their own PROMETHEUS_MULTIPROC_DIR, not
# the web servers'. EXAMPLE_WORKER_METRICS_PORT="" turns it off. Two workers
# on one host each need a port and a heartbeat file of their own: run_demo.py
# gives the db worker EXAMPLE_DB_WORKER_METRICS_PORT (9809) and
# DEMO_DIR/db-worker-heartbeat.
worker_metrics_port = os.environ.get("EXAMPLE_WORKER_METRICS_PORT", "9808")
OBSERVABILITY_WORKER_METRICS_PORT = int(worker_metrics_port) if worker_metrics_port else None
# The file the worker refreshes and `manage.py observability_worker_alive`
# reads (a container's liveness probe).
OBSERVABILITY_WORKER_HEARTBEAT_FILE = os.environ.get("EXAMPLE_WORKER_HEARTBEAT_FILE") or str(
    celery_dir / "worker-heartbeat"
)
