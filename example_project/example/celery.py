"""The example project's Celery app: ``celery -A example worker`` (from example_project/).

The standard Django layout: the app reads every ``CELERY_*`` setting of
``example.settings`` (the broker, the beat schedule...) and finds the tasks in
each installed app's ``tasks.py`` (``shop/tasks.py``). ``example/__init__.py``
imports it, so that ``@shared_task`` tasks use this app in the web processes
too (they enqueue) and not only in the worker (it runs them).

django-observability needs one line here, :func:`configure` (the worker's
multiprocess directory, see docs/workers.md); its app connects to Celery's
signals when Django starts (metrics, the request id and trace context carried
with each task, log fields), in the web processes and in the worker alike.
"""

import os
from pathlib import Path
from typing import Any

from django_observability.tasks.worker import configure

# First, before anything imports prometheus_client: a worker started without
# PROMETHEUS_MULTIPROC_DIR (`celery -A example worker` by hand) gets a private
# one for its prefork children; elsewhere (web processes) this does nothing.
configure()

from celery import Celery, signals  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

app = Celery("example")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The folders of Kombu's filesystem transport (the default broker here) and of
# beat's schedule file must exist. A worker or beat makes them as it starts
# (import_modules), a web process when it first enqueues; a process that never
# does either creates nothing.
_FOLDER_OPTIONS = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")


@signals.import_modules.connect
@signals.before_task_publish.connect
def make_folders(**kwargs: Any) -> None:
    """Create the filesystem broker's folders and the beat schedule's."""
    folders = [Path(app.conf.beat_schedule_filename).parent]
    if app.conf.broker_url.startswith("filesystem:"):
        options = app.conf.broker_transport_options or {}
        folders += [Path(options[key]) for key in _FOLDER_OPTIONS if options.get(key)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
