"""gunicorn configuration for Prometheus multiprocess mode.

Every worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR and
/metrics aggregates them. The directory must be set before any worker imports
prometheus_client (here, in the master); the hooks imported below empty it at
start, archive the totals of each worker that exits (so scrapes stay fast
however many workers max_requests has replaced) and bound the span flush of an
exiting worker; logger_class gives the master's own lines the service name and
environment the workers write (read from the settings that example/wsgi.py
names, without loading them in the master). None of them can stop the master
or a worker.
"""

import os
import tempfile

from django_observability.gunicorn import (  # noqa: F401
    child_exit,
    logger_class,
    on_starting,
    post_fork,
    worker_exit,
)
from django_observability.logging import logging_config

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
# Load the app in the master before forking: tracing is set up there, and each
# worker still makes its own exporter (django_observability.tracing).
preload_app = os.environ.get("GUNICORN_PRELOAD", "0") == "1"
timeout = 30
graceful_timeout = 10
accesslog = None  # the app logs its own requests (logging_config() drops gunicorn's)

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="prometheus-multiproc-"))

# The master's own lines (start-up, worker exits) as JSON lines too, like
# everything the workers log once Django has applied settings.LOGGING. The
# master has not loaded Django: no mail_admins handler (it reads the settings).
logconfig_dict = logging_config(os.environ.get("EXAMPLE_LOG_LEVEL", "INFO"), mail_admins=False)
