"""Scheduled jobs seen to run: the last success of Celery beat entries and of commands.

A scheduled job is named by its Celery beat entry or, for a management
command run by cron, by the command's name. Each success records
``job_last_success_timestamp_seconds{job}`` (Unix time) and each run, success
or failure, ``job_expected_interval_seconds{job}`` when the job's interval is
known; the alert ``DjangoJobMissed`` compares the two.

* **Celery beat entries** (:func:`beat_job`): Celery 5.5 and later mark what
  beat sends with the ``celery_beat_task`` header but not with the entry's
  name, so the entry is found in ``app.conf.beat_schedule`` by task name (and,
  when several entries run one task, by arguments). django-celery-beat's
  database scheduler names its entry in the ``periodic_task_name`` header,
  which wins. The worker process that ran the task records the gauges, and
  pushes them to the Pushgateway when one is configured (a worker restart
  then loses nothing).
* **Management commands** named in ``OBSERVABILITY_JOBS``: :func:`install`
  wraps Django's ``BaseCommand.execute`` once, so no command needs a change;
  a declared command's run that returns is a success, one that raises a
  failure. A command lives too briefly to be scraped, so the gauges are
  pushed to the Prometheus Pushgateway at ``OBSERVABILITY_PUSHGATEWAY_URL``
  (group ``job=<job name>``, no ``instance``: the Prometheus convention for
  batch jobs; scrape the gateway with ``honor_labels: true``).

A push has a hard timeout (``OBSERVABILITY_PUSHGATEWAY_TIMEOUT``); a gateway
that is down or refuses is logged once per process and changes nothing else:
the command's exceptions and exit status, and the task's result, are theirs.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, pushadd_to_gateway
from prometheus_client.core import GaugeMetricFamily, Metric

from django_observability.conf import valid_or_default
from django_observability.faults import fault
from django_observability.imports import after_import
from django_observability.metrics import INSTRUMENTS, get_metrics
from django_observability.tasks.context import message_header

__all__ = [
    "BEAT_HEADER",
    "ENTRY_HEADER",
    "beat_interval",
    "beat_job",
    "command_job",
    "declared_interval",
    "install",
    "push",
    "record_run",
]

logger = logging.getLogger("django_observability")

#: Header Celery beat (5.5+) sets on every message it sends.
BEAT_HEADER = "celery_beat_task"
#: Header naming the beat entry (django-celery-beat's database scheduler sets
#: it; a ``beat_schedule`` entry may set it in ``options["headers"]``).
ENTRY_HEADER = "periodic_task_name"

_ROWS = {row.attr: row for row in INSTRUMENTS}
_LAST_SUCCESS = _ROWS["job_last_success"]
_INTERVAL = _ROWS["job_expected_interval"]

# Gateways (URLs) whose failure this process has logged already.
_push_failures_logged: set[str] = set()


# --- which job, and how often --------------------------------------------------------


def declared_interval(job: str) -> float | None:
    """The interval ``OBSERVABILITY_JOBS`` declares for ``job`` (seconds), or ``None``."""
    spec = valid_or_default("JOBS").get(job)
    return None if spec is None else float(spec["interval"])


def command_job(command: Any) -> str | None:
    """The job a management command instance runs as: its name, if ``OBSERVABILITY_JOBS`` has it.

    A command's name is its module's (``app/management/commands/<name>.py``).
    """
    name = type(command).__module__.rpartition(".")[2]
    return name if name in valid_or_default("JOBS") else None


def beat_job(app: Any, task_name: str, request: Any) -> str | None:
    """The beat entry a task run was scheduled by, or ``None`` when beat did not send it.

    ``request`` is the run's ``task.request``. The entry's name comes from the
    ``periodic_task_name`` header if there is one; otherwise, for a message
    beat marked, from ``app.conf.beat_schedule``: the one entry running
    ``task_name`` (narrowed by the run's arguments when there are several).
    Without a single match (entries kept elsewhere, or alike) the task's
    name stands for the job.
    """
    named = message_header(request, ENTRY_HEADER)
    if isinstance(named, str) and named:
        return named
    if not message_header(request, BEAT_HEADER):
        return None
    schedule = getattr(app.conf, "beat_schedule", None) or {}
    candidates = [
        name
        for name, entry in schedule.items()
        if isinstance(entry, dict) and entry.get("task") == task_name
    ]
    if len(candidates) > 1:
        args = list(getattr(request, "args", None) or ())
        kwargs = dict(getattr(request, "kwargs", None) or {})
        candidates = [
            name
            for name in candidates
            if list(schedule[name].get("args") or ()) == args
            and dict(schedule[name].get("kwargs") or {}) == kwargs
        ]
    return candidates[0] if len(candidates) == 1 else task_name


def beat_interval(app: Any, job: str) -> float | None:
    """Seconds between two runs of the beat entry ``job``, or ``None`` when not fixed.

    ``OBSERVABILITY_JOBS`` wins; otherwise a plain interval schedule (a number,
    a ``timedelta``, ``celery.schedules.schedule``) gives it. A ``crontab`` or
    ``solar`` schedule has no one interval: declare it in ``OBSERVABILITY_JOBS``.
    """
    declared = declared_interval(job)
    if declared is not None:
        return declared
    entry = (getattr(app.conf, "beat_schedule", None) or {}).get(job)
    every = entry.get("schedule") if isinstance(entry, dict) else None
    from celery import schedules

    if type(every) is schedules.schedule:
        every = every.run_every
    if isinstance(every, timedelta):
        every = every.total_seconds()
    if isinstance(every, (int, float)) and not isinstance(every, bool) and every > 0:
        return float(every)
    return None


# --- recording -----------------------------------------------------------------------


def record_run(
    job: str,
    succeeded: bool,
    interval: float | None,
    *,
    local: bool,
    now: float | None = None,
) -> None:
    """One run of ``job`` ended: the gauges here (``local``) and at the Pushgateway.

    A success sets the last success time; every run sets the interval when
    known. Never raises.
    """
    when = time.time() if now is None else now
    if local:
        try:
            metrics = get_metrics()
            if metrics is not None:
                label = metrics.job_label(job)
                if succeeded:
                    metrics.job_last_success.labels(label).set(when)
                if interval is not None:
                    metrics.job_expected_interval.labels(label).set(interval)
        except Exception:
            fault("jobs.record")
    if succeeded or interval is not None:
        try:
            push(job, when if succeeded else None, interval)
        except Exception:
            fault("jobs.push")


class _JobSamples:
    """The gauges of one job's run, as a collector for a push (no multiprocess files)."""

    def __init__(self, job: str, succeeded_at: float | None, interval: float | None) -> None:
        self.job = job
        self.succeeded_at = succeeded_at
        self.interval = interval

    def collect(self) -> Iterator[Metric]:
        namespace = valid_or_default("METRICS_NAMESPACE")
        for row, value in ((_LAST_SUCCESS, self.succeeded_at), (_INTERVAL, self.interval)):
            if value is None:
                continue
            family = GaugeMetricFamily(
                f"{namespace}_{row.name}" if namespace else row.name,
                row.documentation,
                labels=row.labels,
            )
            family.add_metric([self.job], value)
            yield family


def push(job: str, succeeded_at: float | None, interval: float | None) -> bool:
    """Push one run's gauges to ``OBSERVABILITY_PUSHGATEWAY_URL``; whether it was taken.

    The group is ``job=<job>``; the push replaces only these metrics in it
    (``pushadd``: what else the job pushes there stays). ``False`` without a
    gateway, or when it failed (logged once per gateway in this process).
    """
    url = valid_or_default("PUSHGATEWAY_URL")
    if not url:
        return False
    registry = CollectorRegistry(auto_describe=True)
    try:
        registry.register(_JobSamples(job, succeeded_at, interval))
        pushadd_to_gateway(
            url, job=job, registry=registry, timeout=valid_or_default("PUSHGATEWAY_TIMEOUT")
        )
    except Exception as exc:
        if url in _push_failures_logged:
            logger.debug("django_observability: push of job %r failed", job, exc_info=True)
        else:
            _push_failures_logged.add(url)
            logger.warning(
                "django_observability: could not push job %r to the Pushgateway at %s (%s: %s); "
                "its run is not recorded",
                job,
                url,
                type(exc).__name__,
                exc,
            )
        return False
    return True


# --- wiring --------------------------------------------------------------------------


def _wrap_execute(execute: Any) -> Any:
    @functools.wraps(execute)
    def observed_execute(self: Any, *args: Any, **options: Any) -> Any:
        try:
            job = command_job(self)
        except Exception:
            fault("jobs.command")
            job = None
        if job is None:
            return execute(self, *args, **options)
        try:
            result = execute(self, *args, **options)
        except Exception:
            record_run(job, False, declared_interval(job), local=False)
            raise
        record_run(job, True, declared_interval(job), local=False)
        return result

    observed_execute.observability_job_hook = True  # type: ignore[attr-defined]
    return observed_execute


def _task_finished(
    sender: Any = None, task: Any = None, state: str | None = None, **kwargs: Any
) -> None:
    """``task_postrun``: a beat entry's run ended (in the process that ran it)."""
    if state not in ("SUCCESS", "FAILURE"):
        return  # a retry, rejected, ignored: neither success nor the end of the run
    try:
        if task is None:
            return
        job = beat_job(task.app, task.name, task.request)
        if job is None:
            return
        interval = beat_interval(task.app, job)
    except Exception:
        fault("jobs.beat")
        return
    record_run(job, state == "SUCCESS", interval, local=True)


_BEAT_UID = "django_observability.jobs.task_postrun"


def _connect_celery() -> None:
    from celery import signals

    signals.task_postrun.connect(_task_finished, weak=False, dispatch_uid=_BEAT_UID)


def install() -> None:
    """Record declared commands' runs and beat entries' runs (from ``AppConfig.ready()``).

    ``BaseCommand.execute`` is wrapped once per process (the wrapper reads
    ``OBSERVABILITY_JOBS`` on each call, so undeclared commands only pay a
    dict lookup); Celery's ``task_postrun`` is connected once Celery is
    imported.
    """
    from django.core.management.base import BaseCommand

    if not getattr(BaseCommand.execute, "observability_job_hook", False):
        BaseCommand.execute = _wrap_execute(BaseCommand.execute)  # type: ignore[method-assign]
    after_import("celery", _connect_celery)


def uninstall() -> None:
    """Undo :func:`install` (for tests)."""
    from django.core.management.base import BaseCommand

    execute = BaseCommand.execute
    if getattr(execute, "observability_job_hook", False):
        BaseCommand.execute = execute.__wrapped__  # type: ignore[attr-defined,method-assign]
    if "celery" in sys.modules:
        from celery import signals

        signals.task_postrun.disconnect(_task_finished, dispatch_uid=_BEAT_UID)
