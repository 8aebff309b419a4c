import json
import logging

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from django_observability import tracing
from django_observability.logging import ContextFilter, JsonFormatter
from tests.clients import AsyncHTTP, SyncHTTP

TOKEN = {"Authorization": "Bearer test-token-0123456789"}


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


@pytest.fixture
def lines(caplog):
    """The access records, as the JSON formatter writes them."""
    caplog.set_level(logging.INFO, logger="django_observability.access")
    formatter = JsonFormatter()

    def get():
        return [
            json.loads(formatter.format(r))
            for r in caplog.records
            if r.name == "django_observability.access"
        ]

    return get


def test_one_line_per_request_with_the_fields(http, lines):
    response = http.get("/api/v1/items/7/", headers={"X-Request-ID": "req-42"})
    (line,) = lines()
    assert line["message"] == "GET /api/v1/items/7/ 200"
    assert line["log.level"] == "info"
    assert line["log"]["logger"] == "django_observability.access"
    assert line["http"]["request"] == {"id": "req-42", "method": "GET"}
    assert line["http"]["route"] == "/api/v1/items/<int:pk>/"
    assert line["http"]["response"] == {"status_code": 200, "body": {"bytes": 2}}
    assert line["url"]["path"] == "/api/v1/items/7/"
    assert line["event"]["duration"] > 0
    assert line["client"]["ip"] == "127.0.0.1"
    assert line["db"]["queries"] == {"count": 0, "duration": 0}
    assert response["X-Request-ID"] == "req-42"
    assert "user" not in line


def test_records_come_from_the_installed_record_factory(http, lines):
    # As logger.info() would make them: a factory that stamps records (OpenTelemetry's
    # logging instrumentation installs one) sees the access records too.
    original = logging.getLogRecordFactory()

    def stamping(*args, **kwargs):
        record = original(*args, **kwargs)
        record.deployment_ring = "canary"
        return record

    logging.setLogRecordFactory(stamping)
    try:
        http.get("/api/v1/items/7/")
    finally:
        logging.setLogRecordFactory(original)
    (line,) = lines()
    assert line["deployment_ring"] == "canary"
    assert line["log"]["origin"]["function"] == "log_request"
    assert line["log"]["origin"]["file"]["name"] == "access_log.py"
    assert line["http"]["response"]["status_code"] == 200


@pytest.mark.django_db
def test_database_queries_of_the_request(http, lines):
    http.get("/db/")
    (line,) = lines()
    assert line["db"]["queries"]["count"] >= 3
    assert line["db"]["queries"]["duration"] > 0


def test_unmatched_and_errors(http, lines):
    http.get("/nowhere/")
    http.get("/boom/")
    unmatched, boom = lines()
    assert unmatched["http"]["route"] == "<unmatched>"
    assert unmatched["http"]["response"]["status_code"] == 404
    assert boom["http"]["response"]["status_code"] == 500


def test_trace_ids_join_the_span(http, lines):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        http.get("/created/")
    finally:
        tracing.use_tracer_provider(None)
    (span,) = exporter.get_finished_spans()
    (line,) = lines()
    assert line["trace"]["id"] == format(span.context.trace_id, "032x")
    assert line["span"]["id"] == format(span.context.span_id, "016x")


@pytest.mark.parametrize("access_log", [True, False])
def test_djangos_own_response_records_carry_the_ids(http, caplog, access_log):
    """Django logs a 4xx/5xx ("Not Found: ...") after the middleware returned, with
    the request in ``extra``: its ids come from the request, filtered or not."""
    caplog.set_level(logging.INFO)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        # Without the access line nor metrics, nothing else reads the span's ids.
        with override_settings(
            OBSERVABILITY_ACCESS_LOG=access_log, OBSERVABILITY_METRICS_ENABLED=access_log
        ):
            response = http.get("/nowhere/", headers={"X-Request-ID": "req-404"})
    finally:
        tracing.use_tracer_provider(None)
    assert response.status_code == 404
    (span,) = exporter.get_finished_spans()
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    formatter = JsonFormatter()
    unfiltered = json.loads(formatter.format(record))
    assert ContextFilter().filter(record) is True
    filtered = json.loads(formatter.format(record))
    for line in (unfiltered, filtered):
        assert line["message"] == "Not Found: /nowhere/"
        assert line["http"]["request"]["id"] == "req-404"
        assert line["trace"]["id"] == format(span.context.trace_id, "032x")
        assert line["span"]["id"] == format(span.context.span_id, "016x")


def test_a_request_in_extra_without_our_state_adds_nothing(caplog):
    from django.test import RequestFactory

    request = RequestFactory().get("/x/")
    request.request_id = 12345  # not ours: not a string
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "m", (), None)
    record.request = request
    assert ContextFilter().filter(record) is True
    line = json.loads(JsonFormatter().format(record))
    assert "trace" not in line
    assert "id" not in line.get("http", {}).get("request", {})


@pytest.mark.parametrize("path", ["/stream/", "/async-stream/"])
def test_streaming_line_written_at_close_with_ids(http, lines, path):
    response = http.get(path)
    (line,) = lines()
    assert line["http"]["request"]["id"] == response["X-Request-ID"]
    assert line["http"]["response"]["body"]["bytes"] == len(response.body)


def test_excluded_requests_write_no_line(http, lines):
    http.get("/metrics", headers=TOKEN)
    http.get("/health/live/")
    with override_settings(OBSERVABILITY_EXCLUDE_PATHS=["/api/"]):
        http.get("/api/v1/items/1/")
    http.get("/exempt/")
    assert lines() == []


@override_settings(OBSERVABILITY_ACCESS_LOG=False)
def test_switched_off(http, lines):
    http.get("/")
    assert lines() == []


@pytest.mark.django_db(transaction=True)
def test_user_id_from_an_async_view_without_a_query(lines):
    user = User.objects.create_user("bob", password="pw-secret-value-1")
    http = AsyncHTTP()
    http.client.force_login(user)
    response = http.get("/whoami/")
    assert response.body == str(user.pk).encode()
    # A view that never looked at its user: no user id, and no query to find it.
    http.get("/created/")
    whoami, created = lines()
    assert whoami["user"] == {"id": str(user.pk)}
    assert "user" not in created
    assert created["db"]["queries"]["count"] == 0


@pytest.mark.django_db(transaction=True)
def test_no_secret_in_any_line(lines, caplog):
    caplog.set_level(logging.DEBUG)
    User.objects.create_user("carol", password="pw-secret-value-2")
    http = SyncHTTP()
    http.request(
        "POST",
        "/login/?next=/",
        data={"username": "carol", "password": "pw-secret-value-2"},
        headers={"Cookie": "sessionid=cookie-secret-3", "Authorization": "Bearer token-secret-4"},
    )
    formatter = JsonFormatter()
    everything = "\n".join(formatter.format(r) for r in caplog.records)
    for secret in ("pw-secret-value-2", "cookie-secret-3", "token-secret-4"):
        assert secret not in everything
    assert lines()
