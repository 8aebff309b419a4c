"""Database connections: opened, failed, and Django's connection pool as the pool itself counts.

What is recorded, per alias of ``DATABASES`` (a key of the settings, so bounded):

* ``db_client_connections_created_total``: server connections opened.
* ``db_client_connection_errors_total``: attempts to open one that failed.
* ``db_client_connection_timeouts_total``: with Django's pool, requests for a
  connection the pool could not serve within its ``timeout``.
* for an alias with Django's pool (PostgreSQL, ``OPTIONS["pool"]``, Django
  5.1+), the pool's state: ``db_client_connection_count{state="used"|"idle"}``,
  ``db_client_connection_max``, ``db_client_connection_pending_requests``, and
  the counters ``db_client_connection_requests_total`` (connections asked of
  it), ``db_client_connection_queued_requests_total`` (those that had to
  wait) and ``db_client_connection_wait_time_seconds_total`` (the time they
  waited). The names are OpenTelemetry's database client connection metrics
  in Prometheus form; the errors counter and the two request counters are
  additions (the conventions have none).

Where each figure comes from, and why there:

* **Opened and failed, without a pool**: Django opens a server connection in
  ``DatabaseWrapper.connect()``, and nowhere tells of a failure
  (``connection_created`` is sent only after a success). :func:`install`
  wraps ``create_connection`` of Django's ``connections`` handler, the one
  place a ``DatabaseWrapper`` is made for an alias (once per alias and thread),
  and wraps that **instance's** ``connect``: a success counts one connection
  opened, an exception one error, passed on unchanged. The class and the
  settings stay the user's. The cost is paid per connection opened, never per
  query.
* **With Django's pool** ``connect()`` takes a connection *from the pool*
  (and ``connection_created`` is sent for each of these takes, once per
  request), so counting there would count requests, not connections. The
  truth is the pool's own statistics (psycopg_pool's ``get_stats()``): the
  connections it opened (``connections_num`` less ``connections_errors``), its
  failed attempts (``connections_errors``, made in its own threads, where
  Django never sees them), the requests it served and queued and their wait
  (``requests_num``, ``requests_queued``, ``requests_wait_ms``) and its state
  (``pool_size``, ``pool_available``, ``pool_max``, ``requests_waiting``).
  Timeouts are counted where Django's ``connect()`` raises psycopg_pool's
  ``PoolTimeout``, exactly once each; any other exception it raises is an error.
  The pool object is the one ``connection.pool`` returns, taken after a
  successful ``connect()``: this process's own, never made by us.
* **When the pool is read**: a daemon thread per process reads each pool this
  process uses every ``OBSERVABILITY_DB_POOL_METRICS_INTERVAL`` seconds (5 by
  default), from the first connection the pool gave, and once more as the
  process exits. The gauges it writes use Prometheus multiprocess mode
  ``livesum``: with gunicorn's workers (a pool each), ``/metrics`` shows the
  deployment's sum over live workers, whichever worker answers the scrape. A
  collector reading the pool at scrape time would show only the worker that
  answered; writing on each request would put the work on the request path
  and go silent exactly when the pool is exhausted (no request finishes). So
  the request path pays nothing for the pool figures, and they are at most one
  interval old (plus the scrape interval); the counters' increments are the
  differences between two readings, so nothing is lost between readings,
  only delayed. A ``pop_stats()`` of the project's own resets the pool's
  counters: the increments since our last reading are then lost.
* **Fork**: the thread and the pools seen are per process; a forked child
  (a gunicorn worker) starts from nothing and starts its own thread when its
  pool gives its first connection.

Switch: ``OBSERVABILITY_DB_CONNECTION_METRICS`` (read lazily; off, a
connection costs one flag test more and no thread is started).

Not covered: connections made outside ``connections[alias]`` (Django's own
``_nodb_cursor`` while creating a test database), pools other than Django's.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from django.core.signals import setting_changed

from django_observability.conf import PREFIX, valid_or_default
from django_observability.metrics import get_metrics

__all__ = ["install", "instrument", "sample_pools", "uninstall"]

logger = logging.getLogger("django_observability")

# psycopg_pool's statistics that are counters -> (our instrument, scale).
_POOL_COUNTERS: tuple[tuple[str, str, float], ...] = (
    ("requests_num", "db_connection_requests", 1.0),
    ("requests_queued", "db_connection_queued", 1.0),
    ("requests_wait_ms", "db_connection_wait_time", 0.001),
    ("connections_errors", "db_connection_errors", 1.0),
    # connections_num counts attempts, failed ones included.
    ("opened", "db_connections_created", 1.0),
)

_enabled_flag: bool | None = None


def _enabled() -> bool:
    global _enabled_flag
    flag = _enabled_flag
    if flag is None:
        flag = _enabled_flag = bool(valid_or_default("DB_CONNECTION_METRICS"))
    return flag


def _pooled(connection: Any) -> bool:
    """Whether ``connection`` takes its connections from Django's pool."""
    options = connection.settings_dict.get("OPTIONS") or {}
    return connection.vendor == "postgresql" and bool(options.get("pool"))


# --- the connect() of each DatabaseWrapper -------------------------------------------


def instrument(connection: Any) -> None:
    """Count the connections ``connection`` (a ``DatabaseWrapper``) opens (idempotent)."""
    if getattr(connection.connect, "_django_observability", False):
        return
    inner = connection.connect
    alias = connection.alias
    pooled = _pooled(connection)

    def connect() -> None:
        if not _enabled():
            return inner()
        try:
            inner()
        except Exception as exc:
            _failed(alias, pooled, exc)
            raise
        _opened(connection, alias, pooled)

    connect._django_observability = True  # type: ignore[attr-defined]
    connect.__wrapped__ = inner  # type: ignore[attr-defined]
    connection.connect = connect


def _opened(connection: Any, alias: str, pooled: bool) -> None:
    try:
        if pooled:
            # A connection taken from the pool: the pool counts what it opens.
            _watch_pool(alias, connection.pool)
            return
        metrics = get_metrics()
        if metrics is not None:
            metrics.db_connections_created.labels(alias).inc()
    except Exception:
        logger.exception("django_observability: could not count a database connection")


def _failed(alias: str, pooled: bool, exc: BaseException) -> None:
    try:
        metrics = get_metrics()
        if metrics is None:
            return
        if pooled and _is_pool_timeout(exc):
            metrics.db_connection_timeouts.labels(alias).inc()
        else:
            metrics.db_connection_errors.labels(alias).inc()
    except Exception:
        logger.exception("django_observability: could not count a database connection error")


def _is_pool_timeout(exc: BaseException) -> bool:
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - a pooled connect needs psycopg_pool
        return False
    return isinstance(exc, PoolTimeout)


# --- the pools ------------------------------------------------------------------------

_lock = threading.Lock()
# This process's pools: alias -> the pool object Django gave.
_pools: dict[str, Any] = {}
# alias -> (the pool read last, its counters then).
_last: dict[str, tuple[Any, dict[str, int]]] = {}
_sampler: _Sampler | None = None


def _watch_pool(alias: str, pool: Any) -> None:
    if _pools.get(alias) is pool:
        return
    with _lock:
        _pools[alias] = pool
    _start_sampler()
    sample_pools()


def sample_pools() -> None:
    """Read each pool this process uses and record its figures (thread-safe, never raises)."""
    try:
        metrics = get_metrics()
    except Exception:  # pragma: no cover - get_metrics logs its own failures
        return
    if metrics is None:
        return
    with _lock:
        for alias, pool in list(_pools.items()):
            try:
                _sample(metrics, alias, pool)
            except Exception:
                logger.exception("django_observability: could not read the pool of %r", alias)


def _sample(metrics: Any, alias: str, pool: Any) -> None:
    closed = bool(getattr(pool, "closed", False))
    # A closed pool (Django closes and replaces it when the time zone changes)
    # has nothing in use any more; the next connect() brings its successor.
    stats: dict[str, int] = {} if closed else dict(pool.get_stats())
    size = stats.get("pool_size", 0)
    idle = stats.get("pool_available", 0)
    metrics.db_connection_count.labels(alias, "used").set(max(size - idle, 0))
    metrics.db_connection_count.labels(alias, "idle").set(idle)
    metrics.db_connection_max.labels(alias).set(stats.get("pool_max", 0))
    metrics.db_connection_pending.labels(alias).set(stats.get("requests_waiting", 0))
    if closed:
        del _pools[alias]
        _last.pop(alias, None)
        return
    stats["opened"] = stats.get("connections_num", 0) - stats.get("connections_errors", 0)
    previous_pool, previous = _last.get(alias, (None, {}))
    if previous_pool is not pool:
        previous = {}  # a new pool counts from zero
    counters = {}
    for key, attr, scale in _POOL_COUNTERS:
        value = counters[key] = stats.get(key, 0)
        before = previous.get(key, 0)
        # Lower than before: the counters were reset (pop_stats()).
        delta = value - before if value >= before else value
        if delta > 0:
            getattr(metrics, attr).labels(alias).inc(delta * scale)
    _last[alias] = (pool, counters)


class _Sampler:
    """The thread that reads this process's pools every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name="django-observability-db-pool", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            sample_pools()

    def stop(self) -> None:
        self.stopped.set()


def _start_sampler() -> None:
    global _sampler
    if _sampler is not None:
        return
    with _lock:
        if _sampler is not None:
            return
        sampler = _Sampler(float(valid_or_default("DB_POOL_METRICS_INTERVAL")))
        sampler.start()
        _sampler = sampler


def _forget() -> None:
    """Start from nothing: a forked child, or settings that changed."""
    global _sampler, _lock
    if _sampler is not None:
        _sampler.stop()
    _sampler = None
    _lock = threading.Lock()  # a fork may have copied it held
    _pools.clear()
    _last.clear()


# --- the handler ----------------------------------------------------------------------

_original: Callable[[str], Any] | None = None


def install() -> None:
    """Count the connections of every ``DatabaseWrapper`` Django's ``connections`` makes."""
    global _original
    from django.db import connections

    setting_changed.connect(_setting_changed, dispatch_uid="django_observability.db_connections")
    if _original is not None:
        return
    original = connections.create_connection

    def create_connection(alias: str) -> Any:
        connection = original(alias)
        try:
            instrument(connection)
        except Exception:
            logger.exception("django_observability: could not observe database %r", alias)
        return connection

    connections.create_connection = create_connection  # type: ignore[method-assign]
    _original = original
    try:
        # Wrappers this thread made before ready() (a settings module that queried).
        for connection in connections.all(initialized_only=True):
            instrument(connection)
    except Exception:
        logger.exception("django_observability: could not observe the database connections")


def uninstall() -> None:
    """Undo :func:`install` for wrappers made from now on, and stop reading pools."""
    global _original
    from django.db import connections

    _forget()
    if _original is None:
        return
    connections.__dict__.pop("create_connection", None)
    _original = None


def _setting_changed(setting: str, **kwargs: Any) -> None:
    global _enabled_flag
    if setting.startswith(PREFIX + "DB_"):
        _enabled_flag = None
        _forget()


@atexit.register
def _sample_at_exit() -> None:
    # The increments since the last reading, before the process's files go idle.
    if _pools:
        sample_pools()


os.register_at_fork(after_in_child=_forget)
