"""Health endpoints of the example project under real servers and a real database.

* A readiness check that hangs for 30 s, under uvicorn and under gunicorn
  (gthread, 8 threads): probes still answer 503 on time, alone and in a
  storm of 50, the hung check is started once per process, threads stay
  bounded, and the servers still stop.
* A private PostgreSQL that goes away and comes back, under gunicorn with
  two workers: readiness follows it, liveness does not, the app's database
  connections stay bounded; ``manage.py health`` exit codes against it.
* SQLite turned to garbage and restored; kubelet-style probes (pod IP as
  ``Host``, plain HTTP) with ``SECURE_SSL_REDIRECT`` on.
* ``manage.py drain`` seen by every gunicorn worker; health and per-worker
  process metrics on ``/metrics``, linted by promtool.

Callers from 127.0.0.1 are authorized in the example project (its
``OBSERVABILITY_ALLOWED_IPS``); the "unauthorized" caller connects from
127.0.0.2, which is loopback too but outside that list.
"""

from __future__ import annotations

import collections
import json
import shutil
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.register_assert_rewrite("tests.peers")

from tests.peers import (  # noqa: E402
    UNAUTHORIZED_SOURCE,
    Postgres,
    Response,
    Server,
    example_env,
    http,
    http_from,
    make_gunicorn,
    make_uvicorn,
    manage,
    pin_workers,
    run_promtool_check,
    samples,
    scrape,
    serving_pids,
    wait_for,
)

pytest_plugins = ["tests.peers"]

pytestmark = pytest.mark.peers

LIVE = "/health/live/"
READY = "/health/ready/"
REPORT = "/health/"
HEALTH_JSON = "application/health+json"

# The example project's readiness checks, and those of them that use the database.
READINESS_CHECKS = ("database", "cache", "migrations")
DB_CHECKS = ("database", "migrations")
HEALTH_MAX_THREADS = 8  # OBSERVABILITY_HEALTH_MAX_THREADS of the example project

SLOW_CHECK_SECONDS = 30
# Per-check timeout 0.5 s and deadline 0.8 s: a probe has this much, generously.
PROBE_BUDGET = 5.0
STORM = 50
# Threads of a server process once a storm of probes is over: main thread,
# the server's own (gthread: 8), the health pool (at most
# OBSERVABILITY_HEALTH_MAX_THREADS, one of them held by the hung check).
SETTLED_THREADS = 1 + 8 + HEALTH_MAX_THREADS + 8
# gunicorn gthread stays under this all along. Under uvicorn, Django's
# ASGIHandler runs each request's sync parts (request_started/finished
# receivers) in a thread of that request's own (asgiref's
# ThreadSensitiveContext), so there the peak follows the number of requests in
# flight, not the health checks: at most one more thread per probe.
GTHREAD_PEAK_THREADS = 40
ASGI_PEAK_THREADS = STORM + SETTLED_THREADS
# A server whose health check hangs must still stop within this after SIGTERM.
SHUTDOWN_BUDGET = 4.0
KILL_TIMEOUT = 3.0

PG_WORKERS = 2
PG_DATABASE = "example"
RECOVERY_DEADLINE = 15.0


# --- helpers -----------------------------------------------------------------------


def health_env(workdir: Path, db: Path) -> dict[str, str]:
    """The example project's environment with a private media root and drain marker.

    The drain marker's default path is shared by everything on the machine
    running the example project; each deployment here gets its own.
    """
    env = example_env(db)
    (workdir / "media").mkdir(exist_ok=True)
    env.update(
        EXAMPLE_MEDIA_ROOT=str(workdir / "media"),
        EXAMPLE_DRAIN_FILE=str(workdir / "draining"),
    )
    return env


def cli_env(server: Server) -> dict[str, str]:
    """The server's environment for a management command run beside it.

    Without the server's gunicorn settings and Prometheus multiprocess
    directory: the command is another container's exec, not a worker.
    """
    return {
        key: value
        for key, value in server.env.items()
        if not key.startswith("GUNICORN_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }


def timed_get(url: str, **kwargs: Any) -> tuple[Response, float]:
    start = time.monotonic()
    resp = http(url, timeout=PROBE_BUDGET, **kwargs)
    return resp, time.monotonic() - start


def statuses(body: dict[str, Any]) -> dict[str, str]:
    """Check name -> its worst component status, from a health+json body."""
    order = {"pass": 0, "warn": 1, "fail": 2}
    return {
        name: max((c["status"] for c in components), key=order.__getitem__)
        for name, components in body.get("checks", {}).items()
    }


def outputs(body: dict[str, Any]) -> list[str]:
    return [
        c["output"]
        for components in body.get("checks", {}).values()
        for c in components
        if "output" in c
    ]


def assert_health(resp: Response, code: int, status: str) -> dict[str, Any]:
    assert resp.status == code, (resp.status, resp.body[:1000])
    assert resp.headers.get("content-type", "").startswith(HEALTH_JSON), resp.headers
    body = resp.json()
    assert body["status"] == status, body
    if "description" in body:  # a caller allowed the details
        assert body["serviceId"] == "example-shop"
    else:  # a stranger: statuses only
        assert set(body) <= {"status", "checks"}, body
    return body


def wait_status(url: str, code: int, deadline: float, **kwargs: Any) -> Response:
    """Poll ``url`` until it answers ``code``; the last response either way."""
    last: list[Response] = []

    def poll() -> bool:
        resp = http(url, timeout=PROBE_BUDGET, **kwargs)
        last.append(resp)
        return resp.status == code

    wait_for(poll, deadline=deadline, interval=0.1)
    assert last, f"{url} never answered"
    return last[-1]


def start_all(servers: Iterable[Server], ready_path: str = LIVE) -> None:
    """Start every server, then wait for each: they boot side by side."""
    servers = list(servers)
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready(ready_path)


# --- 1. a check that hangs -------------------------------------------------------------


@dataclass
class Hung:
    server: Server
    counter: Path


@pytest.fixture(scope="module")
def hung_servers(
    tmp_path_factory: pytest.TempPathFactory, example_db: Path
) -> Iterable[dict[str, Hung]]:
    """uvicorn and gunicorn (one gthread worker, 8 threads) with a readiness check that hangs."""
    deployments: dict[str, Hung] = {}
    for kind in ("uvicorn", "gunicorn"):
        workdir = tmp_path_factory.mktemp(f"hung-{kind}")
        env = health_env(workdir, example_db)
        counter = workdir / "slow-check-starts"
        env.update(
            EXAMPLE_SLOW_CHECK_SECONDS=str(SLOW_CHECK_SECONDS),
            EXAMPLE_SLOW_CHECK_COUNTER=str(counter),
        )
        if kind == "uvicorn":
            server = make_uvicorn("uvicorn-hung", workdir, env)
        else:
            server = make_gunicorn(
                "gunicorn-hung", workdir, env, workers=1, worker_class="gthread", threads=8
            )
        deployments[kind] = Hung(server, counter)
    try:
        # Liveness runs no checks: the first readiness probe is the test's.
        start_all(d.server for d in deployments.values())
        yield deployments
    finally:
        for d in deployments.values():
            d.server.stop(timeout=KILL_TIMEOUT)


class ThreadSampler:
    """The peak thread count of some processes, sampled every few ms in a thread."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.processes = [psutil.Process(pid) for pid in pids]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        """The largest thread count of one of the processes right now."""
        return max(process.num_threads() for process in self.processes)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.005)

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.peak = max(self.peak, self.now())


def assert_hung_answer(body: dict[str, Any]) -> None:
    assert statuses(body) == {
        "database": "pass",
        "cache": "pass",
        "migrations": "pass",
        "slow": "fail",
    }, body
    assert body["description"] == "readiness"
    (database,) = body["checks"]["database"]
    assert database["componentId"] == "default"
    assert database["observedUnit"] == "ms"


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_hung_check_does_not_hang_probes(hung_servers: dict[str, Hung], kind: str) -> None:
    deployment = hung_servers[kind]
    url = deployment.server.url
    pids = serving_pids(deployment.server)

    # The first probe starts the checks and answers once the hung one is past its timeout.
    resp, elapsed = timed_get(url + READY)
    body = assert_health(resp, 503, "fail")
    assert elapsed < PROBE_BUDGET, elapsed
    assert_hung_answer(body)
    (slow,) = body["checks"]["slow"]
    assert slow["output"] == "timed out after 0.5 s"  # 127.0.0.1 is authorized

    # A storm of probes: each answered on time, none starts the hung check again.
    def probe(_: int) -> tuple[Response, float]:
        return timed_get(url + READY)

    with ThreadSampler(pids) as threads, ThreadPoolExecutor(max_workers=STORM) as pool:
        storm = list(pool.map(probe, range(STORM)))
    slowest = max(elapsed for _, elapsed in storm)
    assert slowest < PROBE_BUDGET, slowest
    for resp, _ in storm:
        assert_hung_answer(assert_health(resp, 503, "fail"))

    starts = collections.Counter(int(line) for line in deployment.counter.read_text().split())
    assert starts == {pid: 1 for pid in pids}, (starts, pids)

    peak_bound = ASGI_PEAK_THREADS if kind == "uvicorn" else GTHREAD_PEAK_THREADS
    assert threads.peak <= peak_bound, (threads.peak, peak_bound)
    assert wait_for(lambda: threads.now() <= SETTLED_THREADS, deadline=5.0), (
        f"threads did not settle: {threads.now()} > {SETTLED_THREADS}"
    )

    # An unauthorized caller learns which check fails, not why.
    resp = http_from(UNAUTHORIZED_SOURCE, url + READY, timeout=PROBE_BUDGET)
    body = assert_health(resp, 503, "fail")
    assert statuses(body)["slow"] == "fail"
    assert outputs(body) == [], body
    resp = http_from(UNAUTHORIZED_SOURCE, url + READY + "?verbose", timeout=PROBE_BUDGET)
    assert resp.status == 503
    lines = resp.body.decode().splitlines()
    assert "[-]slow failed: reason withheld" in lines, lines
    assert "[+]database ok" in lines, lines
    assert lines[-1] == "readyz check failed", lines

    # The full report: details (and the system summary) for authorized callers only.
    resp = http_from(UNAUTHORIZED_SOURCE, url + REPORT, timeout=PROBE_BUDGET)
    body = assert_health(resp, 503, "fail")
    assert statuses(body)["slow"] == "fail"
    assert outputs(body) == [], body
    assert "system" not in body, body
    resp, elapsed = timed_get(url + REPORT)
    body = assert_health(resp, 503, "fail")
    assert elapsed < PROBE_BUDGET, elapsed
    assert "timed out" in body["checks"]["slow"][0]["output"]
    assert "system" in body

    # Liveness never waits for checks.
    resp, elapsed = timed_get(url + LIVE)
    assert_health(resp, 200, "pass")
    assert elapsed < 1.0, elapsed

    # Still one start per process after all that.
    starts = collections.Counter(int(line) for line in deployment.counter.read_text().split())
    assert starts == {pid: 1 for pid in pids}, (starts, pids)


@pytest.mark.parametrize(
    "kind",
    [
        "uvicorn",
        "gunicorn",
    ],
)
def test_hung_check_does_not_hold_up_shutdown(hung_servers: dict[str, Hung], kind: str) -> None:
    server = hung_servers[kind].server
    assert server.proc is not None
    # The hung check must be running now (the test above started it).
    if not hung_servers[kind].counter.exists():
        timed_get(server.url + READY)
    pids = serving_pids(server)
    start = time.monotonic()
    server.proc.terminate()
    try:
        server.proc.wait(timeout=SHUTDOWN_BUDGET)
        took: float | None = time.monotonic() - start
    except Exception:
        took = None
    finally:
        server.stop(timeout=0.1)  # SIGKILL to its process group if still there
    gone = [
        pid
        for pid in pids
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    ]
    assert gone == sorted(pids), "a worker survived SIGKILL"
    assert took is not None, f"{kind} still running {SHUTDOWN_BUDGET} s after SIGTERM"


# --- 3 and 4. SQLite made unusable; probes with the pod IP as Host -----------------


@dataclass
class SqliteDeployment:
    server: Server
    db: Path


@pytest.fixture(scope="module")
def ssl_servers(
    tmp_path_factory: pytest.TempPathFactory, example_db: Path
) -> Iterable[dict[str, SqliteDeployment]]:
    """uvicorn and gunicorn (sync), SECURE_SSL_REDIRECT on, each on its own SQLite copy."""
    deployments: dict[str, SqliteDeployment] = {}
    for kind in ("uvicorn", "gunicorn"):
        workdir = tmp_path_factory.mktemp(f"ssl-{kind}")
        db = workdir / "db.sqlite3"
        shutil.copyfile(example_db, db)
        env = health_env(workdir, db)
        env["EXAMPLE_SSL_REDIRECT"] = "1"
        if kind == "uvicorn":
            server = make_uvicorn("uvicorn-ssl", workdir, env)
        else:
            server = make_gunicorn("gunicorn-ssl", workdir, env, workers=1)
        deployments[kind] = SqliteDeployment(server, db)
    try:
        start_all(d.server for d in deployments.values())
        yield deployments
    finally:
        for d in deployments.values():
            d.server.stop(timeout=KILL_TIMEOUT)


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_pod_ip_probes_skip_host_check_and_ssl_redirect(
    ssl_servers: dict[str, SqliteDeployment], kind: str
) -> None:
    url = ssl_servers[kind].server.url
    pod = {"Host": "10.1.2.3:8000"}  # what the kubelet sends, over plain HTTP

    resp = http(url + LIVE, headers=pod)
    assert_health(resp, 200, "pass")
    resp = http(url + READY, headers=pod)
    body = assert_health(resp, 200, "pass")
    assert statuses(body) == dict.fromkeys(READINESS_CHECKS, "pass"), body
    resp = http(url + READY + "?verbose", headers=pod)
    assert resp.status == 200
    assert resp.body.decode().splitlines()[-1] == "readyz check passed"
    resp = http(url + LIVE, method="HEAD", headers=pod)
    assert resp.status == 200

    # The full report is an ordinary view: host validation, then the redirect.
    resp = http(url + REPORT, headers=pod)
    assert resp.status == 400, (resp.status, resp.body[:300])
    resp = http(url + REPORT)
    assert resp.status == 301, (resp.status, resp.body[:300])
    assert resp.headers["location"] == "https" + url.removeprefix("http") + REPORT


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_sqlite_garbage_fails_readiness(
    ssl_servers: dict[str, SqliteDeployment], kind: str
) -> None:
    deployment = ssl_servers[kind]
    url = deployment.server.url
    assert_health(wait_status(url + READY, 200, deadline=5.0), 200, "pass")

    original = deployment.db.read_bytes()
    garbage = (b"this is not a database, just garbage bytes. " * (len(original) // 44 + 1))[
        : len(original)
    ]
    try:
        # In place, as a disk or a bad deploy would: same file, other bytes.
        with open(deployment.db, "r+b") as fh:
            fh.write(garbage)
        start = time.monotonic()
        resp = wait_status(url + READY, 503, deadline=5.0)
        took = time.monotonic() - start
        body = assert_health(resp, 503, "fail")
        assert took < 5.0, took
        assert statuses(body)["database"] == "fail", body
        assert statuses(body)["cache"] == "pass", body
        (database,) = body["checks"]["database"]
        assert database["componentId"] == "default"
        assert "not a database" in database["output"], database
        assert_health(http(url + LIVE), 200, "pass")
    finally:
        with open(deployment.db, "r+b") as fh:
            fh.write(original)
    resp = wait_status(url + READY, 200, deadline=5.0)
    body = assert_health(resp, 200, "pass")
    assert statuses(body) == dict.fromkeys(READINESS_CHECKS, "pass"), body


# --- 2, 5, 6, 7. PostgreSQL under gunicorn with two workers -----------------------------


@dataclass
class PgDeployment:
    server: Server
    postgres: Postgres
    drain_file: Path

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def pg_deployment(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: Postgres, example_db: Path
) -> Iterable[PgDeployment]:
    """The example project on the private PostgreSQL: gunicorn, 2 gthread workers, multiprocess."""
    workdir = tmp_path_factory.mktemp("pg-gunicorn")
    postgres_server.create_database(PG_DATABASE)
    env = health_env(workdir, example_db)
    env.update(
        EXAMPLE_PG_PORT=str(postgres_server.port),
        EXAMPLE_PG_HOST="127.0.0.1",
        EXAMPLE_PG_NAME=PG_DATABASE,
        EXAMPLE_PG_USER="postgres",
    )
    migrated = manage(env, "migrate", "--noinput", timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    server = make_gunicorn(
        "gunicorn-pg", workdir, env, workers=PG_WORKERS, worker_class="gthread", threads=4
    )
    try:
        start_all([server])
        yield PgDeployment(server, postgres_server, Path(env["EXAMPLE_DRAIN_FILE"]))
    finally:
        server.stop(timeout=KILL_TIMEOUT)
        if not postgres_server.running():
            postgres_server.start()


class BackendSampler:
    """Counts the example database's client connections every few ms, in a thread."""

    def __init__(self, postgres: Postgres) -> None:
        self.postgres = postgres
        self.counts: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.postgres.connect() as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (PG_DATABASE,),
                ).fetchone()
                self.counts.append(int(row[0]))
                time.sleep(0.002)

    def __enter__(self) -> BackendSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_postgres_going_away_fails_readiness_only(pg_deployment: PgDeployment) -> None:
    url = pg_deployment.url
    postgres = pg_deployment.postgres
    body = assert_health(wait_status(url + READY, 200, deadline=10.0), 200, "pass")
    assert statuses(body) == dict.fromkeys(READINESS_CHECKS, "pass"), body
    (database,) = body["checks"]["database"]
    assert database["componentId"] == "default"

    # A burst of probes: each worker runs each database check at most once at
    # a time, in a pool thread that closes its connection afterwards.
    def probe(_: int) -> Response:
        return http(url + READY, timeout=PROBE_BUDGET)

    with BackendSampler(postgres) as sampler, ThreadPoolExecutor(max_workers=30) as pool:
        for _ in range(3):
            time.sleep(1.05)  # the cached results have expired: the checks run again
            burst = list(pool.map(probe, range(30)))
            assert [r.status for r in burst] == [200] * 30
    assert sampler.counts, "pg_stat_activity was never sampled"
    # One per database check per worker, plus one backend per worker that may
    # still be exiting after its client closed.
    bound = PG_WORKERS * len(DB_CHECKS) + PG_WORKERS
    assert max(sampler.counts) <= bound, (max(sampler.counts), bound)
    assert wait_for(lambda: postgres.backends(PG_DATABASE) == 0, deadline=3.0), (
        f"the app keeps database connections open between checks: {postgres.backends(PG_DATABASE)}"
    )

    postgres.stop("fast")
    try:
        start = time.monotonic()
        resp = wait_status(url + READY, 503, deadline=5.0)
        took = time.monotonic() - start
        body = assert_health(resp, 503, "fail")
        assert took < 5.0, took
        assert statuses(body)["database"] == "fail", body
        assert statuses(body)["cache"] == "pass", body
        (database,) = body["checks"]["database"]
        assert database["componentId"] == "default"
        assert database["status"] == "fail"
        assert database["output"], database  # 127.0.0.1 sees why

        # Every worker notices, each probe answers on time.
        for _ in range(10):
            resp, elapsed = timed_get(url + READY)
            assert elapsed < PROBE_BUDGET, elapsed
            assert statuses(assert_health(resp, 503, "fail"))["database"] == "fail"

        assert_health(http(url + LIVE), 200, "pass")

        resp, elapsed = timed_get(url + REPORT)
        body = assert_health(resp, 503, "fail")
        assert statuses(body)["database"] == "fail", body
        assert elapsed < PROBE_BUDGET, elapsed
        resp = http_from(UNAUTHORIZED_SOURCE, url + REPORT, timeout=PROBE_BUDGET)
        body = assert_health(resp, 503, "fail")
        assert statuses(body)["database"] == "fail", body
        assert outputs(body) == [], body
        assert "system" not in body, body
    finally:
        postgres.start()

    start = time.monotonic()
    resp = wait_status(url + READY, 200, deadline=RECOVERY_DEADLINE)
    body = assert_health(resp, 200, "pass")
    assert statuses(body) == dict.fromkeys(READINESS_CHECKS, "pass"), body
    assert time.monotonic() - start < RECOVERY_DEADLINE
    # Both workers are back (not just the one that answered first).
    for _ in range(6):
        assert_health(http(url + READY, timeout=PROBE_BUDGET), 200, "pass")


def test_health_command_exit_codes_follow_postgres(pg_deployment: PgDeployment) -> None:
    env = cli_env(pg_deployment.server)
    postgres = pg_deployment.postgres

    up = manage(env, "health", "--ready", "--format", "json", timeout=60)
    assert up.returncode == 0, up.stdout + up.stderr
    body = json.loads(up.stdout)
    assert body["status"] == "pass"
    assert statuses(body) == dict.fromkeys(READINESS_CHECKS, "pass"), body

    postgres.stop("fast")
    try:
        down = manage(env, "health", "--ready", "--format", "json", timeout=60)
        assert down.returncode == 1, down.stdout + down.stderr
        body = json.loads(down.stdout)
        assert body["status"] == "fail"
        assert statuses(body)["database"] == "fail", body
        (database,) = body["checks"]["database"]
        assert database["componentId"] == "default"
        assert database["output"]  # the operator sees every detail

        text = manage(env, "health", timeout=60)
        assert text.returncode == 1, text.stdout + text.stderr
        lines = text.stdout.splitlines()
        assert any(line.startswith("[-]database failed: ") for line in lines), lines
        assert lines[-1] == "healthz check failed", lines

        live = manage(env, "health", "--live", timeout=60)
        assert live.returncode == 0, live.stdout + live.stderr
    finally:
        postgres.start()

    again = manage(env, "health", "--ready", timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[-1] == "readyz check passed"


def test_drain_reaches_every_worker(pg_deployment: PgDeployment) -> None:
    url = pg_deployment.url
    env = cli_env(pg_deployment.server)
    assert not pg_deployment.drain_file.exists()
    assert_health(wait_status(url + READY, 200, deadline=RECOVERY_DEADLINE), 200, "pass")
    workers = serving_pids(pg_deployment.server)
    assert len(workers) == PG_WORKERS

    drained = manage(env, "drain", timeout=60)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    try:
        assert pg_deployment.drain_file.exists()
        pinned = pin_workers(url, PG_WORKERS)
        try:
            assert set(pinned) == workers
            for pid, conn in pinned.items():
                for _ in range(10):
                    body = assert_health(conn.request(READY), 503, "fail")
                    assert statuses(body) == {
                        **dict.fromkeys(READINESS_CHECKS, "pass"),
                        "shutdown": "fail",
                    }, (pid, body)
                    (shutdown,) = body["checks"]["shutdown"]
                    assert "draining" in shutdown["output"]
                assert_health(conn.request(LIVE), 200, "pass")
                resp = conn.request(READY + "?verbose")
                assert resp.status == 503
                assert resp.body.decode().splitlines()[-2:] == [
                    "[-]shutdown failed: shutting down: draining before exit",
                    "readyz check failed",
                ]
                # Still the same worker at the other end of the connection.
                assert conn.request("/").json()["pid"] == pid
        finally:
            for conn in pinned.values():
                conn.close()
    finally:
        undone = manage(env, "drain", "--undo", timeout=60)
        assert undone.returncode == 0, undone.stdout + undone.stderr
    assert not pg_deployment.drain_file.exists()

    pinned = pin_workers(url, PG_WORKERS)
    try:
        for pid, conn in pinned.items():
            body = assert_health(conn.request(READY), 200, "pass")
            assert statuses(body) == dict.fromkeys(READINESS_CHECKS, "pass"), (pid, body)
            assert conn.request("/").json()["pid"] == pid
    finally:
        for conn in pinned.values():
            conn.close()


PROCESS_GAUGES = (
    "django_process_resident_memory_bytes",
    "django_process_cpu_seconds",
    "django_process_open_fds",
    "django_process_threads",
)


def test_health_and_process_metrics_per_worker(pg_deployment: PgDeployment) -> None:
    url = pg_deployment.url
    workers = serving_pids(pg_deployment.server)
    assert len(workers) == PG_WORKERS
    # Both workers answer readiness now (after the drain test they did; again here).
    pinned = pin_workers(url, PG_WORKERS)
    try:
        for conn in pinned.values():
            assert_health(conn.request(READY), 200, "pass")
    finally:
        for conn in pinned.values():
            conn.close()

    # Each scrape refreshes the gauges of the worker that serves it.
    texts: list[str] = []

    def every_worker_reported() -> bool:
        texts.append(scrape(url))
        pids = {labels.get("pid") for labels, _ in samples(texts[-1], PROCESS_GAUGES[0])}
        return pids == {str(pid) for pid in workers}

    assert wait_for(every_worker_reported, deadline=10.0, interval=0.05), texts[-1][-3000:]
    text = texts[-1]

    for name in PROCESS_GAUGES:
        series = samples(text, name)
        assert sorted(labels["pid"] for labels, _ in series) == sorted(map(str, workers)), name
        assert all(value > 0 for _, value in series), (name, series)
    for labels, value in samples(text, "django_process_resident_memory_bytes"):
        assert value > 10 * 2**20, (labels, value)  # a Django worker is more than 10 MiB

    status = {labels["check"]: value for labels, value in samples(text, "health_check_status")}
    for check in READINESS_CHECKS:
        assert status[check] == 1.0, status
    durations = {
        labels["check"]: value for labels, value in samples(text, "health_check_duration_seconds")
    }
    assert set(READINESS_CHECKS) <= set(durations), durations
    assert all(0 <= value < 1 for value in durations.values()), durations
    assert [value for _, value in samples(text, "health_ready")] == [1.0]

    lint = run_promtool_check(text)
    assert lint.returncode == 0, lint.stderr.decode() + lint.stdout.decode()


def test_health_command_leaves_no_series_in_the_workers_metrics(
    pg_deployment: PgDeployment,
) -> None:
    url = pg_deployment.url
    env = cli_env(pg_deployment.server)
    env["PROMETHEUS_MULTIPROC_DIR"] = pg_deployment.server.env["PROMETHEUS_MULTIPROC_DIR"]
    workers = {str(pid) for pid in serving_pids(pg_deployment.server)}

    # An exec probe while draining: it fails, as it should.
    drained = manage(cli_env(pg_deployment.server), "drain", timeout=60)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    try:
        probe = manage(env, "health", "--ready", timeout=60)
        assert probe.returncode == 1, probe.stdout + probe.stderr
    finally:
        manage(cli_env(pg_deployment.server), "drain", "--undo", timeout=60)

    pinned = pin_workers(url, PG_WORKERS)
    try:
        for conn in pinned.values():
            assert_health(conn.request(READY), 200, "pass")
    finally:
        for conn in pinned.values():
            conn.close()
    text = scrape(url)
    pids = {labels.get("pid") for labels, _ in samples(text, PROCESS_GAUGES[0])}
    assert pids <= workers, f"series of processes that are not workers: {pids - workers}"
    assert [value for _, value in samples(text, "health_ready")] == [1.0]
