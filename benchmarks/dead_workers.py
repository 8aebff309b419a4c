"""Scrape time and store size after worker churn, before and after compaction (issue 13).

    .venv/bin/python benchmarks/dead_workers.py [--workers 0,100,400,1000]
        [--requests-per-worker 40] [--renders 7] [--dir /dev/shm]

In Prometheus multiprocess mode every worker leaves files behind in
``PROMETHEUS_MULTIPROC_DIR``. Two stacks are compared side by side in one run,
on the same workers' values:

before
    prometheus_client's writer (sparse files written through ``mmap``), its
    ``MultiProcessCollector`` for the scrape, and its ``mark_process_dead``
    called after each worker exits (gunicorn's ``child_exit`` in the example
    before this change): only the dead worker's live gauges go.
after
    ``metrics_store.mark_dead`` after each worker exits (what our
    ``child_exit`` hook calls): the dead worker's values are compacted into
    the archives; ``metrics_store.StoreCollector`` for the scrape.

How the workers are made. This process sets the example project up
(``example.settings`` on a freshly migrated private SQLite file; tracing off,
so neither directory holds exemplar files) with ``PROMETHEUS_MULTIPROC_DIR``
pointing at the *before* directory before prometheus_client is imported, and
never records a metric itself, like a gunicorn master. It forks one child
per worker. The child serves a mix of requests over the example's routes
through Django's test client (items by id, an Http404, the async views,
orders by uuid, categories, docs, archive years, a view with two queries, an
audited insert, a stream, an APPEND_SLASH redirect, unmatched paths, and the
two views that raise: 500), checks every status, and leaves with
``os._exit(0)``. The parent reaps it and then, as the
two stacks' hooks would:

1. copies the worker's files into the *after* directory and calls
   ``metrics_store.mark_dead(pid, after)``, timing it;
2. calls ``prometheus_client.multiprocess.mark_process_dead(pid, before)``.

Each worker runs once and writes its values once: both directories hold the
very same values, so the two totals must agree to the last request and any
difference is the stack's doing. (Two children per worker with the same
requests would count alike but measure different durations, so the
histograms' ``_sum`` could not be compared.) The copies the after directory
gets of a dead worker's files are compacted at once; the only files of the
after directory that are copies and stay are those of the live workers, which
are written as ``StoreFile`` (installed by the app in every worker) would
write them: the same entries, with their space reserved
(``metrics_store.write_file``). A worker whose pid was already used by an
earlier one (pids wrap) leaves without serving and is forked again: it would
have continued the earlier worker's counters in the before directory.

Two live workers serve their share first and stay alive (blocked on a pipe)
for the whole run, so both directories always hold two live workers' files.
At each checkpoint (after 0, 100, 400 and 1,000 dead workers), for each
directory: the files in it and the bytes they take on disk (``st_blocks *
512``; MB are 10^6 bytes); the scrape time, the median of ``--renders``
renders (after one untimed; the two stacks take turns) of
``prometheus_client.generate_latest`` on a fresh ``CollectorRegistry``
holding the stack's collector; and, for *after*, the
whole ``/metrics`` view (Django's test client from 127.0.0.1, an allowed
address in the example) in a forked worker that points at the after directory,
installs the store's writer as the ``post_fork`` hook does, and is marked dead
when it is done. Then the totals are checked: every counter and histogram
sample of the two expositions must be the same (counts exactly, sums within
1e-9 relative; prometheus_client adds floats in file order, the store adds
them exactly), and ``http_server_request_duration_seconds_count`` must equal
the number of requests the workers were sent. The run fails if not.

The labels files the app shares between workers (``labels_*.txt``, a few bytes
each) are written by the workers in the before directory and copied to the
after one at each checkpoint, so both directories count them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "example_project"
ENVIRON = "PROMETHEUS_MULTIPROC_DIR"
LIVE_WORKERS = 2
REQUEST_COUNT = "http_server_request_duration_seconds_count"
REQUEST_SUM = "http_server_request_duration_seconds_sum"
SUM_TOLERANCE = 1e-9
# A worker's exit status when its pid already has files in the before directory.
PID_REUSED = 3
# Exit status of a worker that got an answer it did not expect.
FAILED = 1

# The requests a worker draws from: weight, method, path template, expected status.
MIX: tuple[tuple[int, str, str, int], ...] = (
    (8, "GET", "/api/v1/items/{item}/", 200),
    (4, "GET", "/api/v1/items/", 200),
    (1, "HEAD", "/api/v1/items/", 200),
    (1, "GET", "/api/v1/items", 301),  # APPEND_SLASH
    (2, "GET", "/api/v1/items/{missing}/", 404),  # Http404 from the view
    (2, "GET", "/api/v1/async/items/{item}/", 200),
    (3, "GET", "/api/v1/orders/{order}/", 200),
    (3, "GET", "/api/v1/categories/{slug}/", 200),
    (2, "GET", "/api/v1/docs/{page}", 200),
    (3, "GET", "/api/v1/archive/{year}/", 200),
    (2, "GET", "/api/v1/stats/", 200),  # two queries
    (1, "POST", "/api/v1/groups/", 201),  # an insert, audited
    (1, "GET", "/stream/", 200),
    (1, "GET", "/", 200),
    (1, "GET", "/boom/", 500),
    (1, "GET", "/async/boom/", 500),
    (2, "GET", "/no/such/{slug}/", 404),  # no route
)
SLUGS = ("teapots", "kettles", "mugs", "spare-parts", "gifts")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    status: int
    data: dict[str, str] | None = None


def traffic(worker: int, count: int) -> list[Call]:
    """The requests worker number ``worker`` serves, in an order of its own.

    Each kind of request of the mix once (so that every worker, the live ones
    too, has every series), the rest drawn by weight; ids, years and slugs
    drawn with the worker's own seed.
    """
    rng = random.Random(worker)
    weights = [weight for weight, *_ in MIX]
    kinds = list(MIX) + rng.choices(MIX, weights, k=max(count - len(MIX), 0))
    rng.shuffle(kinds)
    calls = []
    for i, (_, method, template, status) in enumerate(kinds):
        path = template.format(
            item=rng.randint(1, 3),
            missing=rng.randint(4, 999),
            order=uuid.UUID(int=rng.getrandbits(128), version=4),
            slug=rng.choice(SLUGS),
            page=f"guide/{rng.randint(1, 20)}.html",
            year=rng.randint(2000, 2025),
        )
        data = {"name": f"worker-{worker}-{i}"} if method == "POST" else None
        calls.append(Call(method, path, status, data))
    return calls


# --- in the forked children --------------------------------------------------------------


def serve(calls: list[Call]) -> str | None:
    """Send ``calls`` through Django's test client; the first unexpected answer, or None."""
    from django.test import Client

    client = Client(raise_request_exception=False, HTTP_HOST="127.0.0.1")
    for call in calls:
        if call.method == "POST":
            response = client.post(call.path, call.data or {})
        elif call.method == "HEAD":
            response = client.head(call.path)
        else:
            response = client.get(call.path)
        if response.streaming:
            b"".join(response.streaming_content)  # type: ignore[arg-type]
        response.close()  # a streamed response is recorded when closed
        if response.status_code != call.status:
            return f"{call.method} {call.path}: {response.status_code}, expected {call.status}"
    return None


def run_worker(
    calls: list[Call], store: str, hold: tuple[int, int] | None, parent_ends: tuple[int, ...] = ()
) -> int:
    """A worker: serve ``calls``; with ``hold`` (ready, release fds) stay alive until released."""
    for fd in parent_ends:
        os.close(fd)  # else this worker would hold its own release open
    pid = os.getpid()
    if any(name.endswith(f"_{pid}.db") for name in os.listdir(store)):
        return PID_REUSED
    failure = serve(calls)
    if failure is not None:
        print(f"worker {pid}: {failure}", file=sys.stderr)
        return FAILED
    if hold is not None:
        ready, release = hold
        os.write(ready, b"1")
        os.read(release, 1)  # returns when the parent closes its end
    return 0


def run_scraper(store: str, renders: int, report: int) -> int:
    """A worker that serves ``/metrics`` from ``store``; writes its median time and count."""
    from django.test import Client

    from django_observability import metrics_store

    os.environ[ENVIRON] = store
    metrics_store.install()  # the post_fork hook's job
    client = Client(HTTP_HOST="127.0.0.1")  # from 127.0.0.1, an allowed address
    times = []
    body = b""
    for i in range(renders + 1):
        start = time.perf_counter()
        response = client.get("/metrics")
        body = response.content
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            print(f"/metrics: {response.status_code}: {body[:300]!r}", file=sys.stderr)
            return FAILED
        if i:
            times.append(elapsed)
    count = sum_samples(body.decode("utf-8"), REQUEST_COUNT)
    os.write(report, json.dumps({"ms": statistics.median(times) * 1000, "count": count}).encode())
    return 0


def fork(body: Callable[[], int], log: Path) -> int:
    """Run ``body`` in a forked child, its output appended to ``log``; the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = FAILED
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        code = body()
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def reap(pid: int) -> int:
    """Wait for a child; its exit status (128 + the signal when one killed it)."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


# --- in the parent -----------------------------------------------------------------------


def sum_samples(text: str, name: str) -> float:
    """The sum of every sample called ``name`` in an exposition, whatever its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return math.fsum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


def totals(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter, histogram and summary sample of an exposition, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        if f.type in ("counter", "histogram", "summary")
        for s in f.samples
    }


def differences(before: str, after: str) -> tuple[int, list[str], float]:
    """(samples compared, what differs, largest relative difference of a ``_sum``)."""
    old, new = totals(before), totals(after)
    problems = [f"only before: {key}" for key in old.keys() - new.keys()]
    problems += [f"only after: {key}" for key in new.keys() - old.keys()]
    worst = 0.0
    for key in old.keys() & new.keys():
        a, b = old[key], new[key]
        if key[0].endswith("_sum"):
            relative = abs(a - b) / max(abs(a), abs(b), 1e-300)
            worst = max(worst, relative)
            if relative > SUM_TOLERANCE:
                problems.append(f"{key}: before {a!r}, after {b!r}")
        elif a != b:
            problems.append(f"{key}: before {a!r}, after {b!r}")
    return len(old), problems, worst


def footprint(path: str) -> tuple[int, int]:
    """(files, bytes on disk) of a directory."""
    files = size = 0
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            files += 1
            size += entry.stat(follow_symlinks=False).st_blocks * 512
    return files, size


Collect = Callable[[Any], object]  # registers a stack's collector on a registry


def render(stacks: tuple[Collect, Collect], renders: int) -> list[tuple[list[float], str]]:
    """For each stack, the ms of ``renders`` text expositions and the exposition.

    One untimed render of each first; then the stacks take turns, so that
    whatever else the machine does falls on both alike.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    times: list[list[float]] = [[] for _ in stacks]
    texts = ["" for _ in stacks]
    for i in range(renders + 1):
        for n, stack in enumerate(stacks):
            start = time.perf_counter()
            registry = CollectorRegistry()
            stack(registry)
            output = generate_latest(registry)
            elapsed = time.perf_counter() - start
            if i:
                times[n].append(elapsed * 1000)
            else:
                texts[n] = output.decode("utf-8")
    return list(zip(times, texts, strict=True))


def copy_store_file(source: str, target: str) -> None:
    """``source``'s entries in a new file at ``target``, space reserved as StoreFile does."""
    from django_observability import metrics_store

    metrics_store.write_file(target, metrics_store.read_file(source))


@dataclass
class Checkpoint:
    dead: int
    sent: int
    before_ms: float
    before_times: list[float]
    before_files: int
    before_bytes: int
    after_ms: float
    after_times: list[float]
    after_files: int
    after_bytes: int
    view_ms: float
    view_count: float
    count_before: float
    count_after: float
    sum_before: float
    sum_after: float
    compared: int
    worst_sum: float
    problems: list[str]
    layout: str
    compactions_ms: list[float]


class Run:
    """The two directories, the live workers, and the dead workers made so far."""

    def __init__(self, root: Path, requests_per_worker: int, renders: int) -> None:
        self.before = str(root / "before")
        self.after = str(root / "after")
        self.log = root / "workers.log"
        self.requests_per_worker = requests_per_worker
        self.renders = renders
        self.workers = 0  # workers forked and done, live ones included
        self.dead = 0
        self.sent = 0  # requests answered as expected, which the metrics must count
        self.pid_reused = 0
        self.compactions_ms: list[float] = []
        self.anomalies: list[str] = []
        self.live: list[tuple[int, int]] = []  # (pid, fd whose closing releases it)
        os.makedirs(self.before)
        os.makedirs(self.after)

    def fail(self, what: str) -> None:
        tail = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        raise SystemExit(f"{what}\n--- end of {self.log} ---\n{tail}")

    def start_live_workers(self) -> None:
        for _ in range(LIVE_WORKERS):
            calls = traffic(self.workers, self.requests_per_worker)
            ready_r, ready_w = os.pipe()
            release_r, release_w = os.pipe()
            pid = fork(
                partial(run_worker, calls, self.before, (ready_w, release_r), (ready_r, release_w)),
                self.log,
            )
            os.close(ready_w)
            os.close(release_r)
            if os.read(ready_r, 1) != b"1":
                os.close(ready_r)
                os.close(release_w)
                self.fail(f"live worker {pid} exited with {reap(pid)}")
            os.close(ready_r)
            self.live.append((pid, release_w))
            self.workers += 1
            self.sent += len(calls)
            for name in os.listdir(self.before):
                if name.endswith(f"_{pid}.db"):
                    copy_store_file(os.path.join(self.before, name), os.path.join(self.after, name))

    def stop_live_workers(self) -> None:
        # Every release first: a live worker holds the release ends of those
        # forked before it, which see their end of file only when it exits.
        for _, release in self.live:
            os.close(release)
        for pid, _ in self.live:
            reap(pid)
        self.live.clear()

    def kill_live_workers(self) -> None:
        for pid, release in self.live:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.close(release)
            with contextlib.suppress(ChildProcessError):
                reap(pid)
        self.live.clear()

    def one_dead_worker(self) -> None:
        from prometheus_client import multiprocess

        from django_observability import metrics_store

        calls = traffic(self.workers, self.requests_per_worker)
        while True:
            pid = fork(partial(run_worker, calls, self.before, None), self.log)
            code = reap(pid)
            if code != PID_REUSED:
                break
            self.pid_reused += 1
        if code != 0:
            self.fail(f"worker {pid} exited with {code}")
        self.workers += 1
        self.dead += 1
        self.sent += len(calls)
        # after: the worker's files, as it left them, then the child_exit hook's call.
        for name in os.listdir(self.before):
            if name.endswith(f"_{pid}.db"):
                shutil.copyfile(os.path.join(self.before, name), os.path.join(self.after, name))
        start = time.perf_counter()
        compacted = metrics_store.mark_dead(pid, self.after)
        self.compactions_ms.append((time.perf_counter() - start) * 1000)
        if compacted != 1:
            self.anomalies.append(f"mark_dead({pid}) compacted {compacted} processes, not 1")
        # before: the example's child_exit hook before this change.
        multiprocess.mark_process_dead(pid, self.before)

    def sync_label_files(self) -> None:
        for name in os.listdir(self.before):
            if name.startswith("labels_"):
                shutil.copyfile(os.path.join(self.before, name), os.path.join(self.after, name))

    def view(self) -> tuple[float, float]:
        """Median ms of the whole /metrics view on the after directory, and its count."""
        from django_observability import metrics_store

        report_r, report_w = os.pipe()
        pid = fork(partial(run_scraper, self.after, self.renders, report_w), self.log)
        os.close(report_w)
        with os.fdopen(report_r, "rb") as fh:
            payload = fh.read()
        code = reap(pid)
        if code != 0 or not payload:
            self.fail(f"the /metrics worker {pid} exited with {code}")
        # It was a worker of the after stack: its exit is compacted as any other.
        if metrics_store.mark_dead(pid, self.after) != 1:
            self.anomalies.append(f"the /metrics worker {pid} was not compacted")
        result = json.loads(payload)
        return float(result["ms"]), float(result["count"])

    def checkpoint(self) -> Checkpoint:
        from prometheus_client.multiprocess import MultiProcessCollector

        from django_observability.metrics_store import StoreCollector

        self.sync_label_files()
        before_files, before_bytes = footprint(self.before)
        after_files, after_bytes = footprint(self.after)
        (before_times, before_text), (after_times, after_text) = render(
            (
                lambda registry: MultiProcessCollector(registry, path=self.before),
                lambda registry: registry.register(StoreCollector(self.after)),
            ),
            self.renders,
        )
        compared, problems, worst = differences(before_text, after_text)
        view_ms, view_count = self.view()
        point = Checkpoint(
            dead=self.dead,
            sent=self.sent,
            before_ms=statistics.median(before_times),
            before_times=before_times,
            before_files=before_files,
            before_bytes=before_bytes,
            after_ms=statistics.median(after_times),
            after_times=after_times,
            after_files=after_files,
            after_bytes=after_bytes,
            view_ms=view_ms,
            view_count=view_count,
            count_before=sum_samples(before_text, REQUEST_COUNT),
            count_after=sum_samples(after_text, REQUEST_COUNT),
            sum_before=sum_samples(before_text, REQUEST_SUM),
            sum_after=sum_samples(after_text, REQUEST_SUM),
            compared=compared,
            worst_sum=worst,
            problems=problems,
            layout=describe_store(self.after),
            compactions_ms=self.compactions_ms,
        )
        self.compactions_ms = []
        return point


def example_env(db: Path, store: str) -> dict[str, str]:
    """The example project's environment: its settings, a private database, no tracing."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "EXAMPLE_", "GUNICORN_", "PROMETHEUS_"))
        and key.lower() != "prometheus_multiproc_dir"
        and key not in ("DJANGO_SETTINGS_MODULE", "OBSERVABILITY_AUTH_TOKEN")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example.settings",
        EXAMPLE_DB=str(db),
        OTEL_TRACES_EXPORTER="none",
        PROMETHEUS_MULTIPROC_DIR=store,
    )
    return env


def set_up_django(db: Path, store: str) -> None:
    """Migrate a private database, then load the example here, its store at ``store``."""
    env = example_env(db, store)
    migrate_env = dict(env)
    del migrate_env[ENVIRON]  # migrate records no metrics
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=EXAMPLE,
        env=migrate_env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    # Before prometheus_client is imported: it picks multiprocess mode then.
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = [str(EXAMPLE), str(REPO)]
    import django

    django.setup()
    from django.db import connections
    from prometheus_client import mmap_dict, values

    # The app's ready() installed the store's writer; the before stack's
    # workers write through prometheus_client's own (sparse files). The
    # live workers' files in the after directory are written as ours writes.
    values.MmapedDict = mmap_dict.MmapedDict  # type: ignore[misc]
    connections.close_all()  # children open their own


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):.1f} ms ({min(times):.1f}-{max(times):.1f})"


def mb(size: int) -> str:
    return f"{size / 1e6:.1f}"


def report(points: list[Checkpoint], run: Run, seconds: float) -> None:
    base_before = points[0].before_ms
    base_after = points[0].after_ms
    print()
    print(
        "| dead workers | before: scrape ms | files | MB | after: scrape ms | files | MB "
        "| after: /metrics ms | after / before(0) | after / after(0) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in points:
        print(
            f"| {p.dead:,} | {p.before_ms:.1f} | {p.before_files:,} | {mb(p.before_bytes)} "
            f"| {p.after_ms:.1f} | {p.after_files:,} | {mb(p.after_bytes)} | {p.view_ms:.1f} "
            f"| {p.after_ms / base_before:.2f}x | {p.after_ms / base_after:.2f}x |"
        )
    print()
    print(
        "| dead workers | requests sent | count before | count after | count /metrics "
        "| _sum before (s) | _sum after (s) | samples compared | differences |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in points:
        print(
            f"| {p.dead:,} | {p.sent:,} | {p.count_before:,.0f} | {p.count_after:,.0f} "
            f"| {p.view_count:,.0f} | {p.sum_before:.6f} | {p.sum_after:.6f} | {p.compared:,} "
            f"| {len(p.problems)} (largest _sum gap {p.worst_sum:.1e}) |"
        )
    print()
    for p in points[1:]:
        c = p.compactions_ms
        print(
            f"mark_dead at each exit, up to {p.dead:,} dead: median {statistics.median(c):.1f} ms, "
            f"max {max(c):.1f} ms over {len(c)} exits"
        )
    last = points[-1]
    ratio = last.after_ms / base_after
    print(
        f"Target: scrape after {last.dead:,} dead workers within 1.5x of the time with none: "
        f"{ratio:.2f}x of after(0), {last.after_ms / base_before:.2f}x of before(0) "
        f"({'met' if ratio <= 1.5 else 'NOT met'}); fastest renders: "
        f"{min(last.after_times) / min(points[0].after_times):.2f}x of after(0)."
    )
    print(
        f"Target: files bounded by a small constant per live worker plus a fixed number of "
        f"archives: {last.layout}."
    )
    print(
        f"{run.workers:,} workers ({LIVE_WORKERS} live), {run.requests_per_worker} requests "
        f"each; {run.pid_reused} pid reuses re-forked; wall time {seconds:.0f} s."
    )
    for anomaly in run.anomalies:
        print(f"ANOMALY: {anomaly}")


def describe_store(path: str) -> str:
    from django_observability import metrics_store

    """What the store holds: files per live worker, archives (rows, series), others."""
    names = os.listdir(path)
    owned = [name for name in names if _pid_of(name) is not None]
    live = {_pid_of(name) for name in owned}
    per_live = len(owned) / max(len(live), 1)
    archives = sorted(n for n in names if f"_{metrics_store.ARCHIVE}.db" in n)
    others = sorted(n for n in names if n not in archives and _pid_of(n) is None)
    rows = [row for n in archives for row in metrics_store.read_file(os.path.join(path, n))]
    return (
        f"{len(names)} files = {len(live)} live workers x {per_live:g} + "
        f"{len(archives)} archives ({', '.join(archives)}: {len(rows):,} rows for "
        f"{len({key for key, _, _ in rows}):,} series) + {len(others)} others "
        f"({', '.join(others)})"
    )


def _pid_of(name: str) -> int | None:
    """The pid a store file belongs to (``counter_123.db``), or None."""
    stem = name.removesuffix(".db")
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if name.endswith(".db") and tail.isdigit() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers",
        default="0,100,400,1000",
        help="checkpoints: dead workers after which to measure (comma-separated)",
    )
    parser.add_argument(
        "--requests-per-worker",
        type=int,
        default=40,
        help=f"at least {len(MIX)}: each kind of request of the mix once, the rest drawn",
    )
    parser.add_argument("--renders", type=int, default=7, help="timed renders per measure")
    parser.add_argument("--dir", default=None, help="where to make the directories (a tmpfs?)")
    args = parser.parse_args()
    checkpoints = sorted({int(n) for n in args.workers.split(",") if n.strip()})
    if args.requests_per_worker < len(MIX):
        parser.error(f"--requests-per-worker: at least {len(MIX)}")
    if not checkpoints or checkpoints[0] < 0:
        parser.error("--workers: dead worker counts, 0 or more")

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="dead-workers-", dir=args.dir))
    run: Run | None = None
    try:
        run = Run(root, args.requests_per_worker, args.renders)
        set_up_django(root / "db.sqlite3", run.before)
        import django

        print(
            f"Example project, Django {django.get_version()}, prometheus-client "
            f"{metadata.version('prometheus-client')}, Python {sys.version.split()[0]}, "
            f"nproc {os.cpu_count()}; stores in {root}; "
            f"{LIVE_WORKERS} live workers; {args.requests_per_worker} requests per worker; "
            f"median of {args.renders} renders",
            flush=True,
        )
        run.start_live_workers()
        points = []
        for target in checkpoints:
            while run.dead < target:
                run.one_dead_worker()
            point = run.checkpoint()
            points.append(point)
            print(
                f"[{time.monotonic() - started:5.0f} s] {point.dead:,} dead: before "
                f"{spread(point.before_times)}, after {spread(point.after_times)}, /metrics "
                f"{point.view_ms:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
        run.stop_live_workers()
        report(points, run, time.monotonic() - started)
        failed = [p for p in points if p.problems or p.count_before != p.sent]
        failed += [p for p in points if p.count_after != p.sent or p.view_count != p.sent]
        for p in points:
            for problem in p.problems[:10]:
                print(f"DIFFERENCE at {p.dead:,} dead: {problem}")
        if failed:
            print("FAILED: the totals differ (see above)")
            return 1
        return 0
    finally:
        if run is not None:
            run.kill_live_workers()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
