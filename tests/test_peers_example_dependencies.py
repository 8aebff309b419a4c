"""The example's dependencies end to end: its cache view and its upstream call, gunicorn, rotel.

The example project under gunicorn (two workers), exporting spans over
OTLP/HTTP to a real collector (rotel), with ``EXAMPLE_UPSTREAM_URL`` pointing
at a loopback HTTP server of this test that records the headers it receives:

* ``GET /api/v1/upstream/`` with a ``traceparent`` and a request id: the
  upstream receives a ``traceparent`` that continues the request's trace, its
  parent being the example's client span, itself a child of the request's
  server span; the request id arrives too (127.0.0.1 is an allowed host in the
  example's settings), and not at all from a server whose settings allow
  another host only; gunicorn's ``/metrics`` counts each call in
  ``http_client_request_duration_seconds``;
* ``GET /api/v1/cached/``: each request's cache read is one operation in
  ``cache_operations_total`` (hit or miss), its span a child of the request's,
  and its access line carries the request's hits and misses.

Everything on 127.0.0.1, free ports, temporary folders; stopped by process id.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.peers", "tests.peers_tracing")

from tests.peers import Server, by_labels, example_env, http, make_gunicorn, manage, scrape  # noqa: E402
from tests.peers_tracing import Collector, Span  # noqa: E402

pytest_plugins = ["tests.peers", "tests.peers_tracing"]

pytestmark = pytest.mark.peers

DEADLINE = 20.0
UPSTREAM_CALLS = 3
CACHED_CALLS = 6


class Recorder(ThreadingHTTPServer):
    """A loopback upstream answering 200 with a small JSON body; keeps each request's headers."""

    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _RecorderHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/upstream-api/"


class _RecorderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.received.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def recording_upstream() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def access_lines(server: Server) -> list[dict[str, Any]]:
    lines = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("log", {}).get("logger") == "django_observability.access":
                lines.append(record)
    return lines


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("dependencies")
    since = collector.mark()
    env = example_env(workdir / "db.sqlite3")
    env.update(
        EXAMPLE_CELERY_DIR=str(workdir / "celery"),
        EXAMPLE_TRACING_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    proc = manage(env, "migrate", "--noinput", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with recording_upstream() as upstream, contextlib.ExitStack() as stack:
        env["EXAMPLE_UPSTREAM_URL"] = upstream.url
        web: Server = make_gunicorn("web", workdir, env, workers=2)
        # The same project whose settings allow another host only.
        other_env = dict(env, EXAMPLE_REQUEST_ID_HOSTS="billing.internal")
        (workdir / "other").mkdir()  # a multiprocess directory of its own
        other: Server = make_gunicorn("web-other", workdir / "other", other_env, workers=1)
        for server in (web, other):
            server.start()
            stack.callback(server.stop)
        web.wait_ready("/health/live/")
        other.wait_ready("/health/live/")

        sent = []
        for i in range(UPSTREAM_CALLS):
            trace_id, parent = traceparent()
            request_id = f"upstream-{i}-{secrets.token_hex(4)}"
            resp = http(
                f"{web.url}/api/v1/upstream/",
                headers={"traceparent": parent, "X-Request-ID": request_id},
            )
            assert resp.status == 200, (resp.status, resp.body[:500])
            assert resp.json() == {"upstream_status": 200, "upstream": {"ok": True}}
            sent.append((trace_id, request_id, dict(upstream.received[-1])))
        trace_id, parent = traceparent()
        resp = http(
            f"{other.url}/api/v1/upstream/",
            headers={"traceparent": parent, "X-Request-ID": "not-for-strangers"},
        )
        assert resp.status == 200, (resp.status, resp.body[:500])
        other_received = dict(upstream.received[-1])

        cached = []
        for i in range(CACHED_CALLS):
            cache_trace, cache_parent = traceparent()
            resp = http(f"{web.url}/api/v1/cached/", headers={"traceparent": cache_parent})
            assert resp.status == 200, (resp.status, resp.body[:500])
            cached.append((cache_trace, resp.json()["cached"]))
        metrics = scrape(web.url)

        wanted = {t for t, _r, _h in sent} | {t for t, _c in cached}

        def arrived(spans: list[Span]) -> bool:
            clients = [s for s in spans if s.trace_id in wanted and s.kind == "SPAN_KIND_CLIENT"]
            return len({s.trace_id for s in clients}) >= len(wanted)

        spans = collector.wait_spans(arrived, since=since, deadline=DEADLINE)
    return {
        "sent": sent,
        "other_received": other_received,
        "other_trace": trace_id,
        "cached": cached,
        "metrics": metrics,
        "spans": spans,
        "access": access_lines(web),
    }


def test_the_upstream_call_continues_the_requests_trace(run: dict) -> None:
    spans: list[Span] = run["spans"]
    for trace_id, _request_id, received in run["sent"]:
        trace = [s for s in spans if s.trace_id == trace_id]
        (server,) = [s for s in trace if s.kind == "SPAN_KIND_SERVER"]
        (client,) = [s for s in trace if s.kind == "SPAN_KIND_CLIENT" and s.name == "GET"]
        assert client.parent_id == server.span_id
        assert client.attributes["http.request.method"] == "GET"
        assert client.attributes["server.address"] == "127.0.0.1"
        assert client.attributes["http.response.status_code"] == 200
        assert client.attributes["url.full"].endswith("/upstream-api/")
        # What the upstream received names the client span as its parent.
        _version, sent_trace, sent_parent, _flags = received["traceparent"].split("-")
        assert sent_trace == trace_id
        assert sent_parent == client.span_id


def test_the_request_id_goes_only_to_allowed_hosts(run: dict) -> None:
    for _trace_id, request_id, received in run["sent"]:
        assert received["x-request-id"] == request_id
    other = run["other_received"]
    assert "x-request-id" not in other
    assert other["traceparent"].split("-")[1] == run["other_trace"]  # the trace still goes


def test_the_metric_counts_every_upstream_call(run: dict) -> None:
    counts = by_labels(
        run["metrics"], "http_client_request_duration_seconds_count", "method", "server_address",
        "status",
    )  # fmt: skip
    assert counts == {("GET", "127.0.0.1", "200"): UPSTREAM_CALLS}


def test_cache_reads_are_counted_traced_and_on_the_access_line(run: dict) -> None:
    counts = by_labels(run["metrics"], "cache_operations_total", "alias", "operation", "result")
    hits = sum(1 for _t, hit in run["cached"] if hit)
    misses = CACHED_CALLS - hits
    assert counts[("default", "get", "hit")] == hits
    assert counts[("default", "get", "miss")] == misses
    assert counts[("default", "set", "ok")] == misses
    assert 1 <= misses <= 2  # one per gunicorn worker at most: each has its own memory
    spans: list[Span] = run["spans"]
    for trace_id, hit in run["cached"]:
        trace = [s for s in spans if s.trace_id == trace_id]
        (server,) = [s for s in trace if s.kind == "SPAN_KIND_SERVER"]
        gets = [s for s in trace if s.name == "get default"]
        assert len(gets) == 1
        assert gets[0].parent_id == server.span_id
        assert gets[0].attributes["django_observability.cache.alias"] == "default"
    lines = [line for line in run["access"] if line["url"]["path"] == "/api/v1/cached/"]
    assert len(lines) == CACHED_CALLS
    assert sorted(line["cache"]["hits"] for line in lines) == sorted(
        int(hit) for _t, hit in run["cached"]
    )
    assert sum(line["cache"]["misses"] for line in lines) == misses
