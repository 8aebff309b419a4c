"""Streamed bodies (``streaming.py``): recorded at close, bytes as sent, failures counted."""

import pytest
from opentelemetry.trace import StatusCode

from tests.clients import AsyncHTTP, SyncHTTP, consume
from tests.spans import server_spans

TOKEN = {"Authorization": "Bearer test-token-0123456789"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
DURATION_COUNT = "http_server_request_duration_seconds_count"
EXCEPTIONS = "http_server_exceptions_total"


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


@pytest.mark.parametrize("path", ["/stream/", "/async-stream/"])
def test_streaming_span_ends_when_the_response_closes(http, spans, path):
    http.get(path)
    (span,) = server_spans(spans)
    assert span.end_time is not None
    assert span.name == f"GET {path}"


@pytest.mark.parametrize("path", ["/stream-fails/", "/async-stream-fails/"])
def test_streaming_span_marked_when_the_body_fails(http, spans, path):
    from tests.views import BoomError

    response = http.get(path, consume=False)
    with pytest.raises(BoomError):
        consume(response)  # the test client closes the response when iteration ends
    (span,) = server_spans(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "tests.views.BoomError"
    assert span.attributes["http.response.status_code"] == 200


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
@pytest.mark.parametrize("path", ["/stream-fails/", "/async-stream-fails/"])
def test_streaming_failure_under_asgi_is_recorded_though_never_closed(spans, samples, path):
    # Django's ASGIHandler does not close a response whose body raised: the
    # request is recorded when the generator fails, not at close.
    import asyncio

    from django.core.asgi import get_asgi_application

    from tests.views import BoomError

    app = get_asgi_application()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client never goes away

    async def send(message):
        sent.append(message)

    with pytest.raises(BoomError):
        asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert (
        samples.value("http_server_exceptions_total", route=path, exception="tests.views.BoomError")
        == 1
    )
    assert samples.count(path) == 1
    assert samples.value("http_server_active_requests", method="GET") == 0
    (span,) = server_spans(spans)
    assert span.status.status_code == StatusCode.ERROR


@pytest.mark.parametrize("path", ["/stream/", "/async-stream/"])
def test_streaming_response_recorded_when_closed(http, samples, path):
    response = http.get(path, consume=False)
    assert response.status_code == 200
    # Returned but not yet sent: still in flight, not yet recorded.
    assert samples.total(DURATION_COUNT) == 0
    assert samples.value("http_server_active_requests", method="GET") == 1
    if response.is_async:
        body = http_consume_async(response)
    else:
        body = b"".join(response.streaming_content)
    assert samples.count(path) == 1
    assert samples.value("http_server_active_requests", method="GET") == 0
    sent = samples.value("http_server_response_body_size_bytes_sum", method="GET", route=path)
    assert sent == len(body) > 0


@pytest.mark.parametrize("path", ["/stream-fails/", "/async-stream-fails/"])
def test_exception_while_streaming_is_counted_and_passes_through(http, samples, path):
    from tests.views import BoomError

    response = http.get(path, consume=False)
    assert response.status_code == 200  # already sent when the body fails
    with pytest.raises(BoomError, match="generator failed"):
        consume(response)  # the test client closes the response when iteration ends
    assert samples.value(EXCEPTIONS, route=path, exception="tests.views.BoomError") == 1
    assert samples.count(path) == 1
    assert samples.value("http_server_active_requests", method="GET") == 0


def http_consume_async(response):
    from asgiref.sync import async_to_sync

    async def consume():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(consume)()


def test_file_response_size_from_content_length(http, samples):
    import tests.views

    response = http.get("/file/")
    with open(tests.views.__file__, "rb") as fh:
        expected = len(fh.read())
    assert response.body
    assert len(response.body) == expected
    size = samples.value("http_server_response_body_size_bytes_sum", method="GET", route="/file/")
    assert size == expected
