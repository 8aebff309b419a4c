"""A span and a metric per database query (``db.py``)."""

import pytest
from django.test import override_settings
from opentelemetry.trace import SpanKind, StatusCode

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


@pytest.mark.django_db
def test_database_spans_are_children_of_the_request(http, spans, samples):
    response = http.get("/db/")
    assert response.status_code == 200
    (server,) = server_spans(spans)
    db_spans = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert len(db_spans) >= 2
    for span in db_spans:
        assert span.parent.span_id == server.context.span_id
        assert span.attributes["db.system.name"] == "sqlite"
    select = next(s for s in db_spans if s.attributes.get("db.operation.name") == "SELECT")
    assert select.name.startswith("SELECT ")
    assert (
        "%s" in select.attributes["db.query.text"] or "?" not in select.attributes["db.query.text"]
    )
    assert "secret-value" not in str([dict(s.attributes) for s in db_spans])
    count = samples.value(
        "db_client_operation_duration_seconds_count", alias="default", operation="SELECT"
    )
    assert count >= 1


@pytest.mark.django_db
def test_database_errors(http, samples, spans):
    assert http.get("/db-error/").status_code == 500
    errors = samples.series("db_client_errors_total")
    assert errors == [{"alias": "default", "error": "django.db.utils.OperationalError"}]
    failed = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert failed[-1].status.status_code == StatusCode.ERROR


@pytest.mark.django_db
@override_settings(OBSERVABILITY_TRACING_DB_SPANS=False, OBSERVABILITY_DB_METRICS=False)
def test_database_instrumentation_can_be_switched_off(http, spans, samples):
    http.get("/db/")
    assert [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT] == []
    assert samples.series("db_client_operation_duration_seconds_count") == []
