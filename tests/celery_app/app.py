"""The Celery app: ``celery -A tests.celery_app.app worker``; configured from Django's settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.celery_app.settings")

app = Celery("tests_celery_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ["tests.celery_app.tasks"]
