"""The Prometheus instruments and the rules that keep their labels bounded.

Every instrument is one row of :data:`INSTRUMENTS` (name, type, labels, help,
unit, buckets, multiprocess mode): :class:`Metrics` makes an attribute of each
row and :meth:`Metrics.unregister` removes whatever was made, so adding a
metric is adding a row (and, if it needs one, a recording method).

Label rules (see docs/metrics.md, the metrics reference):

* ``route``: the URL pattern that matched (``/items/<int:pk>/``), never the raw
  path; ``<unmatched>`` when no view was resolved.
* ``method``: one of the standard HTTP methods, else ``_OTHER``.
* ``status``: the numeric status code as a string.
* labels whose values come from outside the URLconf (``exception``...) are
  capped per metric; values past the cap are folded into ``_other``. In
  Prometheus multiprocess mode the cap is shared by every process that writes
  to the same ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import platform
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import django
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.utils import floatToGoString

from django_observability.conf import (
    DEFAULT_LATENCY_BUCKETS,
    DEFAULT_SIZE_BUCKETS,
    SETTINGS,
    conf,
    valid_or_default,
)
from django_observability.exemplars import SharedExemplars
from django_observability.formats import exception_name  # noqa: F401  (re-exported)
from django_observability.version import __version__

logger = logging.getLogger("django_observability")

# Seconds between two exemplars in one bucket of one duration series.
EXEMPLAR_INTERVAL = 1.0

UNMATCHED = "<unmatched>"
OTHER_METHOD = "_OTHER"
OTHER = "_other"

# Mapping rather than a set so that one dict lookup both tests and returns the
# interned label value.
_METHOD_LABELS: dict[str, str] = {
    m: m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
}


def method_label(method: str | None) -> str:
    """``method`` label: a standard HTTP method, else ``_OTHER``."""
    return _METHOD_LABELS.get(method, OTHER_METHOD) if method else OTHER_METHOD


# The keys are pattern strings from the URLconf, so the cache is bounded by the
# number of routes; the size guard only protects against pathological
# resolvers that invent routes.
_ROUTE_CACHE_MAX = 10_000
_route_cache: dict[str, str] = {}


def route_label(resolver_match: Any) -> str:
    """``route`` label for a request's ``resolver_match`` (``None`` when unresolved)."""
    if resolver_match is None:
        return UNMATCHED
    route = resolver_match.route
    if route is None:
        return UNMATCHED
    label = _route_cache.get(route)
    if label is None:
        label = _route_from_pattern(route)
        if len(_route_cache) < _ROUTE_CACHE_MAX:
            _route_cache[route] = label
    return label


def _route_from_pattern(route: str) -> str:
    # Django joins nested include() prefixes for us and drops the "^" of
    # inner regexes; what is left of regex anchors is a leading "^" and a
    # trailing "$" or "\Z".
    if route.startswith("^"):
        route = route[1:]
    if route.endswith("\\Z"):
        route = route[:-2]
    elif route.endswith("$") and not route.endswith("\\$"):
        route = route[:-1]
    return "/" + route


class CappedLabel:
    """Admits at most ``cap`` distinct values for one label; the rest become ``_other``.

    Without a shared directory the set is per process. With one (Prometheus
    multiprocess mode), the admitted values are recorded in a small file in
    that directory under an exclusive lock, so every worker, including
    workers started later, agrees on the same set and the cap holds for the
    whole deployment. A process touches the file only when it meets a value it
    has not seen yet, and never again once the set is full.
    """

    def __init__(self, metric: str, cap: int, shared_dir: str | None = None) -> None:
        self.cap = cap
        self._admitted: set[str] = set()
        self._full = False
        self._shared_failed = False
        self._lock = threading.Lock()
        self._path = (
            os.path.join(shared_dir, f"labels_{metric}.txt") if shared_dir is not None else None
        )

    def __call__(self, value: str) -> str:
        if value in self._admitted:
            return value
        if self._full:
            return OTHER
        with self._lock:
            if value in self._admitted:
                return value
            admitted = None
            if self._path is not None:
                try:
                    admitted = self._admit_shared(value)
                except OSError as exc:
                    # A full or read-only store: this process decides alone
                    # (the cap then holds per process) until it can write.
                    if not self._shared_failed:
                        self._shared_failed = True
                        logger.error(
                            "django_observability: could not record label values in %s (%s); "
                            "capping per process meanwhile",
                            self._path,
                            exc.strerror or exc,
                        )
            if admitted is None:
                admitted = len(self._admitted) < self.cap
                if admitted:
                    self._admitted.add(value)
                elif self._path is None:
                    self._full = True
        return value if admitted else OTHER

    def _admit_shared(self, value: str) -> bool:
        assert self._path is not None
        line = value.replace("\n", " ")
        with open(self._path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.seek(0)
                known = [v for v in fh.read().split("\n") if v]
                admitted = line in known
                if not admitted and len(known) < self.cap:
                    fh.write(line + "\n")
                    fh.flush()
                    known.append(line)
                    admitted = True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        self._admitted.update(known)
        if len(known) >= self.cap:
            self._full = True
        return admitted


# Database queries are faster than requests: 0.5 ms to 10 s.
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Cache operations: an in-process cache answers in microseconds (all in the first
# bucket), a network cache in tenths of a millisecond; 100 µs to 1 s.
CACHE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

# Background tasks run, and wait in their queue, from milliseconds to an hour.
TASK_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
)  # fmt: skip

# At most this many task names (or name and outcome pairs) keep their label
# children at hand; the names themselves are capped by the label cap anyway.
_CHILDREN_MAX = 1000

#: ``outcome`` of tasks_finished_total and task_duration_seconds: a fixed set.
#: ``retry``: the run asked to be retried (a new message is enqueued);
#: ``rejected``/``ignored``: the task raised Celery's ``Reject``/``Ignore``;
#: ``revoked``: revoked before it ran, expired, or terminated while running.
TASK_OUTCOMES = ("success", "failure", "retry", "rejected", "ignored", "revoked")


@dataclass(frozen=True)
class Instrument:
    """One Prometheus instrument, declared once in :data:`INSTRUMENTS`.

    ``attr`` is the attribute of :class:`Metrics` that holds it; ``buckets``
    names the bucket layout of a histogram (``"latency"`` and ``"size"`` come
    from the settings, ``"db"`` is :data:`DB_BUCKETS`). The metric's full name
    is ``<namespace>_<name>`` (plus ``_total`` for a counter, as
    prometheus_client writes it).
    """

    attr: str
    kind: type[Counter] | type[Gauge] | type[Histogram]
    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    unit: str = ""
    buckets: str | None = None
    multiprocess_mode: str | None = None

    def create(
        self,
        namespace: str,
        registry: CollectorRegistry | None,
        buckets: dict[str, Sequence[float]],
    ) -> Any:
        """The instrument, registered with ``registry`` (``None``: with none)."""
        options: dict[str, Any] = {"namespace": namespace, "registry": registry}
        if self.unit:
            options["unit"] = self.unit
        if self.buckets is not None:
            options["buckets"] = buckets[self.buckets]
        if self.multiprocess_mode is not None:
            options["multiprocess_mode"] = self.multiprocess_mode
        return self.kind(self.name, self.documentation, self.labels, **options)


# Every instrument the app makes, in registration order. Adding a metric is
# adding a row here; Metrics creates it and unregister() removes it.
INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        "duration",
        Histogram,
        "http_server_request_duration_seconds",
        "Duration of HTTP server requests, by route template.",
        ("method", "route", "status"),
        unit="seconds",
        buckets="latency",
    ),
    Instrument(
        "active",
        Gauge,
        "http_server_active_requests",
        "Number of HTTP server requests in flight.",
        ("method",),
        multiprocess_mode="livesum",
    ),
    Instrument(
        "body_size",
        Histogram,
        "http_server_response_body_size_bytes",
        "Size of HTTP response bodies, by route template.",
        ("method", "route"),
        unit="bytes",
        buckets="size",
    ),
    Instrument(
        "exceptions",
        Counter,
        "http_server_exceptions",
        "Exceptions raised by views (turned into a 500 response, or raised while a "
        "streamed body was sent), by route and class.",
        ("route", "exception"),
    ),
    Instrument(
        "build_info",
        Gauge,
        "django_observability_build_info",
        "Versions of django-observability, Django, Python and the service; value 1.",
        ("version", "django_version", "python_version", "service_version"),
        multiprocess_mode="livemostrecent",
    ),
    # Health: the latest result of each check, as this process saw it.
    Instrument(
        "health_status",
        Gauge,
        "health_check_status",
        "Latest result of a health check: 1 pass, 0.5 warn, 0 fail.",
        ("check",),
        multiprocess_mode="livemostrecent",
    ),
    Instrument(
        "health_duration",
        Gauge,
        "health_check_duration_seconds",
        "Duration of the latest run of a health check.",
        ("check",),
        unit="seconds",
        multiprocess_mode="livemostrecent",
    ),
    # Per worker process, from psutil; named apart from prometheus_client's
    # own process_* collector, which is silent in multiprocess mode.
    Instrument(
        "process_memory",
        Gauge,
        "django_process_resident_memory_bytes",
        "Resident memory of this worker process.",
        multiprocess_mode="liveall",
    ),
    Instrument(
        "process_cpu",
        Gauge,
        "django_process_cpu_seconds",
        "CPU time (user + system) used by this worker process.",
        multiprocess_mode="liveall",
    ),
    Instrument(
        "process_fds",
        Gauge,
        "django_process_open_fds",
        "Open file descriptors of this worker process.",
        multiprocess_mode="liveall",
    ),
    Instrument(
        "process_threads",
        Gauge,
        "django_process_threads",
        "Threads of this worker process.",
        multiprocess_mode="liveall",
    ),
    Instrument(
        "db_duration",
        Histogram,
        "db_client_operation_duration_seconds",
        "Duration of database queries, by connection alias and operation.",
        ("alias", "operation"),
        unit="seconds",
        buckets="db",
    ),
    Instrument(
        "db_errors",
        Counter,
        "db_client_errors",
        "Database queries that raised, by connection alias and exception class.",
        ("alias", "error"),
    ),
    # Caches (cache.py): every alias in CACHES, its backend untouched.
    Instrument(
        "cache_operations",
        Counter,
        "cache_operations",
        "Cache operations, by alias, operation and result (hit, miss for reads; ok, error); "
        "get_many counts one hit or miss per key.",
        ("alias", "operation", "result"),
    ),
    Instrument(
        "cache_duration",
        Histogram,
        "cache_operation_duration_seconds",
        "Duration of cache operations, by alias and operation.",
        ("alias", "operation"),
        unit="seconds",
        buckets="cache",
    ),
    Instrument(
        "auth_events",
        Counter,
        "auth_events",
        "Authentication events: login, logout, login_failed.",
        ("event",),
    ),
    Instrument(
        "audit_events",
        Counter,
        "audit_events",
        "Audited actions (model changes and the project's own events), by action and target.",
        ("action", "target"),
    ),
    Instrument(
        "security_events",
        Counter,
        "security_events",
        "Security events: permission_denied, suspicious_operation, disallowed_host, "
        "csrf_failure...",
        ("type",),
    ),
    # Background tasks (Celery): the task label is the registered name, capped.
    Instrument(
        "tasks_enqueued",
        Counter,
        "tasks_enqueued",
        "Tasks enqueued (retries included: each is a new message), by task name.",
        ("task",),
    ),
    Instrument(
        "tasks_finished",
        Counter,
        "tasks_finished",
        "Task runs finished, by task name and outcome (success, failure, retry, rejected, "
        "ignored, revoked).",
        ("task", "outcome"),
    ),
    Instrument(
        "task_duration",
        Histogram,
        "task_duration_seconds",
        "Run time of tasks in the worker, by task name and outcome.",
        ("task", "outcome"),
        unit="seconds",
        buckets="task",
    ),
    Instrument(
        "task_queue_wait",
        Histogram,
        "task_queue_wait_seconds",
        "Time from enqueueing (or the time a task was due) to its start in a worker.",
        ("task",),
        unit="seconds",
        buckets="task",
    ),
    Instrument(
        "tasks_active",
        Gauge,
        "tasks_active",
        "Tasks running now, by task name.",
        ("task",),
        multiprocess_mode="livesum",
    ),
    # Scheduled jobs (Celery beat entries, management commands; jobs.py): "max"
    # keeps what exited processes recorded, a success is still a success.
    Instrument(
        "job_last_success",
        Gauge,
        "job_last_success_timestamp_seconds",
        "When a scheduled job (Celery beat entry, management command) last succeeded, "
        "as Unix time.",
        ("job",),
        multiprocess_mode="max",
    ),
    Instrument(
        "job_expected_interval",
        Gauge,
        "job_expected_interval_seconds",
        "How often a scheduled job is expected to succeed (its schedule's interval).",
        ("job",),
        unit="seconds",
        multiprocess_mode="max",
    ),
    # Outgoing HTTP (http_client.py): through OpenTelemetry's instrumentations.
    Instrument(
        "http_client_duration",
        Histogram,
        "http_client_request_duration_seconds",
        "Duration of outgoing HTTP requests, by method, server address (capped) and status "
        "(error: no response).",
        ("method", "server_address", "status"),
        unit="seconds",
        buckets="latency",
    ),
    # Redis used directly (redis_client.py): redis-py's commands, whoever sends them.
    Instrument(
        "redis_duration",
        Histogram,
        "redis_command_duration_seconds",
        "Duration of Redis commands sent with redis-py (a pipeline is one PIPELINE), by "
        "operation (capped), server address (capped) and result (ok, error, cancelled).",
        ("operation", "server_address", "result"),
        unit="seconds",
        buckets="cache",
    ),
    # Database connections (db_connections.py): alias is a key of DATABASES. The pool's
    # figures are this process's pool, sampled; livesum adds up the live workers' pools.
    Instrument(
        "db_connections_created",
        Counter,
        "db_client_connections_created",
        "Database server connections opened, by alias (with Django's pool: by the pool).",
        ("alias",),
    ),
    Instrument(
        "db_connection_errors",
        Counter,
        "db_client_connection_errors",
        "Failed attempts to open a database connection, by alias.",
        ("alias",),
    ),
    Instrument(
        "db_connection_timeouts",
        Counter,
        "db_client_connection_timeouts",
        "Requests for a connection that Django's pool could not serve in its timeout, by alias.",
        ("alias",),
    ),
    Instrument(
        "db_connection_count",
        Gauge,
        "db_client_connection_count",
        "Connections of Django's pool, by alias and state (used, idle).",
        ("alias", "state"),
        multiprocess_mode="livesum",
    ),
    Instrument(
        "db_connection_max",
        Gauge,
        "db_client_connection_max",
        "Most connections Django's pool may open (its max_size), by alias.",
        ("alias",),
        multiprocess_mode="livesum",
    ),
    Instrument(
        "db_connection_pending",
        Gauge,
        "db_client_connection_pending_requests",
        "Requests waiting for a connection of Django's pool, by alias.",
        ("alias",),
        multiprocess_mode="livesum",
    ),
    Instrument(
        "db_connection_requests",
        Counter,
        "db_client_connection_requests",
        "Connections asked of Django's pool, by alias.",
        ("alias",),
    ),
    Instrument(
        "db_connection_queued",
        Counter,
        "db_client_connection_queued_requests",
        "Connections asked of Django's pool that had to wait for one, by alias.",
        ("alias",),
    ),
    Instrument(
        "db_connection_wait_time",
        Counter,
        "db_client_connection_wait_time_seconds",
        "Time spent waiting for a connection of Django's pool, by alias.",
        ("alias",),
    ),
)

# Made on the first readiness evaluation, not with the others: a label-less
# gauge is exported (as 0) from its creation, which would read "not ready" in
# a process that was never asked.
HEALTH_READY = Instrument(
    "health_ready",
    Gauge,
    "health_ready",
    "1 when the latest readiness evaluation passed or warned, else 0.",
    multiprocess_mode="livemin",
)

# Labels whose values come from outside the URLconf, capped per metric:
# attribute of Metrics -> the name the cap is kept under (its file in
# multiprocess mode, so renaming one resets its admitted values).
CAPPED_LABELS: dict[str, str] = {
    "exception_label": "exception",
    "db_error_label": "db_error",
    "audit_action_label": "audit_action",
    "audit_target_label": "audit_target",
    "security_type_label": "security_type",
    "task_label": "task",
    "job_label": "job",
    "server_address_label": "server_address",
    "redis_operation_label": "redis_operation",
}


class Metrics:
    """The app's instruments, created for one namespace and bucket layout.

    Each row of :data:`INSTRUMENTS` becomes the attribute it names
    (``metrics.duration``...), and each entry of :data:`CAPPED_LABELS` a
    :class:`CappedLabel`; ``health_ready`` is ``None`` until the first
    readiness evaluation.
    """

    def __init__(
        self,
        namespace: str = "",
        latency_buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
        size_buckets: Sequence[float] = DEFAULT_SIZE_BUCKETS,
        label_cap: int = SETTINGS["METRICS_LABEL_CAP"].default,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.registry = registry
        self.namespace = namespace
        self._buckets: dict[str, Sequence[float]] = {
            "latency": latency_buckets,
            "size": size_buckets,
            "db": DB_BUCKETS,
            "task": TASK_BUCKETS,
            "cache": CACHE_BUCKETS,
        }
        # What unregister() removes: every instrument made, including later ones.
        self._collectors: list[Any] = []
        # Label children of the task metrics, by task name (see _task_child).
        self._task_waits: dict[str, Any] = {}
        self._task_actives: dict[str, Any] = {}
        self._task_finisheds: dict[tuple[str, str], Any] = {}
        self._task_durations: dict[tuple[str, str], Any] = {}
        self._http_client_children: dict[tuple[str, str, str], Any] = {}
        self._redis_children: dict[tuple[str, str, str], Any] = {}
        for instrument in INSTRUMENTS:
            setattr(self, instrument.attr, self._create(instrument))
        self.build_info.labels(
            __version__, django.get_version(), platform.python_version(), conf.SERVICE_VERSION
        ).set(1)
        self.health_ready: Gauge | None = None
        self._process_next_update = 0.0
        shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        for attr, label in CAPPED_LABELS.items():
            setattr(self, attr, CappedLabel(_full_name(namespace, label), label_cap, shared_dir))
        # Upper bounds of the duration buckets, as the histogram has them (with +Inf).
        bounds = sorted(float(bound) for bound in latency_buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._duration_bounds = bounds
        # ... and as their le label reads.
        self._duration_les = [floatToGoString(bound) for bound in bounds]
        # prometheus_client keeps no exemplars in multiprocess mode: there each
        # process keeps its own and /metrics merges them (exemplars.py).
        self._shared_exemplars: SharedExemplars | None = None
        multiprocess = getattr(values.ValueClass, "_multiprocess", False)
        if multiprocess and shared_dir is not None:
            self._shared_exemplars = SharedExemplars(shared_dir, self.duration._name)
        self.exemplars = not multiprocess or self._shared_exemplars is not None
        # Per duration series: when each bucket may take its next exemplar.
        self._exemplar_due: dict[tuple[str, str, str], list[float]] = {}
        self._db_children: dict[tuple[str, str], Any] = {}
        self._cache_children: dict[tuple[str, ...], Any] = {}
        # Children cached by label tuple: labels() validates and locks on every
        # call, a dict lookup does not. Keys are bounded by the label rules.
        self._duration_children: dict[tuple[str, str, str], Any] = {}
        self._size_children: dict[tuple[str, str], Any] = {}
        self._active_children: dict[str, Any] = {}

    def _create(self, instrument: Instrument) -> Any:
        collector = instrument.create(self.namespace, self.registry, self._buckets)
        self._collectors.append(collector)
        return collector

    def active_child(self, method: str) -> Any:
        child = self._active_children.get(method)
        if child is None:
            child = self._active_children[method] = self.active.labels(method)
        return child

    def observe(
        self,
        method: str,
        route: str,
        status: str,
        seconds: float,
        body_bytes: int | None,
        trace_ids: Callable[[], tuple[Any, ...] | None] | None = None,
    ) -> None:
        """Record one finished request.

        ``trace_ids`` returns the (trace id, span id) of the request's sampled
        span, or ``None``; it is called only when the observation's bucket is
        due an exemplar. Each bucket of a series takes at most one exemplar per
        :data:`EXEMPLAR_INTERVAL` seconds: a scrape shows only the latest one
        per bucket, so more would be work nobody sees.
        """
        key = (method, route, status)
        child = self._duration_children.get(key)
        if child is None:
            child = self._duration_children[key] = self.duration.labels(method, route, status)
        now = _monotonic()
        if trace_ids is not None and self.exemplars:
            due = self._exemplar_due.get(key)
            if due is None:
                due = self._exemplar_due[key] = [0.0] * len(self._duration_bounds)
            bucket = bisect_left(self._duration_bounds, seconds)
            ids = trace_ids() if now >= due[bucket] else None
            if ids is not None:
                due[bucket] = now + EXEMPLAR_INTERVAL
                shared = self._shared_exemplars
                if shared is None:
                    child.observe(seconds, {"trace_id": ids[0], "span_id": ids[1]})
                else:
                    child.observe(seconds)
                    shared.record(key, self._duration_les[bucket], ids[0], ids[1], seconds)
            else:
                child.observe(seconds)
        else:
            child.observe(seconds)
        if now >= self._process_next_update:
            self.update_process()
        if body_bytes is not None:
            skey = (method, route)
            schild = self._size_children.get(skey)
            if schild is None:
                schild = self._size_children[skey] = self.body_size.labels(method, route)
            schild.observe(body_bytes)

    def count_exception(self, route: str, exc_name: str) -> None:
        self.exceptions.labels(route, self.exception_label(exc_name)).inc()

    def observe_query(self, alias: str, operation: str, seconds: float) -> None:
        key = (alias, operation)
        child = self._db_children.get(key)
        if child is None:
            child = self._db_children[key] = self.db_duration.labels(alias, operation)
        child.observe(seconds)

    def cache_operations_child(self, alias: str, operation: str, result: str) -> Any:
        """The ``cache_operations_total`` series of (alias, operation, result), made once.

        ``alias`` is a key of ``CACHES`` and ``operation`` and ``result`` come
        from fixed sets (cache.py), so the series are bounded by the settings.
        """
        key = (alias, operation, result)
        child = self._cache_children.get(key)
        if child is None:
            child = self._cache_children[key] = self.cache_operations.labels(*key)
        return child

    def cache_duration_child(self, alias: str, operation: str) -> Any:
        """The ``cache_operation_duration_seconds`` series of (alias, operation), made once."""
        key = (alias, operation)
        child = self._cache_children.get(key)
        if child is None:
            child = self._cache_children[key] = self.cache_duration.labels(*key)
        return child

    def count_db_error(self, alias: str, error: str) -> None:
        self.db_errors.labels(alias, self.db_error_label(error)).inc()

    def count_auth(self, event: str) -> None:
        self.auth_events.labels(event).inc()

    def count_audit(self, action: str, target: str, capped: bool) -> None:
        """One audited action; ``capped`` for values that come from outside the code."""
        if capped:
            action, target = self.audit_action_label(action), self.audit_target_label(target)
        self.audit_events.labels(action, target).inc()

    def count_security(self, event_type: str, capped: bool) -> None:
        if capped:
            event_type = self.security_type_label(event_type)
        self.security_events.labels(event_type).inc()

    def count_enqueued(self, task: str) -> None:
        """One task enqueued (``task``: its registered name, capped here)."""
        self.tasks_enqueued.labels(self.task_label(task)).inc()

    def task_started(self, task: str, queue_wait: float | None) -> None:
        """A task starts: ``tasks_active`` goes up, ``queue_wait`` (seconds) is observed.

        ``queue_wait`` is ``None`` when unknown (a message without our header).
        """
        if queue_wait is not None:
            self._task_child(self._task_waits, self.task_queue_wait, task).observe(queue_wait)
        self._task_child(self._task_actives, self.tasks_active, task).inc()

    def task_finished(
        self, task: str, outcome: str, seconds: float | None, started: bool = True
    ) -> None:
        """A task run ended with ``outcome`` (one of :data:`TASK_OUTCOMES`) after ``seconds``.

        ``started``: the run was counted by :meth:`task_started` in this
        process (``False`` for a task revoked before it ran, or one that a
        worker's main process saw end without its child: a hard time limit,
        a lost child).
        """
        key = (task, outcome)
        finished = self._task_finisheds.get(key)
        if finished is None:
            if outcome not in TASK_OUTCOMES:
                raise ValueError(f"not a task outcome: {outcome!r}")
            finished = self.tasks_finished.labels(self.task_label(task), outcome)
            if len(self._task_finisheds) < _CHILDREN_MAX:
                self._task_finisheds[key] = finished
        finished.inc()
        if seconds is not None:
            duration = self._task_durations.get(key)
            if duration is None:
                duration = self.task_duration.labels(self.task_label(task), outcome)
                if len(self._task_durations) < _CHILDREN_MAX:
                    self._task_durations[key] = duration
            duration.observe(seconds)
        if started:
            self._task_child(self._task_actives, self.tasks_active, task).dec()

    def _task_child(self, memo: dict[str, Any], metric: Any, task: str) -> Any:
        """``metric``'s series for a task, kept per name: a worker runs few task names.

        Looked up once per name (capped there) instead of at every run:
        ``labels()`` validates and locks each time. The memo is bounded: names
        past :data:`_CHILDREN_MAX` are looked up each time.
        """
        child = memo.get(task)
        if child is None:
            child = metric.labels(self.task_label(task))
            if len(memo) < _CHILDREN_MAX:
                memo[task] = child
        return child

    def record_http_client(
        self, method: str, server_address: str, status: str, seconds: float
    ) -> None:
        """One outgoing HTTP request (``server_address`` capped here; ``status``: the code, or
        ``error`` when no response came)."""
        key = (method, server_address, status)
        child = self._http_client_children.get(key)
        if child is None:
            child = self.http_client_duration.labels(
                method_label(method), self.server_address_label(server_address), status
            )
            if len(self._http_client_children) < _CHILDREN_MAX:
                self._http_client_children[key] = child
        child.observe(seconds)

    def record_redis_command(
        self, operation: str, server_address: str, result: str, seconds: float
    ) -> None:
        """One Redis command or pipeline (``operation`` and ``server_address`` capped here)."""
        key = (operation, server_address, result)
        child = self._redis_children.get(key)
        if child is None:
            child = self.redis_duration.labels(
                self.redis_operation_label(operation),
                self.server_address_label(server_address),
                result,
            )
            if len(self._redis_children) < _CHILDREN_MAX:
                self._redis_children[key] = child
        child.observe(seconds)

    def set_ready(self, ready: bool) -> None:
        """Record the outcome of a readiness evaluation (``health_ready``)."""
        gauge = self.health_ready
        if gauge is None:
            with _metrics_lock:
                gauge = self.health_ready
                if gauge is None:
                    gauge = self.health_ready = self._create(HEALTH_READY)
        gauge.set(1 if ready else 0)

    def record_health(self, check: str, status: str, seconds: float) -> None:
        self.health_status.labels(check).set(HEALTH_VALUES[status])
        self.health_duration.labels(check).set(seconds)

    def update_process(self, force: bool = False) -> None:
        """Refresh the per-process gauges (at most every few seconds unless forced)."""
        now = _monotonic()
        if not force and now < self._process_next_update:
            return
        self._process_next_update = now + PROCESS_UPDATE_SECONDS
        try:
            process = _process()
            with process.oneshot():
                self.process_memory.set(process.memory_info().rss)
                cpu = process.cpu_times()
                self.process_cpu.set(cpu.user + cpu.system)
                self.process_fds.set(process.num_fds())
                self.process_threads.set(process.num_threads())
        except Exception:
            # psutil missing a figure on this platform: stop trying.
            self._process_next_update = math.inf
            logger.exception("django_observability: per-process metrics switched off")

    def unregister(self) -> None:
        """Remove every instrument made so far from the registry (a no-op without one)."""
        if self.registry is None:
            return
        for collector in self._collectors:
            with contextlib.suppress(KeyError):
                self.registry.unregister(collector)


_monotonic = time.monotonic
HEALTH_VALUES = {"pass": 1.0, "warn": 0.5, "fail": 0.0}
PROCESS_UPDATE_SECONDS = 10.0
_process_obj: Any = None


def _process() -> Any:
    """psutil's handle on this process, made again after a fork."""
    global _process_obj
    import psutil

    if _process_obj is None or _process_obj.pid != os.getpid():
        _process_obj = psutil.Process()
    return _process_obj


def _full_name(namespace: str, name: str) -> str:
    return f"{namespace}_{name}" if namespace else name


_metrics: Metrics | None = None
_metrics_failed = False
_metrics_lock = threading.Lock()


def get_metrics() -> Metrics | None:
    """The process's request instruments, created on first use.

    Returns ``None`` when metrics are switched off, or when they could not be
    created (an invalid setting; logged once).
    """
    metrics = _metrics
    if metrics is not None or _metrics_failed:
        return metrics
    return _create_metrics()


def disable_in_this_process() -> None:
    """Record no metrics from this process (a one-off command such as ``manage.py health``).

    In multiprocess mode every process that records writes files for its pid
    into ``PROMETHEUS_MULTIPROC_DIR``; a command run beside the workers (an
    exec probe) would leave series behind that no worker owns.
    """
    global _metrics_failed
    with _metrics_lock:
        _metrics_failed = True


def _create_metrics() -> Metrics | None:
    global _metrics, _metrics_failed
    with _metrics_lock:
        if _metrics is not None or _metrics_failed:
            return _metrics
        if not conf.METRICS_ENABLED:
            _metrics_failed = True
            return None
        try:
            _metrics = Metrics(
                namespace=valid_or_default("METRICS_NAMESPACE"),
                latency_buckets=valid_or_default("METRICS_LATENCY_BUCKETS"),
                size_buckets=valid_or_default("METRICS_SIZE_BUCKETS"),
                label_cap=valid_or_default("METRICS_LABEL_CAP"),
            )
        except Exception:
            _metrics_failed = True
            logger.exception("django_observability: could not create the request metrics")
        return _metrics


# The settings (names without the prefix) the instruments are made from:
# a change to one of them calls for reset_metrics().
SETTINGS_USED = frozenset(
    {
        "METRICS_ENABLED",
        "METRICS_NAMESPACE",
        "METRICS_LATENCY_BUCKETS",
        "METRICS_SIZE_BUCKETS",
        "METRICS_LABEL_CAP",
        "SERVICE_VERSION",
    }
)


def reset_metrics() -> None:
    """Drop the instruments so the next use recreates them from the settings.

    This module's one reset path: ``apps.py`` calls it when a setting in
    :data:`SETTINGS_USED` changes; tests call it for fresh values.
    """
    global _metrics, _metrics_failed
    with _metrics_lock:
        if _metrics is not None:
            _metrics.unregister()
        _metrics = None
        _metrics_failed = False
