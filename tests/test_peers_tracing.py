"""Tracing end to end: the example project under real servers, a real OTLP collector.

The collector is rotel (``tests/peers_tracing.py`` runs it and reads the
spans it prints); the servers are gunicorn and uvicorn; exemplars are checked
in a real Prometheus.

* gunicorn, two sync workers, OTLP/HTTP and OTLP/gRPC, with and without
  ``--preload``: spans from both worker processes arrive (told apart by
  their ``service.instance.id``, matched to the ``pid`` each response
  reports through ``http.request.id`` = ``X-Request-ID``), with the HTTP
  semantic-convention attributes, their DB spans as children, an incoming
  ``traceparent`` continued, a 500 marked as an error, no span from a
  readiness probe's database checks; first by the batch
  processor's schedule while the server runs, then by the flush at exit.
  With ``--preload`` the master exports a span of its own before it forks
  (exporter made, connection or gRPC channel open): the hard case.
* The collector paused, then killed, mid-run: requests still answer 200 on
  time, the worker's memory stays bounded; restarted on the same port,
  spans flow again.
* Prometheus with exemplar storage scraping uvicorn (one process): the
  exemplars' trace and span ids are those of server spans the collector got.

Each test reads the shared collector's output from its own offset, and picks
its spans out by the request ids the server answered with.
"""

from __future__ import annotations

import collections
import secrets
import statistics
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
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
    start_prometheus,
)
from tests.peers_tracing import (  # noqa: E402
    Collector,
    Span,
    by_request_id,
    children_of,
    otel_free_env,
)

pytest_plugins = ["tests.peers", "tests.peers_tracing"]

pytestmark = pytest.mark.peers

USER_AGENT = "peers-tracing/1.0 (django-observability tests)"
STATS = "/api/v1/stats/"
ASYNC_STATS = "/async/stats/"
STATS_ROUTES = (STATS, ASYNC_STATS)  # views that run two COUNT queries
ITEM_ROUTE = "/api/v1/items/<int:pk>/"
BOOM = "/boom/"
CHECKOUT_ERROR = "shop.views.CheckoutError"
SPAN_DEADLINE = 20.0  # the batch processor exports every 5 s by default
SERVER = "SPAN_KIND_SERVER"
CLIENT = "SPAN_KIND_CLIENT"
HTTP_FAILED = float("inf")  # latency recorded for a request that got no answer


# --- traffic ---------------------------------------------------------------------


@dataclass
class Sent:
    """One request and what came back."""

    path: str
    status: int
    request_id: str
    latency: float
    pid: int | None = None


def get(base_url: str, path: str, headers: dict[str, str] | None = None) -> Sent:
    start = time.perf_counter()
    resp = http(base_url + path, headers={"User-Agent": USER_AGENT, **(headers or {})})
    latency = time.perf_counter() - start
    pid = None
    if resp.headers.get("content-type", "").startswith("application/json"):
        pid = resp.json().get("pid")
    return Sent(path, resp.status, resp.headers.get("x-request-id", ""), latency, pid)


def send(base_url: str, paths: Sequence[str], threads: int = 8) -> list[Sent]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda p: get(base_url, p), paths))


def from_every_worker(base_url: str, workers: int, rounds: int = 6) -> list[Sent]:
    """``/api/v1/stats/`` from 8 concurrent clients until ``workers`` pids answered."""
    sent: list[Sent] = []
    for _ in range(rounds):
        sent += send(base_url, [STATS] * 24)
        if len({s.pid for s in sent}) >= workers:
            return sent
    pytest.fail(f"only pids {sorted({s.pid for s in sent})} answered {len(sent)} requests")


def load(base_url: str, seconds: float, threads: int = 3) -> list[Sent]:
    """``/api/v1/stats/`` from ``threads`` clients back to back for ``seconds``."""
    end = time.monotonic() + seconds
    out: list[Sent] = []
    lock = threading.Lock()

    def client() -> None:
        while time.monotonic() < end:
            try:
                one = get(base_url, STATS)
            except OSError as exc:  # a refused or timed-out request is a failure too
                one = Sent(STATS, 0, f"error: {exc!r}", HTTP_FAILED)
            with lock:
                out.append(one)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=seconds + 30)
    return out


def traceparent() -> tuple[str, str, str]:
    """A sampled W3C traceparent, with its trace id and parent span id."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


# --- what the collector must have ------------------------------------------------


def has_all(request_ids: Iterable[str], with_children: int = 0) -> Callable[[list[Span]], bool]:
    """Predicate: a server span for every id, and ``with_children`` DB spans under each stats one.

    Spans of one request can come in different batches (a query's span ends
    before its request's span): waiting for the children too means the
    assertions never see half a trace.
    """
    wanted = set(request_ids)

    def predicate(spans: list[Span]) -> bool:
        servers = by_request_id(spans)
        if not wanted <= servers.keys():
            return False
        children: collections.Counter[str] = collections.Counter(
            s.parent_id for s in spans if s.kind == CLIENT
        )
        return all(
            children[servers[r][0].span_id] >= with_children
            for r in wanted
            if servers[r][0].attributes.get("http.route") in STATS_ROUTES
        )

    return predicate


def one_server_span(spans: list[Span], sent: Sent) -> Span:
    found = by_request_id(spans).get(sent.request_id, [])
    assert len(found) == 1, (
        f"{len(found)} server spans for {sent.path} (request id {sent.request_id!r})"
    )
    return found[0]


def missing(spans: list[Span], sent: Iterable[Sent]) -> list[str]:
    servers = by_request_id(spans)
    return [s.request_id for s in sent if s.request_id not in servers]


def check_resource(span: Span) -> None:
    resource = span.resource
    assert resource.get("service.name") == "example-shop", resource
    assert resource.get("service.version") == "1.0.0", resource
    assert resource.get("deployment.environment.name") == "demo", resource
    assert resource.get("telemetry.sdk.language") == "python", resource
    assert span.service_instance, resource
    assert span.scope.split(" ")[0] == "django_observability", span.scope


def check_server_span(
    span: Span, sent: Sent, route: str, port: int, protocol_version: str | None = "1.1"
) -> None:
    """The HTTP semantic-convention attributes of one server span."""
    attrs = span.attributes
    if protocol_version is not None:
        assert attrs.get("network.protocol.version") == protocol_version, attrs
    assert span.kind == SERVER
    assert span.name == f"GET {route}"
    assert attrs.get("http.request.method") == "GET"
    assert attrs.get("http.route") == route
    assert attrs.get("url.path") == sent.path
    assert attrs.get("url.scheme") == "http"
    assert attrs.get("http.response.status_code") == sent.status
    assert attrs.get("server.address") == "127.0.0.1"
    assert attrs.get("server.port") == port
    assert attrs.get("client.address") == "127.0.0.1"
    assert attrs.get("user_agent.original") == USER_AGENT
    assert attrs.get("http.request.id") == sent.request_id
    if sent.status < 500:
        assert span.status_code == "STATUS_CODE_UNSET", span
        assert "error.type" not in attrs, attrs
    check_resource(span)


def check_db_children(spans: list[Span], server: Span, db_name: str) -> list[Span]:
    """The two COUNT queries of the stats views, children of the request's span."""
    children = children_of(spans, server)
    assert len(children) == 2, (server, children)
    queries = []
    for child in children:
        attrs = child.attributes
        assert child.kind == CLIENT, child
        assert child.trace_id == server.trace_id
        assert child.parent_id == server.span_id
        assert child.name == f"SELECT {db_name}", child.name
        assert attrs.get("db.system.name") == "sqlite", attrs
        assert attrs.get("db.namespace") == db_name, attrs
        assert attrs.get("db.operation.name") == "SELECT", attrs
        assert child.status_code == "STATUS_CODE_UNSET", child
        assert child.service_instance == server.service_instance  # same process
        assert server.start_ns <= child.start_ns <= child.end_ns <= server.end_ns, (server, child)
        queries.append(attrs["db.query.text"])
    assert any('FROM "auth_user"' in q and "COUNT(*)" in q for q in queries), queries
    assert any('FROM "auth_group"' in q and "COUNT(*)" in q for q in queries), queries
    return children


def tracing_env(
    db: Path, collector: Collector, protocol: str, *, via_setting: bool = False
) -> dict[str, str]:
    """The example project exporting to ``collector`` over ``protocol``.

    ``via_setting`` turns tracing on with the example project's setting
    (``OBSERVABILITY_TRACING_EXPORTER``) instead of ``OTEL_TRACES_EXPORTER``.
    """
    env = otel_free_env(example_env(db))
    if via_setting:
        env["EXAMPLE_TRACING_EXPORTER"] = "otlp"
    else:
        env["OTEL_TRACES_EXPORTER"] = "otlp"
    grpc = protocol == "grpc"
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = (
        collector.grpc_endpoint if grpc else collector.http_endpoint
    )
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    return env


def port_of(server: Server) -> int:
    port = urllib.parse.urlsplit(server.url).port
    assert port is not None
    return port


# --- gunicorn: two workers, fork and --preload, HTTP and gRPC --------------------

MASTER_SPAN = "gunicorn master ready"


def master_exports_config(workdir: Path, span_name: str) -> Path:
    """A gunicorn config: the example project's, plus a span the master exports before forking.

    ``when_ready`` runs in the master after the application was loaded
    (``--preload``) and before the first worker is forked.
    """
    config = workdir / "gunicorn_master_exports.py"
    config.write_text(
        "import os\n"
        f"exec(compile(open({str(EXAMPLE_DIR / 'gunicorn.conf.py')!r}).read(), 'gunicorn.conf.py',"
        " 'exec'))\n"
        "\n"
        "def when_ready(server):\n"
        "    from opentelemetry import trace\n"
        "    tracer = trace.get_tracer('gunicorn.master')\n"
        f"    with tracer.start_as_current_span({span_name!r}) as span:\n"
        "        span.set_attribute('process.pid', os.getpid())\n"
        "    flushed = trace.get_tracer_provider().force_flush(5000)\n"
        "    server.log.info('master span exported: %s', flushed)\n"
    )
    return config


@pytest.mark.parametrize(
    ("protocol", "preload"),
    [
        ("http/protobuf", False),
        ("http/protobuf", True),
        ("grpc", False),
        ("grpc", True),
    ],
    ids=["http", "http-preload", "grpc", "grpc-preload"],
)
def test_spans_from_every_gunicorn_worker(
    protocol: str,
    preload: bool,
    collector: Collector,
    example_db: Path,
    tmp_path: Path,
) -> None:
    env = tracing_env(example_db, collector, protocol, via_setting=protocol == "grpc")
    if preload:
        env["GUNICORN_PRELOAD"] = "1"
    server = make_gunicorn("gunicorn", tmp_path, env, workers=2)
    if preload:
        # The hard case for fork safety: the master has exported (its exporter
        # made, its gRPC channel connected) before it forks the workers.
        server.argv[server.argv.index("gunicorn.conf.py")] = str(
            master_exports_config(tmp_path, MASTER_SPAN)
        )
    since = collector.mark()
    try:
        server.start()
        server.wait_ready("/metrics")
        port = port_of(server)
        if preload:
            spans = collector.wait_spans(
                lambda spans: any(s.name == MASTER_SPAN for s in spans), since, deadline=5.0
            )
            master = [s for s in spans if s.name == MASTER_SPAN]
            assert len(master) == 1, f"the master did not export\n{server.log_tail()}"
            assert server.proc is not None
            assert master[0].attributes.get("process.pid") == server.proc.pid
        since = collector.mark()

        # 1. While the server runs: the batch processor's schedule exports them.
        # A readiness probe first: its database and migrations checks query the
        # database, and must not start traces of their own.
        probe = get(server.url, "/health/ready/")
        assert probe.status == 200, server.log_tail()
        stats = from_every_worker(server.url, workers=2)
        header, parent_trace, parent_span = traceparent()
        continued = get(server.url, "/api/v1/items/1/", {"traceparent": header})
        boom = get(server.url, BOOM)
        sent = [*stats, continued, boom]
        assert [s.status for s in stats] == [200] * len(stats)
        assert continued.status == 200
        assert boom.status == 500
        assert all(s.request_id for s in sent)

        spans = collector.wait_spans(
            has_all([s.request_id for s in sent], with_children=2), since, SPAN_DEADLINE
        )
        assert not missing(spans, sent), (
            f"no server span within {SPAN_DEADLINE} s for {len(missing(spans, sent))} of "
            f"{len(sent)} requests; pids that answered: {sorted({s.pid for s in stats})}\n"
            f"{server.log_tail()}"
        )

        # Both workers exported, each as its own service instance.
        instances_by_pid: dict[int, set[str]] = {}
        for s in stats:
            span = one_server_span(spans, s)
            check_server_span(span, s, STATS, port)
            assert span.parent_id == "", span  # no incoming traceparent: a root span
            check_db_children(spans, span, example_db.name)
            assert s.pid is not None
            instances_by_pid.setdefault(s.pid, set()).add(span.service_instance)
        assert len(instances_by_pid) == 2, instances_by_pid
        assert all(len(ids) == 1 for ids in instances_by_pid.values()), instances_by_pid
        instance_ids = set().union(*instances_by_pid.values())
        assert len(instance_ids) == 2, f"both workers report one instance id: {instances_by_pid}"
        if preload:
            assert master[0].service_instance not in instance_ids, "a worker has the master's id"
        print(f"service.instance.id by worker pid: {instances_by_pid}")

        # The incoming traceparent is continued.
        span = one_server_span(spans, continued)
        check_server_span(span, continued, ITEM_ROUTE, port)
        assert span.trace_id == parent_trace
        assert span.parent_id == parent_span
        assert span.span_id != parent_span

        # A 500: error status and type.
        span = one_server_span(spans, boom)
        assert span.name == f"GET {BOOM}"
        assert span.attributes.get("http.response.status_code") == 500
        assert span.attributes.get("error.type") == CHECKOUT_ERROR, span.attributes
        assert span.status_code == "STATUS_CODE_ERROR", span

        # The app's own endpoints (the readiness polls of /metrics) make no spans.
        assert not [s for s in spans if s.attributes.get("url.path") == "/metrics"]
        # Nothing but our requests and their queries came from this server.
        ours = {s.request_id for s in sent}
        servers = [s for s in spans if s.kind == SERVER and s.attributes.get("server.port") == port]
        assert {str(s.attributes.get("http.request.id")) for s in servers} == ours
        # Every query span belongs to one of those requests: none from the probe
        # (each worker exports in order, so its probe's spans would be here by now).
        server_ids = {s.span_id for s in servers}
        orphans = [s for s in spans if s.kind == CLIENT and s.parent_id not in server_ids]
        assert not orphans, [(s.name, s.attributes.get("db.query.text")) for s in orphans]

        # 2. Spans still queued when the server stops are flushed at exit (the
        # workers stop within a second of the last request, mostly before
        # their next scheduled export).
        since = collector.mark()
        last = from_every_worker(server.url, workers=2)
        stop_started = time.monotonic()
        server.stop()
        assert server.proc is not None
        assert server.proc.returncode == 0, server.log_tail()
        stop_seconds = time.monotonic() - stop_started
        spans = collector.wait_spans(
            has_all([s.request_id for s in last], with_children=2), since, deadline=10.0
        )
        lost = missing(spans, last)
        assert not lost, (
            f"{len(lost)} of {len(last)} spans lost when gunicorn stopped "
            f"(in {stop_seconds:.1f} s)\n{server.log_tail()}"
        )
        for s in last:
            span = one_server_span(spans, s)
            check_db_children(spans, span, example_db.name)
            assert span.service_instance in instance_ids
        print(f"{len(last)} requests flushed at exit; gunicorn stopped in {stop_seconds:.2f} s")
        assert stop_seconds < 8.0, "the flush at exit must not hold the shutdown up"
    finally:
        server.stop()


# --- the collector goes away and comes back --------------------------------------


def worker_rss(server: Server) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in serving_pids(server))


def check_latencies(sent: list[Sent], phase: str) -> dict[str, float]:
    assert sent, f"no requests sent while the collector was {phase}"
    bad = [(s.status, s.request_id) for s in sent if s.status != 200]
    assert not bad, f"while the collector was {phase}: {len(bad)} failed: {bad[:10]}"
    latencies = sorted(s.latency for s in sent)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    figures = {
        "requests": len(sent),
        "p50": statistics.median(latencies),
        "p95": p95,
        "max": latencies[-1],
    }
    assert p95 < 0.5, f"collector {phase}: {figures}"
    assert latencies[-1] < 2.0, f"collector {phase}: {figures}"
    return figures


def test_collector_down_mid_run(
    private_collector: Collector, example_db: Path, tmp_path: Path
) -> None:
    collector = private_collector
    env = tracing_env(example_db, collector, "http/protobuf")
    # Export every second (instead of 5 s), so that exports are attempted (and
    # fail) many times while the collector is away, and recovery shows soon.
    env["OTEL_BSP_SCHEDULE_DELAY"] = "1000"
    server = make_gunicorn("gunicorn-1", tmp_path, env, workers=1)
    try:
        server.start()
        server.wait_ready("/metrics")
        workers = serving_pids(server)

        # Up: spans flow. Some load first, so that the memory baseline is
        # taken in a steady state.
        assert all(s.status == 200 for s in load(server.url, seconds=2.0))
        since = collector.mark()
        warm = send(server.url, [STATS] * 30, threads=3)
        assert all(s.status == 200 for s in warm)
        spans = collector.wait_spans(has_all(s.request_id for s in warm), since, SPAN_DEADLINE)
        assert not missing(spans, warm), collector.log_tail()
        rss_before = worker_rss(server)

        # Hung: the port accepts connections but nothing answers (SIGSTOP);
        # each export waits for its 2 s timeout.
        collector.pause()
        hung = load(server.url, seconds=3.5)
        # Gone: connections refused (SIGKILL, as a crash).
        collector.kill()
        dead = load(server.url, seconds=3.5)

        figures = {"hung": check_latencies(hung, "hung"), "down": check_latencies(dead, "down")}
        rss_after = worker_rss(server)
        growth = (rss_after - rss_before) / 2**20
        assert growth < 50, f"worker memory grew by {growth:.1f} MB ({figures})"
        assert serving_pids(server) == workers, "the worker was replaced"
        print(f"collector away: {figures}; worker rss growth {growth:.1f} MB")
        # The outage was real for the exporter: its exports failed (the SDK logs each one).
        # (The whole log: thousands of JSON access lines come after that line.)
        assert "Failed to export" in server.log_path.read_text(errors="replace"), server.log_tail()

        # Back on the same port: new spans arrive.
        collector.start()
        since = collector.mark()
        after = send(server.url, [STATS] * 10, threads=2)
        assert all(s.status == 200 for s in after)
        spans = collector.wait_spans(
            has_all([s.request_id for s in after], with_children=2), since, SPAN_DEADLINE
        )
        assert not missing(spans, after), (
            f"no spans {SPAN_DEADLINE} s after the collector came back ({figures})\n"
            f"{server.log_tail()}"
        )
        for s in after:
            check_db_children(spans, one_server_span(spans, s), example_db.name)
    finally:
        server.stop()


# --- exemplars in Prometheus point at spans the collector received ----------------


def query_exemplars(prometheus: Server, start: float, end: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode(
        {"query": "http_server_request_duration_seconds_bucket", "start": start, "end": end}
    )
    resp = http(prometheus.url + "/api/v1/query_exemplars?" + query, timeout=5.0)
    payload = resp.json()
    assert resp.status == 200, payload
    assert payload.get("status") == "success", payload
    return payload["data"] or []


def exemplars_by_route(data: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for series in data:
        route = series["seriesLabels"].get("route", "")
        out.setdefault(route, []).extend(e["labels"] for e in series["exemplars"])
    return out


@pytest.mark.parametrize("server_kind", ["uvicorn", "gunicorn"])
def test_exemplars_in_prometheus_are_traces_the_collector_got(
    server_kind: str, collector: Collector, example_db: Path, tmp_path: Path
) -> None:
    """uvicorn: one process; gunicorn: two workers in multiprocess mode, whose
    exemplars /metrics merges from each worker's file."""
    env = tracing_env(example_db, collector, "http/protobuf", via_setting=True)
    if server_kind == "uvicorn":
        app = make_uvicorn("uvicorn", tmp_path, env)
    else:
        app = make_gunicorn("gunicorn", tmp_path, env, workers=2)
    prometheus: Server | None = None
    try:
        app.start()
        app.wait_ready("/metrics")
        # Started now: its first scrape lands 5-6 s later, while we send traffic.
        prometheus = start_prometheus(
            tmp_path / "prometheus",
            f"127.0.0.1:{port_of(app)}",
            extra_args=["--enable-feature=exemplar-storage"],  # then it asks for OpenMetrics
        )
        prometheus.wait_ready("/-/ready")
        started = time.time()
        since = collector.mark()

        sent = send(app.url, [STATS, ASYNC_STATS, "/api/v1/items/2/"] * 10, threads=4)
        assert [s.status for s in sent] == [200] * len(sent)
        routes = {STATS, ASYNC_STATS, ITEM_ROUTE}

        deadline = time.monotonic() + 30.0
        found: dict[str, list[dict[str, str]]] = {}
        while time.monotonic() < deadline:
            found = exemplars_by_route(query_exemplars(prometheus, started - 60, time.time() + 60))
            if routes <= found.keys():
                break
            time.sleep(0.5)
        assert routes <= found.keys(), (
            f"exemplars for {sorted(found)} only, after 30 s\n{prometheus.log_tail()}"
        )

        spans = collector.wait_spans(
            has_all([s.request_id for s in sent], with_children=2), since, SPAN_DEADLINE
        )
        assert not missing(spans, sent), app.log_tail()
        servers = {s.span_id: s for s in spans if s.kind == SERVER}
        trace_ids = {s.trace_id for s in spans}
        checked = 0
        for route in routes:
            for labels in found[route]:
                assert set(labels) == {"trace_id", "span_id"}, labels
                assert labels["trace_id"] in trace_ids, (route, labels)
                span = servers.get(labels["span_id"])
                assert span is not None, f"exemplar {labels} is no server span the collector got"
                assert span.trace_id == labels["trace_id"]
                assert span.attributes.get("http.route") == route
                checked += 1
        assert checked >= len(routes)

        if server_kind == "gunicorn":
            pids = {s.pid for s in sent if s.pid}
            assert len(pids) == 2, "one worker served everything"
            # Each worker wrote its exemplars; /metrics merged what it found.
            written = {p.name for p in (tmp_path / "multiproc").glob("exemplars_*.json")}
            assert {f"exemplars_{pid}.json" for pid in pids} <= written, written
            return
        # Under ASGI too, each query's span is a child of its request's span,
        # for the sync view (run in a thread) and the async one.
        for s in sent:
            span = one_server_span(spans, s)
            route = ITEM_ROUTE if s.path.startswith("/api/v1/items/") else s.path
            # Under ASGI the version comes from the scope's http_version.
            check_server_span(span, s, route, port_of(app))
            if route in STATS_ROUTES:
                check_db_children(spans, span, example_db.name)
            else:
                assert not children_of(spans, span)
    finally:
        if prometheus is not None:
            prometheus.stop()
        app.stop()


# --- the reader of the collector's output ------------------------------------------

# As rotel prints it (its trailing spaces written \x20).
ROTEL_SAMPLE = """\
\x1b[2m2026-11-22T20:01:25.241986Z\x1b[0m \x1b[32m INFO\x1b[0m Starting Rotel.
ResourceSpans #0
Resource SchemaURL:\x20
Resource attributes:
     -> service.name: Str(probe svc)
     -> x.int: Int(3)
ScopeSpans #0
ScopeSpans SchemaURL: https://opentelemetry.io/schemas/1.33.0
InstrumentationScope probe 1.0
Span #0
    Trace ID       : 92e69e55af4ef410ab05754a54caf68f
    Parent ID      :\x20
    ID             : 74c1f651e67b768a
    Name           : GET /a/<int:pk>/
    Kind           : SPAN_KIND_SERVER
Start time: 1795377693698555408
End time: 1795377693699205078
    Status code    : STATUS_CODE_ERROR
    Status message : msg here
Attributes:
     -> f: Double(1.5)
     -> b: Bool(true)
     -> s: Str(two
lines: (yes))
     -> arr: Slice(Str(a), Str(b))
Events:
SpanEvent #0
     -> Name: exception
     -> Timestamp: 1795377693699183398
     -> Attributes::
          -> exception.message: Str(bad
thing)
ScopeSpans #1
ScopeSpans SchemaURL:\x20
InstrumentationScope other\x20
Span #0
    Trace ID       : 92e69e55af4ef410ab05754a54caf68f
    Parent ID      : 74c1f651e67b768a
    ID             : b4d6ec6ed1c0c1f7
    Name           : SELECT
    Kind           : SPAN_KIND_CLIENT
Start time: 1795377693698816517
End time: 1795377693698823350
    Status code    : STATUS_CODE_UNSET
    Status message :\x20
Attributes:
     -> db.query.text: Str(SELECT COUNT(*) AS "__count" FROM "auth_user")
"""


def test_collector_output_parser() -> None:
    from tests.peers_tracing import parse_spans

    root, child = parse_spans(ROTEL_SAMPLE)
    assert (root.trace_id, root.span_id, root.parent_id) == (
        "92e69e55af4ef410ab05754a54caf68f",
        "74c1f651e67b768a",
        "",
    )
    assert (root.name, root.kind, root.scope) == ("GET /a/<int:pk>/", SERVER, "probe 1.0")
    assert (root.status_code, root.status_message) == ("STATUS_CODE_ERROR", "msg here")
    assert root.start_ns < root.end_ns
    assert root.attributes == {
        "f": 1.5,
        "b": True,
        "s": "two\nlines: (yes)",
        "arr": "Slice(Str(a), Str(b))",
    }
    assert root.events == ["exception"]
    assert root.resource == {"service.name": "probe svc", "x.int": 3}
    assert child.parent_id == root.span_id
    assert child.trace_id == root.trace_id
    assert (child.kind, child.scope, child.resource) == (CLIENT, "other", root.resource)
    assert child.attributes == {"db.query.text": 'SELECT COUNT(*) AS "__count" FROM "auth_user"'}
