"""Helpers and fixtures for the tests that talk to real programs (``-m peers``).

Everything runs on 127.0.0.1 on free ports, in temporary directories, bounded
in time, and is stopped by its process id when the session ends, whatever the
tests did: the example project under gunicorn (two sync workers, Prometheus
multiprocess mode, workers restarted by ``max_requests`` mid-run) and under
uvicorn (single process), and one Prometheus server that scrapes the gunicorn
deployment.

Each server gets one known burst of traffic (a *plan*) in a session fixture;
the tests then compare what ``/metrics`` (or Prometheus) reports with what the
client actually sent and received. Nothing else sends counted requests to
these servers, so the expected counts stay exact.

``tests/test_peers.py`` loads this module with ``pytest_plugins``.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = REPO / "example_project"
VENV_BIN = Path(sys.executable).parent

# The contract's method rule: these as they are, anything else is _OTHER.
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

# Routes of the example project, as the route label spells them.
ROOT = "/"
ITEM_LIST = "/api/v1/items/"
ITEM = "/api/v1/items/<int:pk>/"
ASYNC_ITEM = "/api/v1/async/items/<int:pk>/"
ORDER = "/api/v1/orders/<uuid:order_id>/"
CATEGORY = "/api/v1/categories/<slug:slug>/"
DOCS = "/api/v1/docs/<path:page>"
ARCHIVE = "/api/v1/archive/(?P<year>[0-9]{4})/"
BOOM = "/boom/"
ASYNC_BOOM = "/async/boom/"
STREAM = "/stream/"
UNMATCHED = "<unmatched>"

CHECKOUT_ERROR = "shop.views.CheckoutError"

HTTP_TIMEOUT = 15.0
START_DEADLINE = 30.0
STOP_TIMEOUT = 15.0


# --- small utilities -----------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], deadline: float, interval: float = 0.1) -> Any:
    """Call ``predicate`` until it returns something truthy or ``deadline`` seconds pass.

    Returns the last value (falsy on timeout); exceptions count as "not yet".
    """
    end = time.monotonic() + deadline
    value: Any = None
    while True:
        try:
            value = predicate()
        except Exception:
            value = None
        if value or time.monotonic() >= end:
            return value
        time.sleep(interval)


def executable(name: str) -> str:
    """A program from this virtualenv, else from PATH; fails the test when missing."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (`make venv peers` installs the real peers)")
    return found


# --- HTTP ----------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # hand 3xx back to the caller as they are


# No proxies from the environment: every request here goes to loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> Response:
    """One request with urllib; any HTTP status comes back as a ``Response``."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return Response(resp.status, _lower(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, _lower(err.headers.items()), err.read())


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


# --- Prometheus text -------------------------------------------------------------


def scrape(base_url: str) -> str:
    """``/metrics`` in the classic text format (what ``Accept: text/plain`` gets)."""
    resp = http(base_url + "/metrics", headers={"Accept": "text/plain"})
    assert resp.status == 200, (resp.status, resp.body[:500])
    assert resp.headers.get("content-type", "").startswith("text/plain"), resp.headers
    return resp.body.decode("utf-8")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` (``..._count``, ``..._total``...) with its labels."""
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def by_labels(text: str, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Samples called ``name`` summed by the given labels (the rest summed away)."""
    out: dict[tuple[str, ...], float] = collections.defaultdict(float)
    for sample_labels, value in samples(text, name):
        out[tuple(sample_labels.get(label, "") for label in labels)] += value
    return dict(out)


def total(text: str, name: str) -> float:
    return sum(value for _, value in samples(text, name))


# --- traffic -------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request of a plan and what the example project must answer."""

    method: str
    path: str
    route: str
    status: int
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def method_label(self) -> str:
        return self.method if self.method in STANDARD_METHODS else "_OTHER"


@dataclass
class Result:
    call: Call
    response: Response


@dataclass
class Run:
    """A server after its plan was sent: what went out and what came back."""

    server: Server
    results: list[Result]
    finished_at: float = 0.0  # time.time() once /metrics showed every request

    @property
    def url(self) -> str:
        return self.server.url

    def expected_series(self) -> dict[tuple[str, str, str], float]:
        """(method, route, status) -> number of requests sent."""
        counts: collections.Counter[tuple[str, str, str]] = collections.Counter(
            (r.call.method_label, r.call.route, str(r.call.status)) for r in self.results
        )
        return {key: float(n) for key, n in counts.items()}

    def expected_routes(self) -> dict[str, float]:
        counts = collections.Counter(r.call.route for r in self.results)
        return {key: float(n) for key, n in counts.items()}

    def expected_body_bytes(self) -> dict[tuple[str, str], float]:
        """(method, route) -> body bytes the client received (0 for HEAD, by the rule)."""
        sums: dict[tuple[str, str], float] = collections.defaultdict(float)
        for r in self.results:
            key = (r.call.method_label, r.call.route)
            sums[key] += 0 if r.call.method == "HEAD" else len(r.response.body)
        return dict(sums)

    def count(self, route: str) -> int:
        return sum(1 for r in self.results if r.call.route == route)

    def pids(self) -> set[int]:
        """Process ids reported by the views that put one in their JSON."""
        found = set()
        for r in self.results:
            if r.call.method != "HEAD" and r.response.headers.get("content-type", "").startswith(
                "application/json"
            ):
                pid = r.response.json().get("pid")
                if pid is not None:
                    found.add(pid)
        return found


def send_plan(base_url: str, plan: Sequence[Call], threads: int = 8) -> list[Result]:
    """Send every call of ``plan`` from ``threads`` concurrent clients."""

    def one(call: Call) -> Result:
        return Result(call, http(base_url + call.path, call.method, dict(call.headers)))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, plan))


def check_statuses(results: Sequence[Result]) -> None:
    wrong = [
        (r.call.method, r.call.path, r.call.status, r.response.status)
        for r in results
        if r.response.status != r.call.status
    ]
    assert not wrong, f"unexpected statuses (method, path, expected, got): {wrong[:20]}"


def settle(run: Run) -> None:
    """Wait until ``/metrics`` counts every request sent.

    A streaming response is recorded when the server closes it, which can be
    a moment after the client has read the last byte.
    """
    expected = float(len(run.results))
    wait_for(
        lambda: total(scrape(run.url), "http_server_request_duration_seconds_count") >= expected,
        deadline=15.0,
    )
    run.finished_at = time.time()


ORDER_ID = uuid.UUID("0b7d3c53-5f43-4a0e-9d1b-7b4f0e6c2a11")

# Twenty kinds of request, cycled: every route of the example project, a 404
# raised inside a view, a 404 from the resolver, an APPEND_SLASH redirect, a
# 500, a stream, HEAD, OPTIONS and methods outside the standard set (refused
# by the CSRF middleware after the URL resolved, so their route stays).
GUNICORN_KINDS: tuple[Call, ...] = (
    Call("GET", "/", ROOT, 200),
    Call("GET", "/api/v1/items/", ITEM_LIST, 200),
    Call("GET", "/api/v1/items/1/", ITEM, 200),
    Call("GET", "/api/v1/items/2/", ITEM, 200),
    Call("GET", "/api/v1/items/3/", ITEM, 200),
    Call("GET", "/api/v1/items/99/", ITEM, 404),
    Call("GET", "/api/v1/async/items/1/", ASYNC_ITEM, 200),
    Call("GET", f"/api/v1/orders/{ORDER_ID}/", ORDER, 200),
    Call("GET", "/api/v1/categories/tea-pots/", CATEGORY, 200),
    Call("GET", "/api/v1/docs/guide/install.html", DOCS, 200),
    Call("GET", "/api/v1/archive/2024/", ARCHIVE, 200),
    Call("GET", "/boom/", BOOM, 500),
    Call("GET", "/stream/", STREAM, 200),
    Call("GET", "/no/such/page/", UNMATCHED, 404),
    Call("GET", "/api/v1/items/1", UNMATCHED, 301),
    Call("HEAD", "/api/v1/items/2/", ITEM, 200),
    Call("OPTIONS", "/", ROOT, 200),
    Call("FOO", "/", ROOT, 403),
    Call("PURGE", "/api/v1/items/1/", ITEM, 403),
    Call("DELETE", "/api/v1/items/3/", ITEM, 403),
)
GUNICORN_REQUESTS = 300
GUNICORN_WORKERS = 2
# Lower than the requests each worker serves: workers restart mid-run.
GUNICORN_MAX_REQUESTS = 40

VALID_REQUEST_ID = "client-req_42.a:b"
HOSTILE_REQUEST_IDS = (
    "<script>alert(1)</script>",
    "a" * 200,
    "two words",
    "caf\u00e9",
    "../../etc/passwd;rm",
)

UVICORN_KINDS: tuple[Call, ...] = (
    Call("GET", "/", ROOT, 200),
    Call("GET", "/api/v1/items/1/", ITEM, 200),
    Call("GET", "/api/v1/async/items/2/", ASYNC_ITEM, 200),
    Call("GET", "/api/v1/async/items/9/", ASYNC_ITEM, 404),
    Call("GET", "/async/boom/", ASYNC_BOOM, 500),
    Call("GET", "/boom/", BOOM, 500),
    Call("GET", "/stream/", STREAM, 200),
    Call("GET", "/api/v1/archive/1999/", ARCHIVE, 200),
    Call("GET", "/nope/", UNMATCHED, 404),
    Call("HEAD", "/stream/", STREAM, 200),
    Call("FOO", "/api/v1/async/items/1/", ASYNC_ITEM, 403),
    Call("GET", "/", ROOT, 200, (("X-Request-ID", VALID_REQUEST_ID),)),
    *(Call("GET", "/", ROOT, 200, (("X-Request-ID", rid),)) for rid in HOSTILE_REQUEST_IDS),
)
UVICORN_ROUNDS = 8


def cycle_plan(kinds: Sequence[Call], n: int) -> list[Call]:
    return [kinds[i % len(kinds)] for i in range(n)]


# --- processes -----------------------------------------------------------------


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM a program started in its own session, wait ``timeout`` s, then SIGKILL its group."""
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Not reaped yet, so the group id is still ours.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@dataclass
class Server:
    """A program we started, its log file and the URL it serves."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    url: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            # Own session: if it ignores SIGTERM, its whole group (its own
            # children, nothing else) can be killed by the group id.
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, path: str, deadline: float = START_DEADLINE) -> None:
        """Poll ``path`` until it answers 200; fail with the log if it never does."""

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError("exited")
            return http(self.url + path, timeout=2.0).status == 200

        end = time.monotonic() + deadline
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if ready():
                    return
            except (OSError, AssertionError):
                pass
            time.sleep(0.1)
        pytest.fail(f"{self.name} not ready within {deadline} s:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM and wait ``timeout`` s; SIGKILL to the process group if it does not go."""
        stop_process(self.proc, timeout)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def example_env(db_path: Path) -> dict[str, str]:
    """Environment of the example project: its settings, a private database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DJANGO_SETTINGS_MODULE",  # pytest-django set tests.settings here
            "PROMETHEUS_MULTIPROC_DIR",
            "prometheus_multiproc_dir",
            "OBSERVABILITY_AUTH_TOKEN",
        }
        and not key.startswith("GUNICORN_")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example.settings",
        EXAMPLE_DB=str(db_path),
        PYTHONUNBUFFERED="1",
    )
    return env


def _gunicorn_extra_args() -> list[str]:
    # gunicorn 25+ opens a control socket at a fixed path in the home
    # directory; two servers (or two test runs) would fight over it.
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:  # pragma: no cover
        return []
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        return ["--no-control-socket"]
    return []


def run_promtool_check(text: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [executable("promtool"), "check", "metrics"],
        input=text.encode("utf-8"),
        capture_output=True,
        timeout=30,
        check=False,
    )


def prometheus_query(base_url: str, expr: str) -> list[dict[str, Any]]:
    """Result of an instant query; fails on anything but ``success``."""
    resp = http(base_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    payload = resp.json()
    assert resp.status == 200, (expr, payload)
    assert payload.get("status") == "success", (expr, payload)
    return payload["data"]["result"]


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="session")
def example_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database for the example project, private to this session."""
    db = tmp_path_factory.mktemp("example-db") / "db.sqlite3"
    proc = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=EXAMPLE_DIR,
        env=example_env(db),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    return db


@pytest.fixture(scope="session")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory, example_db: Path) -> Iterable[Server]:
    """gunicorn, two sync workers, Prometheus multiprocess mode, restarts by max_requests."""
    workdir = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = example_env(example_db)
    env.update(
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "multiproc"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS=str(GUNICORN_WORKERS),
        GUNICORN_WORKER_CLASS="sync",
        GUNICORN_THREADS="1",
        GUNICORN_MAX_REQUESTS=str(GUNICORN_MAX_REQUESTS),
    )
    server = Server(
        name="gunicorn",
        argv=[
            executable("gunicorn"),
            "-c",
            "gunicorn.conf.py",
            *_gunicorn_extra_args(),
            "example.wsgi:application",
        ],
        cwd=EXAMPLE_DIR,
        env=env,
        log_path=workdir / "gunicorn.log",
        url=f"http://127.0.0.1:{port}",
    )
    try:
        server.start()
        server.wait_ready("/metrics")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gunicorn_run(gunicorn_server: Server) -> Run:
    """The gunicorn deployment after its plan: 300 requests from 8 clients."""
    plan = cycle_plan(GUNICORN_KINDS, GUNICORN_REQUESTS)
    run = Run(gunicorn_server, send_plan(gunicorn_server.url, plan, threads=8))
    settle(run)
    return run


@pytest.fixture(scope="session")
def uvicorn_server(tmp_path_factory: pytest.TempPathFactory, example_db: Path) -> Iterable[Server]:
    """uvicorn serving the ASGI application, one process, no multiprocess directory."""
    workdir = tmp_path_factory.mktemp("uvicorn")
    port = free_port()
    server = Server(
        name="uvicorn",
        argv=[
            executable("uvicorn"),
            "example.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--lifespan",
            "off",
        ],
        cwd=EXAMPLE_DIR,
        env=example_env(example_db),
        log_path=workdir / "uvicorn.log",
        url=f"http://127.0.0.1:{port}",
    )
    try:
        server.start()
        server.wait_ready("/metrics")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def uvicorn_run(uvicorn_server: Server) -> Run:
    """The uvicorn server after its plan, sent from 6 concurrent clients."""
    plan = cycle_plan(UVICORN_KINDS, len(UVICORN_KINDS) * UVICORN_ROUNDS)
    run = Run(uvicorn_server, send_plan(uvicorn_server.url, plan, threads=6))
    settle(run)
    return run


def start_prometheus(
    workdir: Path, target: str, *, job: str = "example", extra_args: Sequence[str] = ()
) -> Server:
    """A real Prometheus on a free loopback port, scraping ``target`` every second.

    Started (not yet ready: its first scrape lands 5-6 s later); the caller
    stops it. ``extra_args`` such as ``--enable-feature=exemplar-storage``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    return run_prometheus(workdir, config, extra_args)


def run_prometheus(workdir: Path, config: Path, extra_args: Sequence[str] = ()) -> Server:
    """A real Prometheus on a free loopback port with ``config``, its data in ``workdir``.

    Started, not yet ready; the caller stops it.
    """
    port = free_port()
    server = Server(
        name="prometheus",
        argv=[
            executable("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *extra_args,
        ],
        cwd=workdir,
        env=dict(os.environ),
        log_path=workdir / "prometheus.log",
        url=f"http://127.0.0.1:{port}",
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def prometheus_server(
    tmp_path_factory: pytest.TempPathFactory, gunicorn_run: Run
) -> Iterable[Server]:
    """A real Prometheus scraping the gunicorn deployment every second."""
    target = urllib.parse.urlsplit(gunicorn_run.url).netloc
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"), target)
    try:
        server.wait_ready("/-/ready")
        yield server
    finally:
        server.stop()


# --- health tests: keep-alive connections, other callers, more servers ---------

# Loopback, but outside the example project's OBSERVABILITY_ALLOWED_IPS
# (127.0.0.1/32): a caller from here is not authorized to see details.
UNAUTHORIZED_SOURCE = "127.0.0.2"


class Connection:
    """One persistent HTTP/1.1 connection, optionally from another source address.

    A gunicorn gthread worker keeps a connection it accepted (keep-alive), so
    every request sent on it is answered by the same worker process.
    """

    def __init__(self, base_url: str, source: str | None = None, timeout: float = HTTP_TIMEOUT):
        parts = urllib.parse.urlsplit(base_url)
        self._conn = HTTPConnection(
            parts.hostname or "127.0.0.1",
            parts.port,
            timeout=timeout,
            source_address=(source, 0) if source else None,
        )

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Response:
        self._conn.request(method, path, headers=headers or {})
        resp = self._conn.getresponse()
        body = resp.read()
        return Response(resp.status, _lower(resp.getheaders()), body)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_from(
    source: str, url: str, headers: dict[str, str] | None = None, timeout: float = HTTP_TIMEOUT
) -> Response:
    """One GET sent from the local address ``source`` (e.g. ``UNAUTHORIZED_SOURCE``)."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    with Connection(url, source=source, timeout=timeout) as conn:
        return conn.request(path or "/", headers=headers)


def pin_workers(base_url: str, workers: int, attempts: int = 200) -> dict[int, Connection]:
    """One keep-alive connection per worker process, keyed by the worker's pid.

    Opens connections until ``GET /`` (whose JSON carries ``pid``) has come
    from ``workers`` different processes; the surplus is closed. Needs workers
    that keep connections alive (gunicorn gthread, uvicorn).
    """
    pinned: dict[int, Connection] = {}
    spare: list[Connection] = []
    try:
        for _ in range(attempts):
            conn = Connection(base_url)
            resp = conn.request("/")
            assert resp.status == 200, (resp.status, resp.body[:300])
            pid = resp.json()["pid"]
            # Surplus connections stay open until the end, so that every
            # attempt is a new connection (a new accept), not a reused one.
            if pid in pinned:
                spare.append(conn)
            else:
                pinned[pid] = conn
            if len(pinned) >= workers:
                return pinned
    finally:
        for conn in spare:
            conn.close()
    for conn in pinned.values():
        conn.close()
    pytest.fail(f"only {len(pinned)} of {workers} workers answered in {attempts} connections")


def serving_pids(server: Server) -> set[int]:
    """Process ids that serve requests: gunicorn's workers, else the process itself."""
    import psutil

    assert server.proc is not None
    children = psutil.Process(server.proc.pid).children()
    return {child.pid for child in children} or {server.proc.pid}


def make_gunicorn(
    name: str,
    workdir: Path,
    env: dict[str, str],
    *,
    workers: int = 1,
    worker_class: str = "sync",
    threads: int = 1,
    max_requests: int = 0,
) -> Server:
    """The example project under gunicorn (not started), multiprocess directory in ``workdir``."""
    port = free_port()
    env = dict(env)
    env.update(
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "multiproc"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS=str(workers),
        GUNICORN_WORKER_CLASS=worker_class,
        GUNICORN_THREADS=str(threads),
        GUNICORN_MAX_REQUESTS=str(max_requests),
    )
    return Server(
        name=name,
        argv=[
            executable("gunicorn"),
            "-c",
            "gunicorn.conf.py",
            *_gunicorn_extra_args(),
            "example.wsgi:application",
        ],
        cwd=EXAMPLE_DIR,
        env=env,
        log_path=workdir / f"{name}.log",
        url=f"http://127.0.0.1:{port}",
    )


def make_uvicorn(name: str, workdir: Path, env: dict[str, str]) -> Server:
    """The example project's ASGI application under uvicorn, one process (not started)."""
    port = free_port()
    return Server(
        name=name,
        argv=[
            executable("uvicorn"),
            "example.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--lifespan",
            "off",
        ],
        cwd=EXAMPLE_DIR,
        env=dict(env),
        log_path=workdir / f"{name}.log",
        url=f"http://127.0.0.1:{port}",
    )


def manage(
    env: dict[str, str], *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` of the example project, output captured."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- PostgreSQL ------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """``/usr/lib/postgresql/<newest>/bin`` when its server programs are installed."""

    def version(pg_ctl: str) -> int:
        name = Path(pg_ctl).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@dataclass
class Postgres:
    """A private PostgreSQL cluster in a temporary directory, on a free port.

    initdb refuses to run as root, so as root every server program runs as
    the ``postgres`` user (the directory is handed to it).
    """

    bin_dir: Path
    root: Path
    port: int
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, program: str, *args: str, timeout: float = 60.0) -> str:
        argv = [str(self.bin_dir / program), *args]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        assert proc.returncode == 0, f"{program} {args}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"),
            "-o", options, "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        argv = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "status"]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0

    def kill(self) -> None:
        """Stop it whatever state it is in: immediate shutdown, else SIGKILL its postmaster."""
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self, name: str) -> None:
        """Create ``name`` unless it exists (several modules may share the server)."""
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')

    def backends(self, dbname: str) -> int:
        """Client connections to ``dbname`` right now (this query's own excluded)."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchone()
        return int(row[0])

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return (self.root / "postgres.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def postgres_server() -> Iterable[Postgres]:
    """A private PostgreSQL on 127.0.0.1 for this session; tests may stop and start it.

    Skipped when the PostgreSQL server programs are not installed (``make
    peers`` installs them).
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("PostgreSQL server programs (initdb, pg_ctl) are not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    run_as = None
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL")
        run_as = "postgres"
    # Not under pytest's temporary directory: that one is private to root.
    root = Path(tempfile.mkdtemp(prefix="observability-pg-"))
    if run_as:
        shutil.chown(root, user=run_as, group=run_as)
    server = Postgres(bin_dir=bin_dir, root=root, port=free_port(), run_as=run_as)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)
