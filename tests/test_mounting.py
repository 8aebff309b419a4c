"""Where the app's URLs are mounted, and what answers them there (``mounting.py``)."""

import pytest
from django.test import Client, override_settings

from django_observability import mounting, views
from django_observability.health import views as health
from tests import urls_catch_all

OWN = {
    "/metrics": "metrics",
    "/health/": "report",
    "/health/live/": "live",
    "/health/ready/": "ready",
}


def paths(urlconf):
    with override_settings(ROOT_URLCONF=urlconf):
        return {m.path: (m.kind, m.is_shadowed) for m in mounting.mounts()}


def test_the_test_projects_mount_answers_each_url():
    found = mounting.mounts()
    assert {m.path: m.kind for m in found} == OWN
    assert not any(m.is_shadowed for m in found)
    assert {m.view for m in found} == {views.metrics, health.report, health.live, health.ready}


def test_a_catch_all_before_the_include_shadows_every_url():
    assert paths(urls_catch_all.CatchAllFirst) == {p: (k, True) for p, k in OWN.items()}
    with override_settings(ROOT_URLCONF=urls_catch_all.CatchAllFirst):
        (report,) = [m for m in mounting.shadowed() if m.kind == "report"]
    assert report.answered_by is urls_catch_all.catch_all
    assert report.answered_by_name == "catch-all"
    assert mounting.view_name(report.answered_by) == "tests.urls_catch_all.catch_all"


def test_the_shadowing_is_real(db):
    with override_settings(ROOT_URLCONF=urls_catch_all.CatchAllFirst):
        response = Client().get("/health/")
    assert response.status_code == 404
    assert response.content == b"no page at 'health/'"


def test_a_catch_all_after_the_include_shadows_nothing():
    assert paths(urls_catch_all.CatchAllLast) == {p: (k, False) for p, k in OWN.items()}


def test_nothing_found_when_not_mounted():
    assert paths(urls_catch_all.NotMounted) == {}


def test_prefixes_are_followed_and_only_matching_paths_are_shadowed():
    assert paths(urls_catch_all.PrefixedAfterCatchAll) == {
        "/ops/metrics": ("metrics", False),
        "/ops/health/": ("report", True),
        "/ops/health/live/": ("live", True),
        "/ops/health/ready/": ("ready", True),
    }


def test_a_prefix_with_parameters_has_no_single_path():
    assert paths(urls_catch_all.UnderParameter) == {}


@override_settings(LANGUAGE_CODE="en", USE_I18N=True)
def test_language_prefixes_and_views_mounted_directly():
    assert paths(urls_catch_all.Localized) == {
        **{"/en" + p: (k, False) for p, k in OWN.items()},
        "/direct/metrics": ("metrics", False),
    }


@pytest.mark.parametrize(
    ("view", "name"),
    [
        (urls_catch_all.catch_all, "tests.urls_catch_all.catch_all"),
        (None, "no view"),
    ],
)
def test_view_names(view, name):
    assert mounting.view_name(view) == name


def test_class_based_views_are_named_by_their_class():
    from django.views.generic import TemplateView

    assert mounting.view_name(TemplateView.as_view()) == "django.views.generic.base.TemplateView"
