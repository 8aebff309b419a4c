"""Per-task cost of the Celery instrumentation, side by side, in one run (issue 16).

    .venv/bin/python benchmarks/tasks.py [--rounds 5] [--calls 10000] [--worker-tasks 3000]
                                         [--pools solo] [--modes inprocess,worker]

Four configurations (``tasks_settings.py``): ``bare`` (Celery + Django),
``otel_celery`` (opentelemetry-instrumentation-celery alone, with the request
benchmarks' SDK pieces), ``ours_metrics_logs`` (our receivers and JSON log lines,
tracing off) and ``ours_full`` (the same with tracing on: our own consumer
span, our metrics and our log fields). Every round runs each of them,
in an order that rotates from round to round, in fresh processes, two ways:

* in process (``tasks_child inprocess``): Celery's ``build_tracer`` for a no-op
  task called in a loop, median block of 1,000 calls: the per-task path of a
  worker child without the broker;
* in a real ``celery worker`` (``--pool solo``; ``--pools solo,prefork`` adds a
  prefork worker with one child) draining pre-enqueued no-op tasks from a
  private redis-server: the time between the task bodies of runs inside the
  worker, per task, median block.

Each run checks that no stack won by dropping work: ``tasks_finished_total``
counts every task (ours), the exporter got one consumer span per task (traced
configurations), and the log holds one ``succeeded`` line per task (and, from a
worker, one ``received`` line), ours carrying the task's id and the span's ids.
Prints Markdown tables and writes a JSON file in ``benchmarks/results/``;
see the "Background tasks" section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = ("bare", "otel_celery", "ours_metrics_logs", "ours_full")
LABELS = {
    "bare": "bare: Celery + Django, no instrumentation",
    "otel_celery": "otel_celery: opentelemetry-instrumentation-celery alone",
    "ours_metrics_logs": "ours_metrics_logs: our metrics + task context + JSON lines, no tracing",
    "ours_full": "ours_full: our consumer span + our metrics + task context + JSON lines",
}
# ours_full adds no more per task than OpenTelemetry's Celery spans alone (issue 16).
TARGET_RATIO = 1.0
WORKER_DEADLINE = 120.0  # seconds for a worker to start and drain its tasks
STOP_TIMEOUT = 20.0


def child_env(config: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmark process: nothing from the shell that changes what runs."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "BENCH_", "CELERY_", "DJANGO_"))
        and key not in {"PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"}
    }
    env.update(
        BENCH_TASKS_CONFIG=config,
        DJANGO_SETTINGS_MODULE="benchmarks.tasks_settings",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_child(mode: str, config: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """``python -m benchmarks.tasks_child MODE CONFIG ARGS``; its JSON, or exit the run."""
    cmd = [sys.executable, "-m", "benchmarks.tasks_child", mode, config, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(
            f"\nFAILED: tasks_child {mode} {config} exited with {proc.returncode} "
            "(see above: a count, span or log line that does not match the tasks run)."
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- a private redis-server and a real worker ---------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to the process we started; SIGKILL to its own session's group if it stays."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Redis:
    """``redis-server`` on 127.0.0.1 and a free port, no persistence, stopped by its PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *words: str) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            return sock.recv(64)

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise FileNotFoundError("redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError):
                if self.command("PING").startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"redis-server did not start (see {self.workdir / 'redis.log'})")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


def worker_run(
    config: str, pool: str, redis: Redis, tasks: int, warmup: int, block: int
) -> dict[str, Any]:
    """Enqueue ``tasks`` messages, let one worker drain them, check and time its runs."""
    from benchmarks.tasks_child import OURS, TRACED, check_log

    if not redis.command("FLUSHALL").startswith(b"+OK"):
        raise SystemExit("redis-server did not empty its databases")
    work = Path(tempfile.mkdtemp(prefix=f"bench-tasks-{config}-{pool}-"))
    try:
        log = work / "tasks.log"
        report = work / "report.json"
        ids_file = work / "ids.txt"
        env = child_env(config, BENCH_TASKS_BROKER=redis.url, BENCH_TASKS_LOG=str(log))
        enqueued = run_child("enqueue", config, [f"--count={tasks}", f"--ids={ids_file}"], env)
        ids = ids_file.read_text(encoding="utf-8").split()
        log.unlink(missing_ok=True)  # the enqueuing process's lines are not the worker's
        env.update(
            BENCH_TASKS_REPORT=str(report),
            BENCH_TASKS_COUNT=str(tasks),
            BENCH_TASKS_WARMUP=str(warmup),
            BENCH_TASKS_BLOCK=str(block),
        )
        if pool == "prefork":
            # As a project runs a prefork worker (docs/tasks.md): the multiprocess store.
            env["PROMETHEUS_MULTIPROC_DIR"] = str(work / "metrics")
            (work / "metrics").mkdir()
        argv = [
            sys.executable, "-m", "celery", "-A", "benchmarks.tasks_app:app", "worker",
            "--pool", pool, "--concurrency", "1", "--hostname", f"bench-{config}@%h",
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "--loglevel", "INFO", "--logfile", str(log),
        ]  # fmt: skip
        with open(work / "console.log", "ab") as console:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            end = time.monotonic() + WORKER_DEADLINE
            done = Path(str(report) + ".done")
            while not done.exists():
                if proc.poll() is not None or time.monotonic() > end:
                    tail = (work / "console.log").read_text(errors="replace")[-3000:]
                    raise SystemExit(
                        f"FAILED: the {config} {pool} worker did not run its {tasks} tasks "
                        f"within {WORKER_DEADLINE:.0f} s (exit {proc.returncode}):\n{tail}"
                    )
                time.sleep(0.05)
        finally:
            stop(proc)
        if not report.exists():
            raise SystemExit(f"FAILED: the {config} {pool} worker wrote no report")
        data = json.loads(report.read_text(encoding="utf-8"))
        problems: list[str] = []
        if data["runs"] != tasks:
            problems.append(f"tasks run: {data['runs']}, expected {tasks}")
        verified: dict[str, Any] = {"tasks_run": data["runs"]}
        if config in OURS:
            verified["tasks_counted"] = data["tasks_counted"]
            if data["tasks_counted"] != tasks:
                problems.append(f"tasks_finished_total: {data['tasks_counted']}, expected {tasks}")
        kept: list[Any] = []
        if config in TRACED:
            spans = data["spans"]
            verified["spans_exported"] = spans["exported"]
            kept = spans["kept"]
            if spans["exported"] != tasks:
                problems.append(f"spans exported: {spans['exported']}, expected {tasks}")
            if set(spans["kept_kinds"]) != {"CONSUMER"}:
                problems.append(f"span kinds {spans['kept_kinds']}, expected only CONSUMER")
        verified.update(
            check_log(str(log), ids, config in OURS, config in TRACED, kept, True, problems)
        )
        if problems:
            raise SystemExit(f"FAILED: {config} {pool} worker: " + "; ".join(problems))
        marks = data["marks"]
        block_us = [(b - a) / block * 1e6 for a, b in itertools.pairwise(marks)]
        if not block_us:
            raise SystemExit("FAILED: --worker-tasks leaves no whole block after the warm-up")
        return {
            "config": config,
            "pool": pool,
            "tasks": tasks,
            "timed_tasks": block * len(block_us),
            "us_per_task": statistics.median(block_us),
            "us_per_task_min_block": min(block_us),
            "block_us": block_us,
            "enqueue_seconds": enqueued["seconds"],
            "verified": verified,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- the tables ------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def table(title: str, rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Print one ratio table over the rounds of one measure; its figures."""
    median = {c: statistics.median(rd[c]["us_per_task"] for rd in rounds) for c in CONFIGS}
    added = {c: median[c] - median["bare"] for c in CONFIGS}
    otel = added["otel_celery"]
    print()
    print(f"| {title} | median µs/task | added µs over bare | added / otel_celery added |")
    print("|---|---:|---:|---:|")
    for c in CONFIGS:
        extra = "—" if c == "bare" else f"{added[c]:+,.1f}"
        ratio = "—" if c == "bare" or otel <= 0 else f"{added[c] / otel:.2f}x"
        print(f"| {LABELS[c]} | {fmt(median[c])} | {extra} | {ratio} |")

    def ratio_of(config: str, figures: dict[str, float]) -> float | None:
        base = figures["otel_celery"] - figures["bare"]
        return None if base <= 0 else (figures[config] - figures["bare"]) / base

    ratios = {
        c: (added[c] / otel if otel > 0 else None) for c in ("ours_metrics_logs", "ours_full")
    }
    paired = [
        r
        for rd in rounds
        if (r := ratio_of("ours_full", {c: rd[c]["us_per_task"] for c in CONFIGS})) is not None
    ]
    best = {c: min(rd[c]["us_per_task_min_block"] for rd in rounds) for c in CONFIGS}
    best_ratio = ratio_of("ours_full", best)
    print()
    full = ratios["ours_full"]
    if full is None:
        print("otel_celery added nothing measurable over bare here: no ratio (run more rounds).")
    else:
        verdict = "met" if full <= TARGET_RATIO else "NOT met"
        print(
            f"Target: ours_full adds no more than otel_celery: {full:.2f}x, {verdict}; "
            f"ours_metrics_logs (no spans) {ratios['ours_metrics_logs']:.2f}x."
        )
    cross = []
    if paired:
        skipped = len(rounds) - len(paired)
        cross.append(
            f"median of per-round paired ratios {statistics.median(paired):.2f}x "
            f"(range {min(paired):.2f}-{max(paired):.2f}"
            + (
                f"; {skipped} round(s) where otel_celery was not slower than bare left out"
                if skipped
                else ""
            )
            + ")"
        )
    if best_ratio is not None:
        cross.append(
            f"from the fastest block of each config {best_ratio:.2f}x ("
            + ", ".join(f"{c} {fmt(best[c])}" for c in CONFIGS)
            + " µs)"
        )
    if cross:
        print("Cross-checks (ours_full / otel_celery): " + "; ".join(cross) + ".")
    return {
        "median_us_per_task": median,
        "added_us_over_bare": added,
        "ratio_ours_full_vs_otel_celery": full,
        "ratio_ours_metrics_logs_vs_otel_celery": ratios["ours_metrics_logs"],
        "paired_ratios_ours_full": paired,
        "fastest_block_us": best,
        "ratio_ours_full_from_fastest_blocks": best_ratio,
    }


def verified_line(config: str, checks: list[dict[str, Any]]) -> str:
    def span(key: str) -> str:
        values = [v[key] for v in checks]
        low, high = min(values), max(values)
        return f"{low:,.0f}" if low == high else f"{low:,.0f}-{high:,.0f}"

    parts = [f"{span('tasks_run')} tasks run per process"]
    if "tasks_counted" in checks[0]:
        parts.append(f"{span('tasks_counted')} counted in tasks_finished_total")
    if "spans_exported" in checks[0]:
        parts.append(f"{span('spans_exported')} consumer spans exported")
    parts.append(f"{span('succeeded_lines')} 'succeeded' lines")
    if "received_lines" in checks[0]:
        parts.append(f"{span('received_lines')} 'received' lines")
    line_bytes = sum(v["log_bytes"] for v in checks) / sum(v["log_lines"] for v in checks)
    parts.append(f"{line_bytes:,.0f} bytes per line")
    if "lines_with_task_id" in checks[0]:
        parts.append(f"{span('lines_with_task_id')} JSON lines with their task.id")
    if "spans_joined_to_log_lines" in checks[0]:
        joined = sum(v["spans_joined_to_log_lines"] for v in checks)
        checked = sum(v["spans_checked_against_log_lines"] for v in checks)
        parts.append(f"{joined}/{checked} spot-checked spans found in the lines with their ids")
    return f"  {config}: " + "; ".join(parts)


def versions() -> str:
    from importlib import metadata

    names = ("celery", "django", "opentelemetry-sdk", "opentelemetry-instrumentation-celery",
             "prometheus-client")  # fmt: skip
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} not installed")
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print the tables and write the results JSON; 0 unless a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="inprocess,worker", help="inprocess, worker or both")
    parser.add_argument("--calls", type=int, default=10_000, help="in process: timed calls")
    parser.add_argument("--warmup", type=int, default=1_000, help="in process: untimed calls")
    parser.add_argument("--block", type=int, default=1_000, help="in process: calls per block")
    parser.add_argument("--worker-tasks", type=int, default=3_000, help="tasks per worker run")
    parser.add_argument("--worker-warmup", type=int, default=500, help="untimed tasks first")
    parser.add_argument("--worker-block", type=int, default=500, help="tasks per timed block")
    parser.add_argument("--pools", default="solo", help="solo, prefork (one child) or both")
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    pools = [p for p in args.pools.split(",") if p]
    if set(modes) - {"inprocess", "worker"} or set(pools) - {"solo", "prefork"}:
        parser.error("--modes takes inprocess,worker; --pools takes solo,prefork")

    print(f"nproc {os.cpu_count()}; Python {sys.version.split()[0]}; {versions()}")
    redis = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-tasks-redis-"))
    if "worker" in modes:
        redis = Redis(workdir)
        try:
            redis.start()
        except FileNotFoundError:
            print("redis-server not found (Debian: `make peers` installs it): in process only.")
            modes.remove("worker")
            redis = None
    print(
        f"{args.rounds} rounds x {len(CONFIGS)} configs, fresh processes, order rotating; "
        + (
            f"in process: {args.warmup:,} warm-up + {args.calls:,} timed build_tracer calls "
            f"(blocks of {args.block:,}); "
            if "inprocess" in modes
            else ""
        )
        + (
            f"worker ({', '.join(pools)}, one process running tasks): {args.worker_tasks:,} "
            f"pre-enqueued tasks, the first {args.worker_warmup:,} untimed "
            f"(blocks of {args.worker_block:,})"
            if "worker" in modes
            else ""
        ),
        flush=True,
    )
    measures = [("inprocess", None)] if "inprocess" in modes else []
    measures += [("worker", pool) for pool in pools] if "worker" in modes else []
    rounds: dict[str, list[dict[str, dict[str, Any]]]] = {
        f"{mode}" if pool is None else f"{mode}_{pool}": [] for mode, pool in measures
    }
    started = time.monotonic()
    try:
        for r in range(args.rounds):
            shift = r % len(CONFIGS)
            order = CONFIGS[shift:] + CONFIGS[:shift]
            results: dict[str, dict[str, Any]] = {key: {} for key in rounds}
            for config in order:
                for mode, pool in measures:
                    if mode == "inprocess":
                        results["inprocess"][config] = run_child(
                            "inprocess",
                            config,
                            [f"--calls={args.calls}", f"--warmup={args.warmup}",
                             f"--block={args.block}"],
                            child_env(config),
                        )  # fmt: skip
                    else:
                        assert redis is not None
                        assert pool is not None
                        results[f"worker_{pool}"][config] = worker_run(
                            config, pool, redis, args.worker_tasks, args.worker_warmup,
                            args.worker_block,
                        )  # fmt: skip
            for key, res in results.items():
                rounds[key].append(res)
                print(
                    f"  round {r + 1}/{args.rounds} {key} ({', '.join(order)}): "
                    + ", ".join(f"{c} {res[c]['us_per_task']:.1f} µs" for c in CONFIGS),
                    flush=True,
                )
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    titles = {
        "inprocess": "in process: build_tracer, no broker",
        "worker_solo": "celery worker --pool solo, redis",
        "worker_prefork": "celery worker --pool prefork -c 1, redis",
    }
    figures = {key: table(titles[key], rds) for key, rds in rounds.items()}
    print()
    print("Verified in every process (all rounds):")
    for key, rds in rounds.items():
        print(f" {titles[key]}:")
        for c in CONFIGS:
            print(verified_line(c, [rd[c]["verified"] for rd in rds]))

    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"tasks-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "versions": versions(),
                "nproc": os.cpu_count(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "seconds": round(time.monotonic() - started, 1),
                "figures": figures,
                "rounds": rounds,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"\nResults: {out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
