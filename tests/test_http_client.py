"""http_client.py: outgoing HTTP through OpenTelemetry's instrumentations, our metric, request ids.

Real requests and httpx (sync and async) calls to a loopback HTTP server in a
thread of this process that records the headers it received.
"""

import asyncio
import http.server
import threading

import httpx
import pytest
import requests
from opentelemetry.trace import SpanKind, StatusCode

from django_observability import faults, http_client, tracing
from django_observability.context import REQUEST_ID
from tests.peers import free_port


class Upstream(http.server.ThreadingHTTPServer):
    """Answers ``/status/<code>`` with that code and keeps the headers of every request."""

    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.received.append({k.lower(): v for k, v in self.headers.items()})
        path = self.path.partition("?")[0]
        code = int(path.rsplit("/", 1)[-1]) if path.startswith("/status/") else 200
        body = b"ok\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def upstream():
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def instrumented(spans):
    """The instrumentations enabled again, with the test's span provider."""
    http_client.disable()
    http_client.enable()
    assert http_client.enabled() >= {"requests", "httpx"}
    yield spans
    http_client.disable()
    http_client.enable()


@pytest.fixture
def request_id():
    token = REQUEST_ID.set("req-out-1")
    yield "req-out-1"
    REQUEST_ID.reset(token)


def duration_count(samples, status, method="GET", address="127.0.0.1"):
    return samples.value(
        "http_client_request_duration_seconds_count",
        method=method,
        server_address=address,
        status=status,
    )


def client_spans(spans):
    return [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]


def test_requests_call_is_timed_and_traced_with_the_stable_conventions(upstream, spans, samples):
    with tracing.trace_operation("the request") as outer:
        assert requests.get(f"{upstream.url}/status/201?q=secret", timeout=5).status_code == 201
    assert duration_count(samples, "201") == 1
    (span,) = client_spans(spans)
    assert span.parent.span_id == outer.get_span_context().span_id
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["server.address"] == "127.0.0.1"
    assert span.attributes["http.response.status_code"] == 201
    assert span.attributes["url.full"].startswith(f"{upstream.url}/status/201")
    # The traceparent sent continues the trace, as the client span's child.
    traceparent = upstream.received[-1]["traceparent"]
    assert traceparent.split("-")[1] == f"{span.context.trace_id:032x}"
    assert traceparent.split("-")[2] == f"{span.context.span_id:016x}"


def test_httpx_sync_and_async(upstream, spans, samples):
    with httpx.Client() as client:
        assert client.get(f"{upstream.url}/status/404").status_code == 404

    async def call() -> int:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{upstream.url}/status/503")
            return response.status_code

    assert asyncio.run(call()) == 503
    assert duration_count(samples, "404") == 1
    assert duration_count(samples, "503", method="POST") == 1
    assert len(client_spans(spans)) == 2  # one span per call, never two


def test_a_call_without_a_response_counts_as_error_and_raises_unchanged(spans, samples):
    port = free_port()  # nobody listens
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/")
    assert duration_count(samples, "error") == 2
    assert all(s.status.status_code == StatusCode.ERROR for s in client_spans(spans))


def test_the_request_id_goes_only_to_allowed_hosts(upstream, request_id, settings):
    requests.get(upstream.url, timeout=5)
    assert "x-request-id" not in upstream.received[-1]  # default: no host
    settings.OBSERVABILITY_HTTP_CLIENT_REQUEST_ID_HOSTS = ["127.0.0.1"]
    requests.get(upstream.url, timeout=5)
    assert upstream.received[-1]["x-request-id"] == request_id
    httpx.get(upstream.url)
    assert upstream.received[-1]["x-request-id"] == request_id
    # A header the caller set is kept.
    requests.get(upstream.url, headers={"X-Request-ID": "mine"}, timeout=5)
    assert upstream.received[-1]["x-request-id"] == "mine"
    settings.OBSERVABILITY_HTTP_CLIENT_REQUEST_ID_HOSTS = [".example.internal"]
    requests.get(upstream.url, timeout=5)
    assert "x-request-id" not in upstream.received[-1]


def test_no_request_id_outside_a_request(upstream, settings):
    settings.OBSERVABILITY_HTTP_CLIENT_REQUEST_ID_HOSTS = ["*"]
    requests.get(upstream.url, timeout=5)
    assert "x-request-id" not in upstream.received[-1]


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("api.internal", ["api.internal"], True),
        ("API.internal.", ["api.internal"], True),
        ("x.api.internal", ["api.internal"], False),
        ("x.api.internal", [".api.internal"], True),
        ("x.api.internal", ["*.api.internal"], True),
        ("evilapi.internal", [".api.internal"], False),
        ("anything", ["*"], True),
        ("anything", [], False),
        (None, ["*"], False),
    ],
)
def test_host_allowed(host, allowed, expected):
    assert http_client.host_allowed(host, allowed) is expected


def test_the_server_address_label_is_capped(settings, samples):
    settings.OBSERVABILITY_METRICS_LABEL_CAP = 2
    from django_observability.metrics import get_metrics

    metrics = get_metrics()
    for host in ("a.example", "b.example", "c.example", "d.example"):
        metrics.record_http_client("GET", host, "200", 0.01)
    assert duration_count(samples, "200", address="a.example") == 1
    assert duration_count(samples, "200", address="_other") == 2


def test_faults_in_our_hook_never_fail_the_call(
    upstream, monkeypatch, settings, caplog, request_id
):
    settings.OBSERVABILITY_HTTP_CLIENT_REQUEST_ID_HOSTS = ["*"]

    def broken(host):
        raise RuntimeError("broken hook")

    monkeypatch.setattr(http_client, "request_id_header", broken)
    faults.reset()
    assert requests.get(upstream.url, timeout=5).status_code == 200
    assert httpx.get(upstream.url).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "django_observability: fault in http_client.request_id; the request is served regardless"
    ]
    faults.reset()


def test_the_bridge_reads_the_old_conventions_only_without_the_new(samples):
    provider = http_client.meter_provider()
    meter = provider.get_meter("x")
    old = meter.create_histogram("http.client.duration", unit="ms")
    old.record(250, {"http.method": "GET", "net.peer.name": "old.example", "http.status_code": 200})
    assert duration_count(samples, "200", address="old.example") == 1
    assert (
        samples.value(
            "http_client_request_duration_seconds_sum",
            method="GET",
            server_address="old.example",
            status="200",
        )
        == 0.25
    )
    # Both conventions (http/dup): each call counted once, from the stable histogram.
    new = meter.create_histogram("http.client.request.duration", unit="s")
    old.record(250, {"http.method": "GET", "net.peer.name": "old.example", "http.status_code": 200})
    new.record(0.25, {"http.request.method": "GET", "server.address": "old.example",
                      "http.response.status_code": 200})  # fmt: skip
    assert duration_count(samples, "200", address="old.example") == 2
    # Anything else it asks for is a no-op.
    meter.create_counter("other").add(1)


def test_setting_none_enables_nothing(settings):
    http_client.disable()
    settings.OBSERVABILITY_HTTP_CLIENT_INSTRUMENTATIONS = []
    http_client.enable()
    assert http_client.enabled() == frozenset()


def test_urllib3_calls_are_timed_once_with_failures_and_requests_calls_once(upstream, samples):
    """urllib3 is timed by the app (its instrumentation, when installed, counts no failure),
    and a call made by requests, which requests' instrumentation times, is not counted again."""
    import urllib3

    pool = urllib3.PoolManager()
    assert pool.request("GET", f"{upstream.url}/status/202").status == 202
    assert duration_count(samples, "202") == 1
    with pytest.raises(urllib3.exceptions.NewConnectionError):
        pool.request("GET", f"http://127.0.0.1:{free_port()}/", retries=False)
    assert duration_count(samples, "error") == 1
    # Retries are urlopen calling itself: one call, counted once.
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        pool.request("GET", f"http://127.0.0.1:{free_port()}/", retries=2)
    assert duration_count(samples, "error") == 2
    requests.get(f"{upstream.url}/status/203", timeout=5)
    assert duration_count(samples, "203") == 1


def test_urllib3_spans_carry_the_trace_and_the_request_id_where_allowed(
    upstream, spans, samples, request_id, settings
):
    """Runs where opentelemetry-instrumentation-urllib3 is installed: the nox session
    ``http-client-urllib3`` (its release matching the main environment's SDK may not be on
    PyPI; that session installs the newest set of releases that agree)."""
    pytest.importorskip("opentelemetry.instrumentation.urllib3")
    import urllib3

    assert "urllib3" in http_client.enabled()
    pool = urllib3.PoolManager()
    with tracing.trace_operation("the request") as outer:
        assert pool.request("GET", f"{upstream.url}/status/202").status == 202
    assert "x-request-id" not in upstream.received[-1]  # default: no host
    assert duration_count(samples, "202") == 1  # once, not by its meter and ours
    (span,) = client_spans(spans)
    assert span.parent.span_id == outer.get_span_context().span_id
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.response.status_code"] == 202
    assert upstream.received[-1]["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"
    settings.OBSERVABILITY_HTTP_CLIENT_REQUEST_ID_HOSTS = ["127.0.0.1"]
    pool.request("GET", upstream.url)
    assert upstream.received[-1]["x-request-id"] == request_id
    # requests calls urllib3: one span per call, the requests instrumentation's.
    before = len(client_spans(spans))
    requests.get(upstream.url, timeout=5)
    assert len(client_spans(spans)) == before + 1
