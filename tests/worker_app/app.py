"""The Celery app: ``celery -A tests.worker_app.app worker``, as docs/workers.md writes it."""

import os

from django_observability.tasks.worker import configure

# Before anything imports prometheus_client: a worker started without
# PROMETHEUS_MULTIPROC_DIR gets a private one (WORKER_APP_CONFIGURE=0: not called).
if os.environ.get("WORKER_APP_CONFIGURE", "1") == "1":
    configure()

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.worker_app.settings")

app = Celery("tests_worker_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ["tests.worker_app.tasks"]
