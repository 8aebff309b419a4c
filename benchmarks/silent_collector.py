"""Throughput under worker churn, and SIGTERM stop time, with a collector that never answers.

The example project under the real gunicorn (2 sync workers, ``--preload``,
``max_requests`` 500 by default, its own ``gunicorn.conf.py``), loaded for a
fixed time by ``wrk`` (Debian package ``wrk``) or, without it, by a small
Python client (one connection per request, a few threads). Configurations,
side by side in one run:

``off``
    tracing off (the baseline).
``silent``
    OTLP/HTTP to a loopback port that accepts connections and never answers,
    with the example's hooks (``worker_exit`` -> ``tracing.flush_on_exit()``).
``silent, SDK shutdown``
    the same collector, the exiting worker calling the provider's own
    ``shutdown()`` as the app did before the flush was bounded: each exit
    waits for the export in flight and then the queued batch, each up to the
    export timeout (the example sets 2 s).
``off, no --preload``
    tracing off, the app loaded in each worker (the next two rows' baseline:
    a new worker loads Django, which costs more than any flush here).
``silent, no --preload``
    as ``silent``, the app loaded in each worker: the workers do not share
    how their exports ended, so each exit waits up to the bound.
``silent, no --preload, tracing imported in the master``
    as the previous one, with ``import django_observability.tracing`` in the
    gunicorn config: the outcomes are shared again.
``live``
    a real collector (rotel, ``pip install rotel``), when installed.

Then the time a SIGTERM to the master takes to stop everything, spans queued
in both workers: tracing off, and with the silent collector (bounded flush,
with and without ``--preload``; SDK shutdown). Run::

    .venv/bin/python benchmarks/silent_collector.py [--seconds 10] [--rounds 1] [--max-requests 500]

Everything listens on 127.0.0.1 on free ports and is stopped by its process id.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: the repository's tests package

from tests.peers_tracing import SilentCollector  # noqa: E402  (the same port the exit test uses)

EXAMPLE = REPO / "example_project"
BIN = Path(sys.executable).parent
PATH = "/api/v1/stats/"  # a view with two queries: three spans per request

# The configuration the app had before the flush was bounded: the exiting
# worker shuts the provider down the SDK's way (no bound).
SDK_SHUTDOWN_CONFIG = """
exec(compile(open({example!r}).read(), "gunicorn.conf.py", "exec"))


def worker_exit(server, worker):
    from opentelemetry import trace

    trace.get_tracer_provider().shutdown()
"""


# The example's configuration, with the tracing module imported in the master
# (as --preload does): workers forked from it share their export outcomes.
TRACING_IN_MASTER_CONFIG = """
import django_observability.tracing

exec(compile(open({example!r}).read(), "gunicorn.conf.py", "exec"))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_collector(workdir: Path) -> Iterator[str | None]:
    """A rotel collector (blackhole exporter) on a free port; ``None`` when not installed."""
    try:
        import rotel
    except ImportError:
        yield None
        return
    binary = Path(rotel.__file__).parent / "rotel-agent"
    http_port, grpc_port = free_port(), free_port()
    with open(workdir / "rotel.out", "wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "start",
                f"--otlp-http-endpoint=127.0.0.1:{http_port}",
                f"--otlp-grpc-endpoint=127.0.0.1:{grpc_port}",
                "--exporter=blackhole",
                f"--pid-file={workdir / 'rotel.pid'}",
                f"--log-file={workdir / 'rotel.log'}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", http_port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{http_port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def example_env(db: Path, endpoint: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "EXAMPLE_", "GUNICORN_", "PROMETHEUS_"))
        and k != "DJANGO_SETTINGS_MODULE"
    }
    env.update(DJANGO_SETTINGS_MODULE="example.settings", EXAMPLE_DB=str(db), PYTHONUNBUFFERED="1")
    if endpoint is None:
        env["OTEL_TRACES_EXPORTER"] = "none"
    else:
        env.update(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        )
    return env


@dataclass
class Gunicorn:
    """The example project under gunicorn, started in its own session."""

    env: dict[str, str]
    workdir: Path
    config: str = "gunicorn.conf.py"
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "gunicorn.log"

    def start(self, max_requests: int, preload: bool) -> None:
        self.port = free_port()
        env = dict(self.env)
        env.update(
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            GUNICORN_WORKERS="2",
            GUNICORN_WORKER_CLASS="sync",
            GUNICORN_THREADS="1",
            GUNICORN_MAX_REQUESTS=str(max_requests),
            GUNICORN_PRELOAD="1" if preload else "0",
            PROMETHEUS_MULTIPROC_DIR=str(self.workdir / "multiproc"),
        )
        argv = [str(BIN / "gunicorn"), "-c", self.config, "example.wsgi:application"]
        from gunicorn.config import KNOWN_SETTINGS

        if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
            argv.insert(-1, "--no-control-socket")  # its fixed path would be shared
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=EXAMPLE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{self.log.read_text()[-3000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + PATH, timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise SystemExit(f"gunicorn not ready:\n{self.log.read_text()[-3000:]}")

    def terminate(self, limit: float = 30.0) -> float:
        """SIGTERM to the master; seconds until it is gone (its group killed after ``limit``)."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        return time.monotonic() - start

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def worker_exits(self) -> int:
        return self.log.read_text(errors="replace").count("Worker exiting (pid")

    def dropped_lines(self) -> list[str]:
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if "spans dropped at exit" in line
        ]


# --- load ------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    errors: int  # non-2xx answers, refused or timed-out connections
    seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(url: str, seconds: float, connections: int) -> Load:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if total is None:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    elapsed = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    errors = 0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        errors += int(bad.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += int(sock.group(1)) + int(sock.group(3)) + int(sock.group(4))
    return Load(int(total.group(1)), errors, elapsed)


def run_python(url: str, seconds: float, connections: int) -> Load:
    """One connection per request from ``connections`` threads, back to back."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    end = time.monotonic() + seconds
    counts = [0, 0]
    lock = threading.Lock()

    def client() -> None:
        ok = bad = 0
        while time.monotonic() < end:
            conn = HTTPConnection(host, int(port), timeout=10)
            try:
                conn.request("GET", PATH, headers={"Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                ok, bad = (ok + 1, bad) if resp.status < 400 else (ok, bad + 1)
            except OSError:
                bad += 1
            finally:
                conn.close()
        with lock:
            counts[0] += ok + bad
            counts[1] += bad

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return Load(counts[0], counts[1], time.monotonic() - start)


def load(url: str, seconds: float, connections: int) -> Load:
    if shutil.which("wrk"):
        return run_wrk(url, seconds, connections)
    return run_python(url, seconds, connections)


# --- the run ---------------------------------------------------------------------


@dataclass
class Row:
    name: str
    load: Load
    exits: int
    dropped_lines: int
    waited: list[float]


def measure(
    name: str,
    env: dict[str, str],
    root: Path,
    args: argparse.Namespace,
    *,
    config: str = "gunicorn.conf.py",
    preload: bool = True,
) -> Row:
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    server = Gunicorn(env, workdir, config)
    try:
        server.start(args.max_requests, preload)
        result = load(server.url + PATH, args.seconds, args.connections)
        server.terminate()
    finally:
        server.kill()
    waited = [
        float(m.group(1))
        for line in server.dropped_lines()
        if (m := re.search(r"waited ([\d.]+) s", line))
    ]
    row = Row(name, result, server.worker_exits(), len(server.dropped_lines()), waited)
    print(
        f"  {name}: {result.rate:.0f} req/s, {result.errors} errors, {row.exits} worker exits",
        file=sys.stderr,
    )
    return row


def stop_time(
    env: dict[str, str], root: Path, args: argparse.Namespace, config: str, preload: bool = True
) -> float:
    """SIGTERM to the master in the middle of traffic, spans queued in every worker."""
    workdir = Path(tempfile.mkdtemp(prefix="stop-", dir=root))
    server = Gunicorn(env, workdir, config)
    try:
        # No max_requests: the workers have lived long enough to queue spans,
        # not to have finished an export (the example's export timeout is 2 s).
        server.start(0, preload)
        traffic = threading.Thread(target=load, args=(server.url + PATH, 3, args.connections))
        traffic.start()
        time.sleep(1.5)
        seconds = server.terminate()
        traffic.join(60)
        return seconds
    finally:
        server.kill()


@dataclass
class Config:
    name: str
    env: dict[str, str]
    config: str = "gunicorn.conf.py"
    preload: bool = True
    baseline: str = "off"  # the row its ratio is taken against


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load per configuration")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the median rate is shown")
    parser.add_argument("--max-requests", type=int, default=500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="silent-collector-"))
    silent = SilentCollector()
    results: dict[str, list[Row]] = {}
    try:
        db = root / "db.sqlite3"
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=EXAMPLE,
            env=example_env(db, None),
            capture_output=True,
            check=True,
            timeout=120,
        )
        example = str(EXAMPLE / "gunicorn.conf.py")
        sdk_config = root / "gunicorn_sdk_shutdown.py"
        sdk_config.write_text(SDK_SHUTDOWN_CONFIG.format(example=example))
        master_config = root / "gunicorn_tracing_in_master.py"
        master_config.write_text(TRACING_IN_MASTER_CONFIG.format(example=example))
        tool = "wrk" if shutil.which("wrk") else "a Python client"
        print(
            f"example project, gunicorn 2 sync workers, max_requests={args.max_requests}, "
            f"GET {PATH}, {args.seconds:g} s per configuration with {tool} "
            f"({args.connections} connections), {args.rounds} round(s)",
            file=sys.stderr,
        )
        off, quiet = example_env(db, None), example_env(db, silent.endpoint)
        configs = [
            Config("off", off),
            Config("silent", quiet),
            Config("silent, SDK shutdown", quiet, str(sdk_config)),
            Config("off, no --preload", off, preload=False),
            Config("silent, no --preload", quiet, preload=False, baseline="off, no --preload"),
            Config(
                "silent, no --preload, tracing imported in the master",
                quiet,
                str(master_config),
                preload=False,
                baseline="off, no --preload",
            ),
        ]
        with live_collector(root) as endpoint:
            if endpoint is not None:
                configs.append(Config("live (rotel)", example_env(db, endpoint)))
            # Rounds interleave the configurations, so that a slow minute of
            # the machine does not fall on one of them only.
            for _ in range(args.rounds):
                for c in configs:
                    row = measure(c.name, c.env, root, args, config=c.config, preload=c.preload)
                    results.setdefault(c.name, []).append(row)
        stops = {
            "off": stop_time(off, root, args, "gunicorn.conf.py"),
            "silent": stop_time(quiet, root, args, "gunicorn.conf.py"),
            "silent, no --preload": stop_time(quiet, root, args, "gunicorn.conf.py", False),
            "silent, SDK shutdown": stop_time(quiet, root, args, str(sdk_config)),
        }
    finally:
        silent.close()
        shutil.rmtree(root, ignore_errors=True)

    rates = {name: statistics.median(r.load.rate for r in rows) for name, rows in results.items()}
    print()
    print(
        "| configuration | req/s | vs | errors | worker exits (2 at the end of each run) "
        "| exits that dropped spans | of which waited |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in configs:
        rows = results[c.name]
        waited = sum(1 for r in rows for w in r.waited if w >= 0.05)
        ratio = f"{rates[c.name] / rates[c.baseline]:.2f}x {c.baseline}"
        print(
            f"| {c.name} | {rates[c.name]:.0f} | {ratio} | "
            f"{sum(r.load.errors for r in rows)} | {sum(r.exits for r in rows)} | "
            f"{sum(r.dropped_lines for r in rows)} | {waited} |"
        )
    print()
    print("| SIGTERM to the master | seconds until gunicorn is gone |")
    print("|---|---:|")
    for name, seconds in stops.items():
        print(f"| {name} | {seconds:.2f} |")
    if args.json:
        print(json.dumps({"rates": rates, "sigterm": stops}))


if __name__ == "__main__":
    main()
