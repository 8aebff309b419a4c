"""Ready-made gunicorn server hooks, under gunicorn's own names.

In ``gunicorn.conf.py``, one line::

    from django_observability.gunicorn import child_exit, on_starting, post_fork, worker_exit

What each does:

``on_starting`` (master, once)
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

import logging
import os
from typing import Any

from django_observability import tracing

logger = logging.getLogger("django_observability")

__all__ = ["child_exit", "on_starting", "post_fork", "worker_exit"]


def on_starting(server: Any) -> None:
    """gunicorn's ``on_starting``: start from an empty metrics store."""
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
