"""Probes and scrapes answered by the middleware before the rest of the stack (``probes.py``)."""

import logging

import pytest
from django.test import RequestFactory, override_settings
from prometheus_client.parser import text_string_to_metric_families

from django_observability import faults, probes
from tests.clients import AsyncHTTP, SyncHTTP

PROBES = {"/health/live/": "live", "/health/ready/": "ready"}
OWN = {**PROBES, "/health/": "report", "/metrics": "metrics"}
TOKEN = {"Authorization": "Bearer test-token-0123456789"}
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


def test_probe_paths_are_the_live_ready_and_metrics_urls():
    assert probes.probe_paths(OWN) == {**PROBES, "/metrics": "metrics"}
    with override_settings(OBSERVABILITY_METRICS_IN_MIDDLEWARE=False):
        assert probes.probe_paths(OWN) == PROBES
    with override_settings(OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE=False):
        assert probes.probe_paths(OWN) == {"/metrics": "metrics"}


def test_only_get_and_head_of_a_probe_url_are_answered_here():
    rf = RequestFactory()
    assert probes.probe_kind(rf.get("/health/live/"), PROBES) == "live"
    assert probes.probe_kind(rf.head("/health/ready/"), PROBES) == "ready"
    assert probes.probe_kind(rf.post("/health/live/"), PROBES) is None
    assert probes.probe_kind(rf.get("/health/"), PROBES) is None


def test_a_fault_lets_the_view_answer(monkeypatch, caplog):
    def broken(request, kind):
        raise RuntimeError("probe bug")

    monkeypatch.setattr(probes, "answer_probe", broken)
    faults.reset()
    with caplog.at_level(logging.ERROR, logger="django_observability"):
        response = SyncHTTP().get("/health/live/")
    assert response.status_code == 200  # from the view
    assert response["Content-Type"] == "application/health+json"
    assert [r.exc_info[1].args for r in caplog.records] == [("probe bug",)]


@override_settings(OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE=False)
def test_probes_in_the_middleware_can_be_switched_off(monkeypatch):
    def unexpected(request, kind):
        raise AssertionError("answered by the middleware")

    monkeypatch.setattr(probes, "answer_probe", unexpected)
    assert SyncHTTP().get("/health/live/").status_code == 200


# --- /metrics in a hardened deployment: scraped by pod IP over plain HTTP ------------

POD = {"Host": "10.1.2.3:8000"}
hardened = override_settings(
    ALLOWED_HOSTS=["example.com"],
    SECURE_SSL_REDIRECT=True,
    MIDDLEWARE=[
        "django_observability.middleware.ObservabilityMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
    ],
)


@hardened
def test_metrics_scraped_by_pod_ip_over_http(http):
    response = http.get("/metrics", headers={**POD, **TOKEN})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(response.body.decode())}
    assert "django_observability_build_info" in names
    assert response["Content-Length"] == str(len(response.body))
    assert len(response["X-Request-ID"]) == 32
    openmetrics = http.get("/metrics", headers={**POD, **TOKEN, "Accept": OPENMETRICS})
    assert openmetrics.status_code == 200
    assert openmetrics["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.body.decode().endswith("# EOF\n")
    head = http.request("HEAD", "/metrics", headers={**POD, **TOKEN})
    assert head.status_code == 200
    assert head.body == b""


@hardened
def test_metrics_early_answer_is_as_protected_as_the_view(http):
    missing = http.get("/metrics", headers=POD)
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="django-observability"'
    wrong = http.get("/metrics", headers={**POD, "Authorization": "Bearer test-token-0123456788"})
    assert wrong.status_code == 403
    hostile = http.get("/metrics", headers={**POD, "Authorization": "Bearer " + "x" * 5000})
    assert hostile.status_code == 401
    assert b"build_info" not in missing.body + wrong.body + hostile.body
    # Other methods are not answered early: Django refuses the pod's Host as before.
    assert http.request("POST", "/metrics", headers={**POD, **TOKEN}).status_code == 400


@hardened
@override_settings(OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE=False)
def test_metrics_early_answer_does_not_depend_on_the_probes_setting(http):
    # Each opt-out is its own: the probes off, /metrics is still answered early.
    assert http.get("/metrics", headers={**POD, **TOKEN}).status_code == 200
    assert http.get("/health/live/", headers=POD).status_code == 400


@hardened
@override_settings(OBSERVABILITY_AUTH_TOKEN=None, OBSERVABILITY_ALLOWED_IPS=["10.0.0.0/8"])
def test_metrics_early_answer_by_allowed_address():
    assert SyncHTTP(REMOTE_ADDR="10.9.8.7").get("/metrics", headers=POD).status_code == 200
    assert SyncHTTP(REMOTE_ADDR="192.0.2.1").get("/metrics", headers=POD).status_code == 403


@hardened
def test_metrics_early_answer_has_the_views_headers(http):
    early = http.get("/metrics", headers={**POD, **TOKEN, "Accept-Encoding": "gzip"})
    with override_settings(OBSERVABILITY_METRICS_IN_MIDDLEWARE=False):
        # The view, reached the way Django allows (the async test client cannot
        # replace its Host header, so through the sync one).
        view = SyncHTTP().get(
            "/metrics",
            headers={"Host": "example.com", **TOKEN, "Accept-Encoding": "gzip"},
            secure=True,
        )
    assert early.status_code == view.status_code == 200
    for header in ("Content-Type", "Content-Encoding", "Vary", "Cache-Control", "Expires"):
        assert (header in early) == (header in view), header
        if header != "Expires":
            assert early[header] == view[header], header


@hardened
@override_settings(OBSERVABILITY_METRICS_IN_MIDDLEWARE=False)
def test_metrics_in_the_middleware_can_be_switched_off(http):
    assert http.get("/metrics", headers={**POD, **TOKEN}).status_code == 400
    over_http = SyncHTTP().get("/metrics", headers={"Host": "example.com", **TOKEN})
    assert over_http.status_code == 301
    assert over_http["Location"] == "https://example.com/metrics"
    # The probes are still answered early.
    assert http.get("/health/live/", headers=POD).status_code == 200


def test_a_fault_in_the_early_scrape_lets_the_view_answer(monkeypatch, caplog, http):
    calls = []

    def broken(request):
        calls.append(request.path)
        if len(calls) == 1:
            raise RuntimeError("scrape bug")
        return real(request)

    real = probes.answer_scrape
    monkeypatch.setattr(probes, "answer_scrape", broken)
    faults.reset()
    with caplog.at_level(logging.ERROR, logger="django_observability"):
        response = http.get("/metrics", headers=TOKEN)
    assert response.status_code == 200  # from the view
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert [r.exc_info[1].args for r in caplog.records] == [("scrape bug",)]
