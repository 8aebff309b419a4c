"""Ready-made gunicorn server hooks, under gunicorn's own names.

In ``gunicorn.conf.py``, one line::

    from django_observability.gunicorn import (
        child_exit, logger_class, on_starting, post_fork, worker_exit,
    )

What each does:

``logger_class`` (master, before it writes a line)
    gunicorn's own logger, which first learns the ``service`` fields the
    workers will write, so the master's lines carry the same ones (its own
    start-up lines come before Django is loaded, and in a standard project
    ``DJANGO_SETTINGS_MODULE`` is set only in ``wsgi.py``). It reads the
    settings module that the application module (``wsgi_app``, or the
    command line's ``mysite.wsgi:application``) names in its
    ``os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...)``, without
    importing it, and sets that variable as ``wsgi.py`` would; then a child
    Python loads those settings (not the apps) and reports
    ``OBSERVABILITY_SERVICE_NAME`` and ``OBSERVABILITY_ENVIRONMENT`` as the
    workers will read them. The master itself never imports the settings, so
    a ``HUP`` still gives new workers the settings as they are on disk (and
    learns them again). It replaces gunicorn's statsd logger, which gunicorn
    chooses only when ``logger_class`` is left at its default.
``on_starting`` (master, once)
    Learns the workers' ``service`` fields as ``logger_class`` does, if that
    was not used (the master's lines after its first one then carry them).
    Empties the multiprocess metrics store (``PROMETHEUS_MULTIPROC_DIR``), making
    the directory if it is missing: an earlier run's files would be added to
    this run's totals. Warns when several workers run without the directory.
``post_fork`` (each worker, right after the fork)
    Makes prometheus_client reserve the space of its files before writing, so
    a full file system costs metrics, not the worker (``metrics_store.py``).
``child_exit`` (master, after a worker exited)
    Drops the worker's live gauges and merges its counters and histograms into
    the store's archives, so scrapes stay as fast as with no worker ever gone.
``worker_exit`` (each worker, as it exits)
    Stores what the worker kept in memory while the store could not be written
    (a last try, before ``child_exit`` archives its files), then flushes its spans, waiting at most
    ``OBSERVABILITY_TRACING_EXIT_TIMEOUT`` seconds, and not at all when the last
    export failed (a dead collector must not hold up the worker's replacement).

No hook raises: a store that is missing, read-only or full, or a collector
that does not answer, is logged and the master and its workers go on.
prometheus_client is imported inside the hooks only, so this module can be
imported at the top of ``gunicorn.conf.py`` before ``PROMETHEUS_MULTIPROC_DIR``
is set. ``tracing`` is imported here, in the master (it imports neither
prometheus_client nor the OpenTelemetry SDK): the record of how exports ended
then lives in memory every worker inherits, so once one worker found the
collector silent, the workers after it do not wait for it at exit.
"""

from __future__ import annotations

import importlib.machinery
import json
import logging
import os
import re
import subprocess
import sys
from typing import Any

from django_observability import tracing

logger = logging.getLogger("django_observability")

__all__ = [
    "Logger",
    "child_exit",
    "learn_service",
    "logger_class",
    "on_starting",
    "post_fork",
    "settings_module_of",
    "worker_exit",
]

# os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings"), as
# startproject writes it in wsgi.py and asgi.py (either quote, any spacing).
_SETDEFAULT = re.compile(r"""["']DJANGO_SETTINGS_MODULE["']\s*,\s*["']([A-Za-z_][\w.]*)["']""")
_MODULE = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")

_learnt = False  # learn_service() ran in this process

# Seconds the child Python may take to load the settings.
PROBE_TIMEOUT = 20.0

# Run in a child Python: the service fields as a worker will have them.
_PROBE = (
    "import json\n"
    "from django.conf import settings\n"
    "settings.INSTALLED_APPS\n"  # loads the settings module, not the apps
    "from django_observability.logging import service\n"
    "print(json.dumps(service.read()))\n"
)


def _module_file(name: str) -> str | None:
    """The source file of module ``name``, found on ``sys.path`` without importing anything."""
    spec = None
    locations = None
    parts = name.split(".")
    for index in range(len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: index + 1]), locations)
        if spec is None:
            return None
        locations = spec.submodule_search_locations
    origin = spec.origin if spec is not None else None
    return origin if origin and origin.endswith(".py") else None


def settings_module_of(app_uri: str) -> str | None:
    """The settings module that the application module of ``app_uri`` sets by default.

    ``app_uri`` is gunicorn's ``mysite.wsgi:application``; the module's
    source is read, not imported. ``None`` when it names none.
    """
    module = app_uri.split(":", 1)[0].strip()
    if not _MODULE.fullmatch(module):
        return None
    path = _module_file(module)
    if path is None:
        return None
    with open(path, encoding="utf-8", errors="replace") as source:
        match = _SETDEFAULT.search(source.read())
    return match.group(1) if match else None


def learn_service(cfg: Any) -> None:
    """Make the master's lines carry the ``service`` fields its workers will write.

    ``cfg`` is gunicorn's configuration. Sets ``DJANGO_SETTINGS_MODULE`` from
    the application module when the environment has none, then asks a child
    Python for the fields (:func:`django_observability.logging.service.assume`).
    Never raises; when the child fails, the master's lines name the service
    from the environment and the settings module's package.
    """
    global _learnt
    _learnt = True
    from django.conf import settings

    from django_observability.logging import service

    try:
        if settings.configured:  # the application is loaded already (preload_app)
            return
        if not os.environ.get("DJANGO_SETTINGS_MODULE"):
            app_uri = getattr(cfg, "wsgi_app", None) or getattr(cfg, "default_proc_name", None)
            module = settings_module_of(app_uri) if isinstance(app_uri, str) else None
            if module is None:
                return
            os.environ["DJANGO_SETTINGS_MODULE"] = module  # what wsgi.py does in the workers
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        result = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
            logger.warning(
                "django_observability: the settings could not be read for the master's "
                "service fields: %s",
                tail[0],
            )
            return
        fields = json.loads(result.stdout.strip().splitlines()[-1])
        if isinstance(fields, dict) and isinstance(fields.get("name"), str):
            service.assume({str(k): str(v) for k, v in fields.items()})
    except Exception:
        logger.exception("django_observability: learning the workers' service fields failed")


try:
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # without gunicorn the hooks still import (and Logger is never used)
    _GunicornLogger = object  # type: ignore[assignment,misc]


class Logger(_GunicornLogger):  # type: ignore[misc,valid-type]
    """gunicorn's logger, first learning the workers' ``service`` fields (:func:`learn_service`)."""

    def setup(self, cfg: Any) -> None:
        learn_service(cfg)
        super().setup(cfg)  # type: ignore[misc]


#: For ``gunicorn.conf.py``: gunicorn takes a setting named ``logger_class`` from it.
logger_class = Logger


def on_starting(server: Any) -> None:
    """gunicorn's ``on_starting``: the workers' service fields; an empty metrics store."""
    if not _learnt:
        learn_service(getattr(server, "cfg", None))
    try:
        from django_observability import metrics_store

        path = metrics_store.directory()
        if path is None:
            workers = getattr(getattr(server, "cfg", None), "workers", 1)
            if isinstance(workers, int) and workers > 1:
                logger.warning(
                    "django_observability: %s workers and no PROMETHEUS_MULTIPROC_DIR: each "
                    "scrape of /metrics shows the one worker that answers it",
                    workers,
                )
            return
        metrics_store.clear(path)
    except Exception:
        logger.exception("django_observability: on_starting hook failed")


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn's ``post_fork``: metrics files written with their space reserved."""
    try:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from django_observability import metrics_store

            metrics_store.install()
    except Exception:
        logger.exception("django_observability: post_fork hook failed")


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit``: the worker's live gauges go, its totals are archived."""
    try:
        from django_observability import metrics_store

        path = metrics_store.directory()
        if path is not None:
            metrics_store.mark_dead(worker.pid, path)
    except Exception:
        logger.exception("django_observability: child_exit hook failed")


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``worker_exit``: store the values kept in memory, flush spans (bounded)."""
    # gunicorn also calls it in the master for a worker found already gone;
    # the master has nothing of the worker's to store or flush.
    if getattr(worker, "pid", None) != os.getpid():
        return
    try:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from django_observability import metrics_store

            metrics_store.store_pending()
        tracing.flush_on_exit()
    except Exception:
        logger.exception("django_observability: worker_exit hook failed")
