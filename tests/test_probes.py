"""Probes answered by the middleware before the rest of the stack (``probes.py``)."""

import logging

from django.test import RequestFactory, override_settings

from django_observability import faults, probes
from tests.clients import SyncHTTP

PROBES = {"/health/live/": "live", "/health/ready/": "ready"}


def test_probe_paths_are_the_live_and_ready_urls():
    own = {"/health/live/": "live", "/health/ready/": "ready", "/health/": "report"}
    assert probes.probe_paths({**own, "/metrics": "metrics"}) == PROBES


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
