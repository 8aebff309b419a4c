import logging
import random
import re
import string

import pytest
from asgiref.sync import iscoroutinefunction
from django.test import Client, override_settings

from django_observability import faults
from django_observability.metrics import Metrics
from django_observability.middleware import ObservabilityMiddleware
from tests.clients import AsyncHTTP, SyncHTTP
from tests.views import BoomError

DURATION_COUNT = "http_server_request_duration_seconds_count"
EXCEPTIONS = "http_server_exceptions_total"


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


# --- route label: every case of the contract ----------------------------------


@pytest.mark.parametrize(
    ("path", "route", "status"),
    [
        ("/", "/", "200"),
        ("/api/v1/items/42/", "/api/v1/items/<int:pk>/", "200"),
        ("/api/v1/archive/2024/", "/api/v1/archive/(?P<year>[0-9]{4})/", "200"),
        ("/users/0f8fad5b-d9cb-469f-a165-70867728950e/", "/users/<uuid:uid>/", "200"),
        ("/posts/hello-world/", "/posts/<slug:slug>/", "200"),
        ("/files/a/b/c.txt", "/files/<path:rest>", "200"),
        ("/legacy/abc", "/legacy/(?P<code>[a-z]+)", "200"),
        ("/async/7/", "/async/<int:pk>/", "200"),
        # Http404 raised inside a matched view keeps its route.
        ("/api/v1/items/9/missing/", "/api/v1/items/<int:pk>/missing/", "404"),
        # Never resolved: the resolver's own 404.
        ("/no/such/page/", "<unmatched>", "404"),
        # APPEND_SLASH: CommonMiddleware redirects before any view is matched.
        ("/created", "<unmatched>", "301"),
        ("/forbidden/", "/forbidden/", "403"),
        ("/created/", "/created/", "201"),
    ],
)
def test_route_label(http, samples, path, route, status):
    response = http.get(path)
    assert response.status_code == int(status)
    assert samples.count(route, status=status) == 1
    assert samples.total(DURATION_COUNT) == 1


@override_settings(
    MIDDLEWARE=[
        "django_observability.middleware.ObservabilityMiddleware",
        "tests.middleware.ShortCircuitMiddleware",
    ]
)
def test_response_short_circuited_by_a_middleware_is_unmatched(http, samples):
    response = http.get("/api/v1/items/1/", headers={"X-Short-Circuit": "1"})
    assert response.status_code == 503
    assert samples.count("<unmatched>", status="503") == 1


@override_settings(
    ROOT_URLCONF="tests.urls_i18n",
    USE_I18N=True,
    LANGUAGE_CODE="en",
    LANGUAGES=[("en", "English"), ("fr", "French")],
    MIDDLEWARE=[
        "django_observability.middleware.ObservabilityMiddleware",
        "django.middleware.locale.LocaleMiddleware",
    ],
)
def test_i18n_prefixes_stay_as_django_gives_them(http, samples):
    assert http.get("/en/about/").status_code == 200
    assert http.get("/fr/about/").status_code == 200
    assert http.get("/de/about/").status_code == 404
    assert samples.count("/en/about/") == 1
    assert samples.count("/fr/about/") == 1
    assert samples.count("<unmatched>", status="404") == 1


def test_distinct_unmatched_urls_add_no_series(samples):
    http = SyncHTTP()
    for i in range(10_000):
        http.get(f"/random/{i}/{random.random()}")
    routes = {labels["route"] for labels in samples.series(DURATION_COUNT)}
    assert routes == {"<unmatched>"}
    assert samples.count("<unmatched>", status="404") == 10_000


# --- method label ---------------------------------------------------------------


def test_standard_methods_are_kept(http, samples):
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        http.request(method, "/created/")
    methods = {labels["method"] for labels in samples.series(DURATION_COUNT)}
    assert methods == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def test_random_methods_fold_into_other(http, samples):
    rng = random.Random(7)
    for _ in range(100):
        method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
        http.request(method, "/created/")
    methods = {labels["method"] for labels in samples.series(DURATION_COUNT)}
    assert methods == {"_OTHER"}
    assert samples.count("/created/", method="_OTHER", status="201") == 100
    active = {labels["method"] for labels in samples.series("http_server_active_requests")}
    assert active == {"_OTHER"}


# --- exceptions -----------------------------------------------------------------


def test_exception_counted_once_with_qualified_name(http, samples):
    path, route = ("/boom/", "/boom/") if http.mode == "sync" else ("/async-boom/", "/async-boom/")
    response = http.get(path)
    assert response.status_code == 500
    assert samples.value(EXCEPTIONS, route=route, exception="tests.views.BoomError") == 1
    assert samples.total(EXCEPTIONS) == 1
    assert samples.count(route, status="500") == 1


def test_exceptions_mapped_to_4xx_are_not_counted(http, samples):
    http.get("/forbidden/")
    http.get("/api/v1/items/1/missing/")
    http.get("/nowhere/")
    assert samples.total(EXCEPTIONS) == 0


def test_user_exception_passes_through_unchanged(samples):
    client = Client(raise_request_exception=True)
    with pytest.raises(BoomError, match="the view failed"):
        client.get("/boom/")
    assert samples.value(EXCEPTIONS, route="/boom/", exception="tests.views.BoomError") == 1


@override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True)
def test_propagated_exception_counted_once_and_reraised(samples):
    client = Client(raise_request_exception=False)
    with pytest.raises(BoomError):
        client.get("/boom/")
    assert samples.total(EXCEPTIONS) == 1
    assert samples.count("/boom/", status="500") == 1
    assert samples.value("http_server_active_requests", method="GET") == 0


def test_exception_classes_are_capped(samples):
    http = SyncHTTP()
    for n in range(100):
        assert http.get(f"/numbered/{n}/").status_code == 500
    names = [labels["exception"] for labels in samples.series(EXCEPTIONS)]
    assert len(names) == 51
    assert "_other" in names
    assert samples.value(EXCEPTIONS, route="/numbered/<int:n>/", exception="_other") == 50
    assert samples.total(EXCEPTIONS) == 100


@override_settings(OBSERVABILITY_METRICS_LABEL_CAP=3)
def test_label_cap_is_a_setting(samples):
    http = SyncHTTP()
    for n in range(5):
        http.get(f"/numbered/{n}/")
    assert len(samples.series(EXCEPTIONS)) == 4


# --- in-flight gauge, body size, streaming --------------------------------------


def test_in_flight_gauge_counts_the_request_being_served(http, samples):
    response = http.get("/inflight/")
    assert response.body == b"1.0"
    assert samples.value("http_server_active_requests", method="GET") == 0


def test_body_size(http, samples):
    http.get("/created/")
    http.request("HEAD", "/created/")
    size = "http_server_response_body_size_bytes"
    assert samples.value(f"{size}_sum", method="GET", route="/created/") == 1500
    assert samples.value(f"{size}_bucket", method="GET", route="/created/", le="1000.0") == 0
    assert samples.value(f"{size}_bucket", method="GET", route="/created/", le="10000.0") == 1
    assert samples.value(f"{size}_sum", method="HEAD", route="/created/") == 0


# --- exclusion ------------------------------------------------------------------


# --- request ids ----------------------------------------------------------------


def test_request_id_generated_exposed_and_echoed(http):
    path = "/ids/" if http.mode == "sync" else "/async-ids/"
    response = http.get(path)
    rid = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    # request.request_id, get_request_id() in the view (and in a worker thread)
    assert set(response.body.decode().split()) == {rid}


def test_valid_incoming_request_id_kept(http):
    rid = "edge-1.req:42_abc"
    response = http.get("/ids/", headers={"X-Request-ID": rid})
    assert response["X-Request-ID"] == rid
    assert response.body.decode().split() == [rid, rid]


@pytest.mark.parametrize(
    "hostile",
    [
        "abc\r\nSet-Cookie: session=evil",
        "x" * 10_000,
        "é-ünïcode",
        "has space",
        "a/b",
        "",
        "x" * 129,
    ],
)
def test_hostile_request_id_replaced(hostile):
    client = Client()
    response = client.get("/ids/", HTTP_X_REQUEST_ID=hostile)
    rid = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert "Set-Cookie" not in response
    assert response.content.decode().split() == [rid, rid]


def test_longest_valid_request_id_kept():
    rid = "a" * 128
    assert Client().get("/ids/", HTTP_X_REQUEST_ID=rid)["X-Request-ID"] == rid


@override_settings(OBSERVABILITY_REQUEST_ID_HEADER="X-Correlation-ID")
def test_request_id_header_setting(http):
    response = http.get("/ids/", headers={"X-Correlation-ID": "corr-1", "X-Request-ID": "other"})
    assert response["X-Correlation-ID"] == "corr-1"
    assert "X-Request-ID" not in response


@override_settings(OBSERVABILITY_REQUEST_ID_TRUST_INCOMING=False)
def test_incoming_ids_can_be_ignored(http):
    response = http.get("/ids/", headers={"X-Request-ID": "from-client"})
    assert response["X-Request-ID"] != "from-client"


def test_request_id_not_leaked_outside_the_request(http):
    from django_observability import get_request_id

    http.get("/ids/")
    assert get_request_id() is None


# --- settings that shape the metrics --------------------------------------------


@override_settings(OBSERVABILITY_METRICS_NAMESPACE="shop")
def test_namespace_prefixes_every_metric(http, samples):
    http.get("/boom/")
    assert samples.count("/boom/", status="500", prefix="shop_") == 1
    assert (
        samples.value(
            "shop_http_server_exceptions_total", route="/boom/", exception="tests.views.BoomError"
        )
        == 1
    )
    assert samples.value("shop_http_server_active_requests", method="GET") == 0
    assert samples.series(DURATION_COUNT) == []
    info = samples.series("shop_django_observability_build_info")
    assert len(info) == 1


@override_settings(OBSERVABILITY_METRICS_LATENCY_BUCKETS=[0.5, 2])
def test_latency_buckets_setting(http, samples):
    http.get("/")
    buckets = {
        labels["le"] for labels in samples.series("http_server_request_duration_seconds_bucket")
    }
    assert buckets == {"0.5", "2.0", "+Inf"}


@override_settings(OBSERVABILITY_METRICS_ENABLED=False)
def test_metrics_can_be_switched_off(http, samples):
    response = http.get("/ids/")
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    assert samples.series(DURATION_COUNT) == []


@override_settings(OBSERVABILITY_METRICS_NAMESPACE="9-bad name")
def test_invalid_setting_falls_back_to_default(http, samples, caplog):
    with caplog.at_level(logging.ERROR, logger="django_observability"):
        assert http.get("/").status_code == 200
    assert samples.count("/") == 1
    assert "OBSERVABILITY_METRICS_NAMESPACE" in caplog.text


def test_build_info(samples):
    import platform

    import django

    from django_observability import __version__

    SyncHTTP().get("/")
    (labels,) = samples.series("django_observability_build_info")
    assert labels == {
        "version": __version__,
        "django_version": django.get_version(),
        "python_version": platform.python_version(),
        "service_version": "",
    }


# --- never break the request ----------------------------------------------------


def test_fault_in_instrumentation_does_not_change_the_response(http, samples, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(Metrics, "observe", broken)
    faults.reset()  # a fault an earlier test logged would be logged at DEBUG only
    with caplog.at_level(logging.ERROR, logger="django_observability"):
        first = http.get("/created/")
        second = http.get("/created/")
    assert first.status_code == second.status_code == 201
    assert first.body == b"x" * 1500
    assert "X-Request-ID" in first
    assert samples.value("http_server_active_requests", method="GET") == 0
    # Logged once with its traceback, not once per request.
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info[1].args == ("instrumentation bug",)


def test_fault_at_start_does_not_change_the_response(http, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("start bug")

    monkeypatch.setattr(Metrics, "active_child", broken)
    response = http.get("/created/")
    assert response.status_code == 201
    assert response.body == b"x" * 1500


def test_middleware_is_natively_async():
    async def get_response(request):
        return None

    def sync_get_response(request):
        return None

    assert iscoroutinefunction(ObservabilityMiddleware(get_response))
    assert not iscoroutinefunction(ObservabilityMiddleware(sync_get_response))
    assert ObservabilityMiddleware.async_capable
    assert ObservabilityMiddleware.sync_capable


def test_cancelled_request_recorded_as_client_closed(samples):
    """Under ASGI a client that goes away cancels the view: 499, not an app exception."""
    import asyncio

    from asgiref.sync import async_to_sync
    from django.test import RequestFactory

    async def cancelled(request):
        raise asyncio.CancelledError

    middleware = ObservabilityMiddleware(cancelled)
    request = RequestFactory().get("/anything/")

    async def run():
        with pytest.raises(asyncio.CancelledError):
            await middleware(request)

    async_to_sync(run)()
    assert samples.count("<unmatched>", status="499") == 1
    assert samples.total(EXCEPTIONS) == 0
    assert samples.value("http_server_active_requests", method="GET") == 0
