"""The server span of a request (``server_span.py``): attributes, parent, name, status."""

import pytest
from opentelemetry.trace import StatusCode

from django_observability import tracing
from tests.clients import AsyncHTTP, SyncHTTP
from tests.spans import server_spans

TOKEN = {"Authorization": "Bearer test-token-0123456789"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
DURATION_COUNT = "http_server_request_duration_seconds_count"
EXCEPTIONS = "http_server_exceptions_total"


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


def test_server_span(http, spans):
    response = http.get(
        "/api/v1/items/7/", headers={"User-Agent": "probe/1.0", "X-Request-ID": "req-1"}
    )
    (span,) = server_spans(spans)
    assert span.name == "GET /api/v1/items/<int:pk>/"
    attributes = dict(span.attributes)
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == "/api/v1/items/<int:pk>/"
    assert attributes["url.path"] == "/api/v1/items/7/"
    assert attributes["url.scheme"] == "http"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.address"] == "testserver"
    assert attributes["user_agent.original"] == "probe/1.0"
    assert attributes["http.request.id"] == response["X-Request-ID"] == "req-1"
    assert "client.address" in attributes
    assert attributes["network.protocol.version"] == "1.1"
    assert span.status.status_code == StatusCode.UNSET


def test_incoming_traceparent_is_continued(http, spans):
    http.get("/", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    (span,) = server_spans(spans)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote


@pytest.mark.parametrize(
    "traceparent", ["garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 5000]
)
def test_malformed_traceparent_starts_a_new_trace(http, spans, traceparent):
    assert http.get("/", headers={"traceparent": traceparent}).status_code == 200
    (span,) = server_spans(spans)
    assert span.parent is None


def test_unmatched_and_errors(http, spans):
    http.get("/nowhere/")
    path = "/boom/" if http.mode == "sync" else "/async-boom/"
    http.get(path)
    unmatched, boom = server_spans(spans)
    assert unmatched.name == "GET"
    assert "http.route" not in unmatched.attributes
    assert unmatched.attributes["http.response.status_code"] == 404
    assert boom.status.status_code == StatusCode.ERROR
    assert boom.attributes["error.type"] == "tests.views.BoomError"
    (event,) = [e for e in boom.events if e.name == "exception"]
    assert event.attributes["exception.type"].endswith("BoomError")


def test_odd_method(http, spans):
    http.request("PROPFIND", "/created/")
    (span,) = server_spans(spans)
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PROPFIND"
    assert span.name == "_OTHER /created/"


def test_cooperates_with_opentelemetry_instrumentation_django(spans, settings):
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    provider = tracing.provider_override()
    instrumentor = DjangoInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        response = SyncHTTP().get("/api/v1/items/5/")
    finally:
        instrumentor.uninstrument()
    (span,) = server_spans(spans)  # one server span, not two
    assert span.instrumentation_scope.name.startswith("opentelemetry.instrumentation.django")
    assert span.attributes["http.request.id"] == response["X-Request-ID"]
