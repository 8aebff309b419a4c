"""A project's refinement of a catch-all view's route label (``routes.py``)."""

import json
import logging

import pytest
from django.test import RequestFactory, override_settings

from django_observability import refine_route
from django_observability.context import RequestState, enter, leave
from django_observability.logging import JsonFormatter
from django_observability.routes import MAX_LENGTH
from tests.clients import AsyncHTTP, SyncHTTP, consume
from tests.spans import server_spans


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


def prefix(http):
    return "/pages/" if http.mode == "sync" else "/async-pages/"


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="django_observability.access")
    formatter = JsonFormatter()
    return lambda: [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name == "django_observability.access"
    ]


def test_refined_route_in_the_metrics_and_the_access_line(http, samples, lines, spans):
    base = prefix(http)
    for page in ("a", "b", "c"):
        assert http.get(f"{base}blog/{page}/?kind=blog").status_code == 200
    assert http.get(f"{base}home/?kind=home").status_code == 200
    assert http.get(f"{base}plain/").status_code == 200  # not refined: the URL pattern
    assert samples.count("page:blog") == 3
    assert samples.count("page:home") == 1
    assert samples.count(f"{base}<path:path>") == 1
    assert (
        samples.value("http_server_response_body_size_bytes_count", method="GET", route="page:blog")
        == 3
    )
    assert [line["http"]["route"] for line in lines()] == ["page:blog"] * 3 + [
        "page:home",
        f"{base}<path:path>",
    ]
    # The span keeps the URL pattern as http.route and its name, the refinement beside it.
    span = server_spans(spans)[0]
    assert span.name == f"GET {base}<path:path>"
    assert span.attributes["http.route"] == f"{base}<path:path>"
    assert span.attributes["django_observability.route"] == "page:blog"
    assert "django_observability.route" not in server_spans(spans)[-1].attributes


def test_exceptions_are_counted_under_the_refined_route(samples):
    assert SyncHTTP().get("/pages/x/?kind=blog&fail=1").status_code == 500
    assert samples.count("page:blog", status="500") == 1
    assert (
        samples.value(
            "http_server_exceptions_total", route="page:blog", exception="tests.views.BoomError"
        )
        == 1
    )


@override_settings(OBSERVABILITY_METRICS_LABEL_CAP=2)
def test_refined_labels_are_capped(http, samples, lines):
    base = prefix(http)
    for kind in ("one", "two", "three", "four", "one"):
        http.get(f"{base}x/?kind={kind}")
    assert samples.count("page:one") == 2
    assert samples.count("page:two") == 1
    assert samples.count("_other") == 2
    assert samples.count("page:three") is None
    # URL patterns are not refined labels: they take no room under the cap.
    http.get(f"{base}plain/")
    assert samples.count(f"{base}<path:path>") == 1
    assert [line["http"]["route"] for line in lines()][2:4] == ["_other", "_other"]


def test_refinement_is_per_request_and_can_be_undone():
    request = RequestFactory().get("/")
    tokens = enter(request, "rid")
    try:
        state = RequestState(request, None, "GET", "/<path:path>")
        refine_route(request, "page:blog")
        assert state.refined_route == "page:blog"
        refine_route(request, None)
        assert state.refined_route is None
        refine_route(request, "x" * 1000)
        assert state.refined_route == "x" * MAX_LENGTH
        refine_route(object(), "page:api")  # a framework's wrapper: the current request
        assert state.refined_route == "page:api"
        refine_route(request, 42)  # not a label: ignored, never raised
        assert state.refined_route is None
    finally:
        leave(tokens)
    refine_route(RequestFactory().get("/"), "page:none")  # not measured: nothing to refine


def test_exception_in_a_refined_streamed_body_is_counted_under_the_refinement(samples):
    from tests.views import BoomError

    response = SyncHTTP().get("/refined-stream-fails/", consume=False)
    with pytest.raises(BoomError):
        consume(response)
    exception = "tests.views.BoomError"
    assert (
        samples.value("http_server_exceptions_total", route="stream:refined", exception=exception)
        == 1
    )
    assert not samples.count("/refined-stream-fails/")  # no series under the URL pattern
