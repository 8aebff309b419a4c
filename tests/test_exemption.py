"""What is left out of the metrics, the spans and the access log (``exemption.py``)."""

import pytest
from django.test import override_settings
from opentelemetry.trace import SpanKind

from django_observability import exemption
from tests.clients import AsyncHTTP, SyncHTTP
from tests.spans import server_spans

DURATION_COUNT = "http_server_request_duration_seconds_count"
TOKEN = {"Authorization": "Bearer test-token-0123456789"}


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


def test_the_decorator_is_importable_where_users_import_it():
    import django_observability
    from django_observability import middleware

    assert django_observability.observability_exempt is exemption.observability_exempt
    assert middleware.observability_exempt is exemption.observability_exempt


def test_own_endpoints_are_excluded(http, samples):
    http.get("/metrics", headers=TOKEN)
    http.get("/metrics")  # 401
    http.request("POST", "/metrics")  # 405
    http.request("FOO", "/metrics")  # 405
    assert samples.total(DURATION_COUNT) == 0
    assert not samples.value("http_server_active_requests", method="GET")


@pytest.mark.parametrize("path", ["/exempt/", "/async-exempt/"])
def test_observability_exempt_decorator(http, samples, path):
    assert http.get(path).status_code == 200
    assert samples.total(DURATION_COUNT) == 0
    assert samples.value("http_server_active_requests", method="GET") == 0


@override_settings(OBSERVABILITY_EXCLUDE_PATHS=["/api/", "/posts/"])
def test_exclude_paths_setting(http, samples):
    http.get("/api/v1/items/1/")
    http.get("/posts/x/")
    http.get("/")
    assert samples.total(DURATION_COUNT) == 1
    assert samples.count("/") == 1


@pytest.mark.django_db
def test_excluded_requests_have_no_span(http, spans):
    http.get("/metrics", headers=TOKEN)
    http.get("/health/live/")
    with override_settings(OBSERVABILITY_EXCLUDE_PATHS=["/api/", "/db/"]):
        http.get("/api/v1/items/1/")
        if http.mode == "sync":
            assert http.get("/db/").status_code == 200  # queries: no DB spans either
    assert spans.get_finished_spans() == ()


@pytest.mark.django_db
def test_exempt_views_make_no_spans(http, spans, samples):
    path = "/exempt-work/" if http.mode == "sync" else "/async-exempt-work/"
    first = http.get(path)
    assert first.body.decode().endswith("True")  # trace_operation made no span
    # The first request to the path began its server span before routing: only that.
    assert [s.kind for s in spans.get_finished_spans()] == [SpanKind.SERVER]
    spans.clear()
    http.get(path)
    http.get(path)
    assert spans.get_finished_spans() == ()  # the path is known now: nothing at all
    assert samples.total("http_server_request_duration_seconds_count") == 0
    # Other paths are traced as before.
    http.get("/api/v1/items/3/")
    assert [s.name for s in server_spans(spans)] == ["GET /api/v1/items/<int:pk>/"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("body", ["sync", "async"])
def test_streamed_bodies_of_excluded_and_exempt_requests_make_no_spans(http, spans, body):
    """The body runs after the view and the middleware returned: still no spans from it."""
    if http.mode == "async" and body == "sync":
        pytest.skip("the async test client reads a sync body in its event loop (no queries)")
    prefix = "" if body == "sync" else "async-"
    with override_settings(OBSERVABILITY_EXCLUDE_PATHS=["/excluded/"]):
        response = http.get(f"/excluded/{prefix}stream/")
        assert response.body.endswith(b" done")
        assert spans.get_finished_spans() == ()
    http.get(f"/{prefix}exempt-stream/")  # first request to the path: its server span only
    assert [s.kind for s in spans.get_finished_spans()] == [SpanKind.SERVER]
    spans.clear()
    http.get(f"/{prefix}exempt-stream/")
    assert spans.get_finished_spans() == ()
    http.get("/stream/")  # other streams are traced as before
    assert [s.name for s in server_spans(spans)] == ["GET /stream/"]


def test_exempt_views_with_converters_are_not_remembered(http, spans):
    """Their paths come from clients: remembering them would let clients fill the set."""
    for n in range(3):
        assert http.get(f"/exempt/{n}/").status_code == 200
    assert exemption.learned_paths() == set()
    assert len(server_spans(spans)) == 3  # a server span each, nothing inside


def test_a_path_presumed_exempt_is_traced_again_when_its_view_is_not(http, spans, samples):
    """If a path learned as exempt is answered by a view that is not, it is forgotten."""
    assert exemption.learn_path("/api/v1/items/5/")
    http.get("/api/v1/items/5/")
    assert server_spans(spans) == []  # presumed exempt: no span this once...
    assert samples.count("/api/v1/items/<int:pk>/") == 1  # ...but measured, not lost
    assert "/api/v1/items/5/" not in exemption.learned_paths()
    http.get("/api/v1/items/5/")
    assert len(server_spans(spans)) == 1


@pytest.mark.django_db
def test_exempt_paths_are_bounded(http, spans, samples, monkeypatch):
    monkeypatch.setattr(exemption, "EXEMPT_PATHS_CAP", 1)
    monkeypatch.setattr(exemption, "EXEMPT_PATH_MAX_LENGTH", len("/async-exempt/"))
    http.get("/async-exempt-work/")  # too long to remember
    http.get("/exempt/")
    http.get("/async-exempt/")  # short enough, but the set is full
    assert exemption.learned_paths() == {"/exempt/"}
    # Not remembered: still left out of the metrics, still no spans inside.
    assert [s.kind for s in spans.get_finished_spans()] == [SpanKind.SERVER] * 3
    assert samples.total("http_server_request_duration_seconds_count") == 0


def test_a_settings_change_forgets_the_learned_paths(http):
    http.get("/exempt/")
    assert exemption.learned_paths() == {"/exempt/"}
    with override_settings(OBSERVABILITY_EXCLUDE_PATHS=["/nothing/"]):
        assert exemption.learned_paths() == set()
