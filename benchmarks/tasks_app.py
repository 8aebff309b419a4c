"""The task benchmark's Celery app: ``celery -A benchmarks.tasks_app:app worker``.

Configured from ``tasks_settings`` (``BENCH_TASKS_CONFIG``). On import, before
Django is set up, a traced configuration gets its TracerProvider
(``stacks.make_provider``: BatchSpanProcessor, counting exporter):
``otel_celery`` enables ``CeleryInstrumentor`` with it, ``ours_full`` hands it
to the app (``tracing.use_tracer_provider``), whose Celery receivers make the
spans (``tracing/celery.py``).

The one task, ``bench.noop``, does nothing but note, in a worker, the
``perf_counter()`` of every ``BENCH_TASKS_BLOCK``-th run after the first
``BENCH_TASKS_WARMUP`` ones; the run numbered ``BENCH_TASKS_COUNT`` (the
last one enqueued) creates the file ``BENCH_TASKS_REPORT + ".done"``. When the
process that ran the tasks stops (``worker_shutdown`` for the solo pool,
``worker_process_shutdown`` for a prefork child), :func:`write_report` writes
those times and what the instrumentation recorded (tasks counted, spans
exported) to ``BENCH_TASKS_REPORT``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.tasks_settings")

from benchmarks.tasks_settings import CONFIG, TRACED

provider: Any = None
exporter: Any = None
if CONFIG in TRACED:
    from benchmarks.stacks import DiscardingExporter, make_provider

    exporter = DiscardingExporter()
    provider = make_provider(1.0, exporter)
    if CONFIG == "otel_celery":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(tracer_provider=provider)
    else:
        from django_observability.tracing import use_tracer_provider

        use_tracer_provider(provider)

app = Celery("bench_tasks")
app.config_from_object("django.conf:settings", namespace="CELERY")

_perf_counter = time.perf_counter
_WARMUP = int(os.environ.get("BENCH_TASKS_WARMUP", "0"))
_BLOCK = int(os.environ.get("BENCH_TASKS_BLOCK", "0")) or 1
_COUNT = int(os.environ.get("BENCH_TASKS_COUNT", "0"))
_REPORT = os.environ.get("BENCH_TASKS_REPORT", "")
_runs = 0
_marks: list[float] = []
_reported = False


@app.task(name="bench.noop")
def noop() -> None:
    """A no-op task; in a worker it notes the time every block of runs (see the module)."""
    global _runs
    _runs += 1
    if _runs > _WARMUP and (_runs - _WARMUP - 1) % _BLOCK == 0:
        _marks.append(_perf_counter())
    if _runs == _COUNT and _REPORT:
        with open(_REPORT + ".done", "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))


def tasks_counted() -> float | None:
    """``tasks_finished_total`` for ``bench.noop``, summed over outcomes; ``None`` without ours."""
    if CONFIG not in ("ours_metrics_logs", "ours_full"):
        return None
    from prometheus_client import REGISTRY

    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name.endswith("tasks_finished_total") and sample.labels.get("task") == (
                "bench.noop"
            ):
                total += sample.value
    return total


def spans_seen() -> dict[str, Any] | None:
    """Spans the exporter received (after a flush) and their kinds; ``None`` untraced."""
    if provider is None:
        return None
    provider.force_flush()
    kinds: dict[str, int] = {}
    for _, _, _, kind in exporter.kept:
        kinds[kind] = kinds.get(kind, 0) + 1
    return {"exported": exporter.exported, "kept_kinds": kinds, "kept": exporter.kept[:32]}


def write_report(**kwargs: Any) -> None:
    """The process that ran the tasks writes its times and counts, once."""
    global _reported
    if _reported or not _runs or not _REPORT:
        return
    _reported = True
    report = {
        "pid": os.getpid(),
        "runs": _runs,
        "marks": _marks,
        "block": _BLOCK,
        "warmup": _WARMUP,
        "tasks_counted": tasks_counted(),
        "spans": spans_seen(),
    }
    with open(_REPORT, "w", encoding="utf-8") as fh:
        json.dump(report, fh)


# Connected before Django is set up, so they run before the app's own receivers
# of the same signals (which flush and store what the process kept).
signals.worker_process_shutdown.connect(write_report, weak=False, dispatch_uid="bench.report")
signals.worker_shutdown.connect(write_report, weak=False, dispatch_uid="bench.report.main")
