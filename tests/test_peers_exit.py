"""A collector that accepts connections and never answers: exits stay bounded.

The example project under the real gunicorn (and uvicorn) exports spans over
OTLP/HTTP to a loopback port the test holds: the kernel completes every
connection, nothing ever reads or answers (what a hung collector, or one
stopped with SIGSTOP, looks like to the exporter). The example's export
timeout is 2 s; ``OBSERVABILITY_TRACING_EXIT_TIMEOUT`` keeps its default, 1 s.
Before the flush at exit was bounded, each exiting worker waited for the batch
in flight and then the queued one, 2 s each, and gunicorn replaced it only
then; a SIGTERM stop took 8-12 s.

* Churn: two sync workers restarted every 50 requests while 400 requests
  come in. Every request is answered; gunicorn's ``worker_exit`` hook takes at
  most the exit timeout plus slack in every worker. With the export outcome
  shared by the workers (``--preload``, or the config importing the tracing
  module in the master), only the first exits wait: their flush timing out
  counts as a failed export, and the replacements drop their spans at once.
  Throughput against the same run with tracing off is measured and printed
  (``-s``), not asserted: ``benchmarks/silent_collector.py`` measures it.
* SIGTERM to the gunicorn master, spans queued in both workers: gone in < 3 s.
* uvicorn (no hooks: the ``atexit`` flush) stopped with SIGINT: < 3 s.
* A live collector (rotel) under churn: the bounded flush loses nothing.

The timing of each ``worker_exit`` comes from a gunicorn config the test
writes: the example's own, whose hook it wraps with a clock.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.peers", "tests.peers_tracing")

from tests.peers import (  # noqa: E402
    EXAMPLE_DIR,
    Server,
    example_env,
    http,
    make_gunicorn,
    make_uvicorn,
    serving_pids,
    wait_for,
)
from tests.peers_tracing import (  # noqa: E402
    Collector,
    SilentCollector,
    by_request_id,
    otel_free_env,
)

pytest_plugins = ["tests.peers", "tests.peers_tracing"]

pytestmark = pytest.mark.peers

EXIT_TIMEOUT = 1.0  # OBSERVABILITY_TRACING_EXIT_TIMEOUT: the example keeps the default
EXPORT_TIMEOUT = 2.0  # the example's OBSERVABILITY_TRACING_EXPORT_TIMEOUT
# A worker's hook returns within the bound; the rest is scheduling on a busy machine.
EXIT_SLACK = 0.75
STOP_LIMIT = 3.0  # the contract for a SIGTERM stop
PATH = "/api/v1/stats/"  # two queries: three spans per request
DROPPED = re.compile(r"(\d+) spans dropped at exit")


@pytest.fixture
def silent() -> Iterator[SilentCollector]:
    collector = SilentCollector()
    try:
        yield collector
    finally:
        collector.close()


def tracing_to(db: Path, endpoint: str | None) -> dict[str, str]:
    """The example project's environment, exporting to ``endpoint`` (``None``: tracing off)."""
    env = otel_free_env(example_env(db))
    if endpoint is None:
        env["OTEL_TRACES_EXPORTER"] = "none"
    else:
        env.update(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        )
    return env


def timed_config(workdir: Path, *, import_tracing: bool = False) -> tuple[Path, Path]:
    """A gunicorn config: the example's, with its ``worker_exit`` timed.

    Each exiting worker appends ``pid seconds`` to the timings file.
    ``import_tracing`` imports the tracing module in the master, as
    ``--preload`` does, so the workers share their export outcomes.
    """
    config, timings = workdir / "gunicorn_timed.py", workdir / "exit_timings.txt"
    config.write_text(
        "import time\n"
        + ("import django_observability.tracing  # noqa: F401\n" if import_tracing else "")
        + f"exec(compile(open({str(EXAMPLE_DIR / 'gunicorn.conf.py')!r}).read(),"
        " 'gunicorn.conf.py', 'exec'))\n"
        "_example_worker_exit = globals().get('worker_exit')\n"
        "\n"
        "def worker_exit(server, worker):\n"
        "    start = time.monotonic()\n"
        "    if _example_worker_exit is not None:\n"
        "        _example_worker_exit(server, worker)\n"
        "    else:  # an example config without the package's hooks\n"
        "        from django_observability import tracing\n"
        "        tracing.flush_on_exit()\n"
        f"    with open({str(timings)!r}, 'a') as f:\n"
        "        f.write('%d %.3f\\n' % (worker.pid, time.monotonic() - start))\n"
    )
    return config, timings


def gunicorn(
    workdir: Path, env: dict[str, str], *, max_requests: int, preload: bool, import_tracing: bool
) -> tuple[Server, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(env)
    if preload:
        env["GUNICORN_PRELOAD"] = "1"
    server = make_gunicorn("gunicorn", workdir, env, workers=2, max_requests=max_requests)
    config, timings = timed_config(workdir, import_tracing=import_tracing)
    server.argv[server.argv.index("gunicorn.conf.py")] = str(config)
    return server, timings


def exit_timings(path: Path) -> list[float]:
    try:
        return [float(line.split()[1]) for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        return []


@dataclass
class Traffic:
    statuses: list[int]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.statuses) / self.seconds


def send(base_url: str, count: int, threads: int = 4, path: str = PATH) -> Traffic:
    """``count`` GETs of ``path``, one connection each, from ``threads`` clients."""

    def one(_: int) -> int:
        try:
            return http(base_url + path, timeout=10.0).status
        except OSError:
            return 0  # refused or timed out: a request nobody answered

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        statuses = list(pool.map(one, range(count)))
    return Traffic(statuses, time.monotonic() - start)


def sigterm_stop(server: Server) -> float:
    """Seconds from SIGTERM until the process has exited (killed after 30 s)."""
    assert server.proc is not None
    start = time.monotonic()
    server.proc.terminate()
    with contextlib.suppress(Exception):
        server.proc.wait(timeout=30)
    seconds = time.monotonic() - start
    server.stop()  # SIGKILL to its group if it is still there
    return seconds


def dropped(log: str) -> list[int]:
    return [int(n) for n in DROPPED.findall(log)]


# --- churn ----------------------------------------------------------------------

CHURN_REQUESTS = 400
CHURN_MAX_REQUESTS = 50


@pytest.mark.parametrize(
    ("preload", "import_tracing"),
    [(True, False), (False, True), (False, False)],
    ids=["preload", "tracing-imported-in-master", "workers-on-their-own"],
)
def test_churn_with_a_silent_collector(
    preload: bool,
    import_tracing: bool,
    silent: SilentCollector,
    example_db: Path,
    tmp_path: Path,
) -> None:
    runs = {}
    for name, endpoint in (("off", None), ("silent", silent.endpoint)):
        server, timings = gunicorn(
            tmp_path / name,
            tracing_to(example_db, endpoint),
            max_requests=CHURN_MAX_REQUESTS,
            preload=preload,
            import_tracing=import_tracing,
        )
        try:
            server.start()
            server.wait_ready("/health/live/")
            traffic = send(server.url, CHURN_REQUESTS)
        finally:
            server.stop()
        runs[name] = (traffic, exit_timings(timings), server.log_tail(200_000))

    traffic, exits, log = runs["silent"]
    assert traffic.statuses == [200] * CHURN_REQUESTS  # every request answered
    # Each worker served its 50 requests and exited (two more at the stop).
    assert len(exits) >= CHURN_REQUESTS // CHURN_MAX_REQUESTS, exits
    assert max(exits) <= EXIT_TIMEOUT + EXIT_SLACK, exits
    # The flush gave up and said so: spans queued at exit were dropped.
    assert dropped(log), log[-3000:]
    waited = [t for t in exits if t >= EXIT_TIMEOUT / 2]
    if preload or import_tracing:
        # One worker's flush timing out is a failed export for its siblings and
        # replacements: only exits that began before it ended waited.
        assert len(waited) <= 3, exits
    else:
        # Each worker learns on its own: its exit waits, never longer than the bound.
        assert waited, exits
    # The measure the issue asks for (>= 0.6x), printed rather than asserted.
    ratio = traffic.rate / runs["off"][0].rate
    print(
        f"\nchurn, {'preload' if preload else 'no preload'}"
        f"{', tracing imported in master' if import_tracing else ''}: "
        f"{traffic.rate:.0f} req/s vs {runs['off'][0].rate:.0f} off ({ratio:.2f}x); "
        f"{len(exits)} exits, {len(waited)} waited (a short run: they weigh), "
        f"longest {max(exits):.2f} s"
    )


# --- SIGTERM ----------------------------------------------------------------------


def queue_spans_in_every_worker(server: Server, workers: int) -> None:
    """Requests until every worker has answered some: each then has spans queued
    (its first scheduled export is 5 s away; the example's export timeout is 2 s)."""
    want = wait_for(lambda: len(serving_pids(server)) == workers and serving_pids(server), 10.0)
    assert want, f"gunicorn did not fork {workers} workers"
    seen: set[int] = set()
    for _ in range(20):
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda _: http(server.url + "/"), range(16)))
        assert all(a.status == 200 for a in answers)
        seen |= {a.json()["pid"] for a in answers}
        if seen >= want:
            return
    pytest.fail(f"only workers {sorted(seen)} of {sorted(want)} answered")


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_sigterm_stops_gunicorn_within_3_s(
    preload: bool, silent: SilentCollector, example_db: Path, tmp_path: Path
) -> None:
    server, timings = gunicorn(
        tmp_path,
        tracing_to(example_db, silent.endpoint),
        max_requests=0,
        preload=preload,
        import_tracing=False,
    )
    try:
        server.start()
        server.wait_ready("/health/live/")
        queue_spans_in_every_worker(server, 2)
        send(server.url, 60)  # three spans each, queued behind the first requests'
        seconds = sigterm_stop(server)
    finally:
        server.stop()
    log = server.log_tail(200_000)
    assert seconds < STOP_LIMIT, log[-3000:]
    assert server.proc is not None
    assert server.proc.returncode == 0, log[-3000:]  # stopped, not killed
    # Both workers ran the flush, which gave up on the silent collector.
    assert len(exit_timings(timings)) == 2
    assert len(dropped(log)) == 2, log[-3000:]
    assert "Shutting down: Master" in log


def test_uvicorn_stops_within_3_s(
    silent: SilentCollector, example_db: Path, tmp_path: Path
) -> None:
    """No server hook: the flush registered with atexit runs, and is bounded too.

    SIGINT (Ctrl+C): uvicorn shuts down, the interpreter exits, atexit runs.
    On SIGTERM uvicorn shuts down the same way and then raises SIGTERM again
    with the default handler, so the process ends by the signal and no atexit
    callback runs at all: no wait, and the queued spans are lost.
    """
    server = make_uvicorn("uvicorn", tmp_path, tracing_to(example_db, silent.endpoint))
    try:
        server.start()
        server.wait_ready("/health/live/")
        traffic = send(server.url, 80)
        assert set(traffic.statuses) == {200}
        assert server.proc is not None
        start = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(timeout=30)
        seconds = time.monotonic() - start
    finally:
        server.stop()
    log = server.log_tail(200_000)
    assert seconds < STOP_LIMIT, log[-3000:]
    assert server.proc.returncode == 0, log[-3000:]
    assert dropped(log) == [240], log[-3000:]  # 80 requests, three spans each


# --- a live collector --------------------------------------------------------------


def test_a_live_collector_gets_every_span_under_churn(
    collector: Collector, example_db: Path, tmp_path: Path
) -> None:
    """The bound costs nothing when the collector answers: the spans each worker
    still held when max_requests retired it arrive, none is dropped."""
    since = collector.mark()
    server, timings = gunicorn(
        tmp_path,
        tracing_to(example_db, collector.http_endpoint),
        max_requests=25,
        preload=True,
        import_tracing=False,
    )
    ids = [f"exit-{uuid.uuid4().hex[:12]}" for _ in range(120)]
    try:
        server.start()
        server.wait_ready("/health/live/")

        def one(request_id: str) -> int:
            return http(server.url + "/", headers={"X-Request-ID": request_id}).status

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert set(pool.map(one, ids)) == {200}
    finally:
        server.stop()
    log = server.log_tail(200_000)
    assert not dropped(log), log[-3000:]
    exits = exit_timings(timings)
    assert len(exits) >= 120 // 25, exits
    assert max(exits) <= EXIT_TIMEOUT + EXIT_SLACK, exits
    spans = collector.wait_spans(lambda s: set(ids) <= by_request_id(s).keys(), since=since)
    missing = sorted(set(ids) - by_request_id(spans).keys())
    assert not missing, f"{len(missing)} of {len(ids)} requests have no span: {missing[:5]}"
