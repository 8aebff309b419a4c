"""One process of the task benchmark: ``python -m benchmarks.tasks_child MODE CONFIG ...``.

``enqueue``    publishes ``--count`` ``bench.noop`` messages to the broker named by
               ``BENCH_TASKS_BROKER`` through the configuration's own app, so that
               they carry what its producer side adds (our headers, the W3C trace
               context of a producer span) before a worker drains them.
``inprocess``  the per-task path a worker child runs, without a broker: Celery's
               ``build_tracer`` for ``bench.noop`` called in a loop with a request
               made from a message this app published (``memory://``), the way
               the worker hands it over (the message's headers, its properties,
               delivery info, a fresh task id per call). Warms up, times blocks of
               ``--block`` calls, reports the median block; then checks that every
               call was counted (``tasks_finished_total``), exported as one consumer
               span (traced configurations) and logged as one ``succeeded`` line
               naming its task id (with ``task.id`` and the span's ``trace.id`` and
               ``span.id`` in our JSON lines).

Both print one JSON object on stdout; ``inprocess`` exits non-zero when a check fails.
With ``BENCH_TASKS_COUNT_ONLY=1`` set, ``inprocess`` skips the checks (for counting
instructions under valgrind: the per-task difference of two runs is then the calls' alone).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from typing import Any

CONFIGS = ("bare", "otel_celery", "ours_metrics_logs", "ours_full")
OURS = ("ours_metrics_logs", "ours_full")  # django_observability installed
TRACED = ("otel_celery", "ours_full")  # consumer spans exported
TASK = "bench.noop"
SUCCEEDED = re.compile(r"Task bench\.noop\[([0-9a-f-]{36})\] succeeded in ")
RECEIVED = re.compile(r"Task bench\.noop\[([0-9a-f-]{36})\] received")


def _nested(line: dict[str, Any], dotted: str) -> Any:
    node: Any = line
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_log(
    path: str,
    task_ids: list[str],
    json_lines: bool,
    traced: bool,
    spans_kept: list[Any],
    received: bool,
    problems: list[str],
) -> dict[str, Any]:
    """One ``succeeded`` line (and, from a worker, one ``received`` line) per task id.

    Our JSON lines must also carry ``task.id`` (the same id) and, traced, the
    consumer span's ``trace.id``; the spans the exporter kept must be found
    in the lines with their ``trace.id`` and ``span.id``.
    """
    succeeded: Counter[str] = Counter()
    seen_received: Counter[str] = Counter()
    lines = bad_json = with_task = with_trace = 0
    by_span: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for text in fh:
            lines += 1
            if json_lines:
                try:
                    line = json.loads(text)
                except ValueError:
                    bad_json += 1
                    continue
                message = str(line.get("message", ""))
            else:
                message = text
            done = SUCCEEDED.search(message)
            if done:
                task_id = done.group(1)
                succeeded[task_id] += 1
                if json_lines:
                    if _nested(line, "task.id") == task_id:
                        with_task += 1
                    trace_id = _nested(line, "trace.id")
                    if trace_id:
                        with_trace += 1
                        by_span[_nested(line, "span.id")] = trace_id
                continue
            got = RECEIVED.search(message)
            if got:
                seen_received[got.group(1)] += 1
    expected = Counter(task_ids)
    if bad_json:
        problems.append(f"log: {bad_json} of {lines} lines are not JSON")
    if succeeded != expected:
        problems.append(
            f"log: {sum(succeeded.values())} 'succeeded' lines for {len(succeeded)} ids, "
            f"expected one for each of the {len(expected)} tasks run"
        )
    if received and seen_received != expected:
        problems.append(
            f"log: {sum(seen_received.values())} 'received' lines, expected {len(expected)}"
        )
    n = len(task_ids)
    joined = 0
    if json_lines:
        if with_task != n:
            problems.append(f"log: {n - with_task} 'succeeded' lines without their task.id")
        if traced:
            if with_trace != n:
                problems.append(f"log: {n - with_trace} 'succeeded' lines without trace.id")
            joined = sum(
                1 for trace_id, span_id, *_ in spans_kept if by_span.get(span_id) == trace_id
            )
            if joined != len(spans_kept):
                problems.append(
                    f"log: {len(spans_kept) - joined} of {len(spans_kept)} exported spans "
                    "have no 'succeeded' line with their trace.id and span.id"
                )
    result = {
        "log_lines": lines,
        "succeeded_lines": sum(succeeded.values()),
        "log_bytes": os.path.getsize(path),
    }
    if received:
        result["received_lines"] = sum(seen_received.values())
    if json_lines:
        result["lines_with_task_id"] = with_task
        if traced:
            result["lines_with_trace_id"] = with_trace
            result["spans_checked_against_log_lines"] = len(spans_kept)
            result["spans_joined_to_log_lines"] = joined
    return result


def check_counts(
    app_module: Any, calls: int, problems: list[str]
) -> tuple[dict[str, Any], list[Any]]:
    """Tasks counted and spans exported against the tasks run; the spans' kept ids."""
    verified: dict[str, Any] = {"tasks_run": calls}
    counted = app_module.tasks_counted()
    if counted is not None:
        verified["tasks_counted"] = counted
        if counted != calls:
            problems.append(f"tasks_finished_total: {counted:g}, expected {calls}")
    spans = app_module.spans_seen()
    kept: list[Any] = []
    if spans is not None:
        verified["spans_exported"] = spans["exported"]
        kept = spans["kept"]
        if spans["exported"] != calls:
            problems.append(f"spans exported: {spans['exported']}, expected {calls}")
        if spans["kept_kinds"] and set(spans["kept_kinds"]) != {"CONSUMER"}:
            problems.append(f"span kinds {spans['kept_kinds']}, expected only CONSUMER")
    return verified, kept


def enqueue(count: int, ids_file: str) -> dict[str, Any]:
    """Publish ``count`` messages; their task ids go to ``ids_file``, one a line."""
    import django

    from benchmarks import tasks_app

    django.setup()
    start = time.perf_counter()
    ids = []
    with tasks_app.app.producer_or_acquire() as producer:
        for _ in range(count):
            ids.append(tasks_app.noop.apply_async(producer=producer).id)
    seconds = time.perf_counter() - start
    with open(ids_file, "w", encoding="utf-8") as fh:
        fh.write("\n".join(ids) + "\n")
    if tasks_app.provider is not None:
        tasks_app.provider.shutdown()
    return {"enqueued": count, "seconds": seconds}


def in_process(config: str, calls: int, warmup: int, block: int) -> tuple[dict[str, Any], int]:
    """Time ``build_tracer``'s tracer on ``bench.noop``; the result and the exit status."""
    import logging

    import django
    from celery import signals
    from celery.app.trace import build_tracer
    from celery.fixups.django import DjangoFixup

    from benchmarks import tasks_app

    app = tasks_app.app
    django.setup()
    log_file = os.environ["BENCH_TASKS_LOG"]
    if config not in OURS:
        # What `celery worker --loglevel INFO --logfile FILE` sets up (ours keeps LOGGING).
        app.log.setup_logging_subsystem(loglevel=logging.INFO, logfile=log_file)
    # The Django fix-up's per-task receivers, as a worker installs them.
    for fixup in app._fixups:
        if isinstance(fixup, DjangoFixup):
            fixup.worker_fixup.install()

    # One real publish (memory://): the headers and properties this app's producer sends.
    captured: dict[str, Any] = {}

    def capture(headers: dict[str, Any] | None = None, properties: Any = None, **kw: Any) -> None:
        captured["headers"] = dict(headers or {})
        captured["properties"] = dict(properties or {})

    signals.before_task_publish.connect(capture, weak=False, dispatch_uid="bench.capture")
    tasks_app.noop.apply_async()
    signals.before_task_publish.disconnect(capture, dispatch_uid="bench.capture")
    properties = captured["properties"]
    template = dict(captured["headers"])
    template.update(
        properties=properties,
        reply_to=properties.get("reply_to"),
        hostname="bench@localhost",
        delivery_info={
            "exchange": "",
            "routing_key": "celery",
            "priority": properties.get("priority"),
            "redelivered": False,
        },
        args=(),
        kwargs={},
    )
    if tasks_app.provider is not None:  # the producer span of that publish is not a task run
        tasks_app.provider.force_flush()
        tasks_app.exporter.exported = 0
        tasks_app.exporter.kept.clear()

    tracer = build_tracer(TASK, tasks_app.noop, app=app, hostname="bench@localhost")
    total = warmup + calls
    ids = [str(uuid.uuid4()) for _ in range(total)]
    requests = [dict(template, id=i, correlation_id=i) for i in ids]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    for i in range(warmup):
        tracer(ids[i], args, kwargs, requests[i])
    gc.collect()
    perf = time.perf_counter_ns
    block_us = []
    for start in range(warmup, total, block):
        end = min(start + block, total)
        t0 = perf()
        for i in range(start, end):
            tracer(ids[i], args, kwargs, requests[i])
        block_us.append((perf() - t0) / (end - start) / 1000)

    problems: list[str] = []
    if os.environ.get("BENCH_TASKS_COUNT_ONLY"):
        # Counting instructions (valgrind): the process ends with the timed calls, so that
        # runs of N and 3N calls differ by the calls alone, not by checking their logs.
        return {"config": config, "calls": calls, "unchecked": True}, 0
    verified, kept = check_counts(tasks_app, total, problems)
    for handler in logging.getLogger().handlers:
        handler.flush()
    verified.update(
        check_log(log_file, ids, config in OURS, config in TRACED, kept, False, problems)
    )
    if tasks_app.provider is not None:
        tasks_app.provider.shutdown()
    result = {
        "config": config,
        "calls": calls,
        "warmup": warmup,
        "us_per_task": statistics.median(block_us),
        "us_per_task_min_block": min(block_us),
        "blocks": len(block_us),
        "verified": verified,
        "problems": problems,
    }
    return result, 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("enqueue", "inprocess"))
    parser.add_argument("config", choices=CONFIGS)
    parser.add_argument("--count", type=int, default=1000, help="enqueue: messages")
    parser.add_argument("--ids", default="", help="enqueue: file for the task ids")
    parser.add_argument("--calls", type=int, default=10_000, help="inprocess: timed calls")
    parser.add_argument("--warmup", type=int, default=1_000, help="inprocess: untimed calls")
    parser.add_argument("--block", type=int, default=1_000, help="inprocess: calls per block")
    args = parser.parse_args()

    os.environ["BENCH_TASKS_CONFIG"] = args.config
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.tasks_settings"
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    if not os.environ.get("BENCH_TASKS_LOG"):
        log_dir = tempfile.mkdtemp(prefix=f"bench-tasks-{args.config}-")
        atexit.register(shutil.rmtree, log_dir, ignore_errors=True)
        os.environ["BENCH_TASKS_LOG"] = os.path.join(log_dir, "tasks.log")

    if args.mode == "enqueue":
        result, status = enqueue(args.count, args.ids), 0
    else:
        os.environ["BENCH_TASKS_BROKER"] = "memory://"
        result, status = in_process(args.config, args.calls, args.warmup, args.block)
    print(json.dumps(result))
    for problem in result.get("problems", []):
        print(f"tasks_child[{args.config}]: {problem}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
