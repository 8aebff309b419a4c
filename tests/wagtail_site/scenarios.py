"""What the app records on a real Wagtail site: run by tests/test_wagtail.py in a subprocess.

``pytest tests/wagtail_site/scenarios.py --ds=tests.wagtail_site.settings``
(not collected by the main suite: its file name does not start with test_).
"""

import json
import logging

import pytest
from django.db.models.signals import post_save
from django.test import Client
from wagtail.models import Page, Site

from django_observability.logging import JsonFormatter
from tests.wagtail_site.models import BlogPage, EventPage

pytestmark = pytest.mark.django_db


@pytest.fixture
def records(caplog):
    caplog.set_level(logging.INFO)
    formatter = JsonFormatter()
    return lambda name: [json.loads(formatter.format(r)) for r in caplog.records if r.name == name]


@pytest.fixture
def home():
    return Site.objects.get(is_default_site=True).root_page


@pytest.fixture
def page_saves():
    """Every post_save Django sends for a page, by sender label."""
    saves = []

    def receiver(sender, **kwargs):
        if issubclass(sender, Page):
            saves.append(sender._meta.label_lower)

    post_save.connect(receiver)
    yield saves
    post_save.disconnect(receiver)


def model_records(records):
    audit = records("django_observability.audit")
    return [r for r in audit if r["event"]["category"] == "database"]


def test_publishing_a_page_subclass_is_audited(
    home, records, samples, page_saves, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        blog = home.add_child(instance=BlogPage(title="Hello", slug="hello", live=False))
        blog.body = "draft"
        revision = blog.save_revision()
        revision.publish()
    audited = model_records(records)
    # One save, one record: Wagtail saved the page a few times, each is audited once.
    assert len(audited) == len(page_saves) >= 2
    assert {r["target"]["type"] for r in audited} == {"wagtail_site.blogpage"}
    assert {r["target"]["id"] for r in audited} == {str(blog.pk)}
    assert {r["target"]["audited_as"] for r in audited} == {"wagtailcore.page"}
    actions = [r["event"]["action"] for r in audited]
    assert actions[0] == "create"
    assert "update" in actions
    assert samples.value("audit_events_total", action="create", target="wagtail_site.blogpage") == 1


def test_deleting_a_page_is_one_record(home, records, django_capture_on_commit_callbacks):
    event = home.add_child(instance=EventPage(title="Fair", slug="fair"))
    with django_capture_on_commit_callbacks(execute=True):
        event.delete()
    deletions = [r for r in model_records(records) if r["event"]["action"] == "delete"]
    assert [r["target"]["type"] for r in deletions] == ["wagtail_site.eventpage"]


def test_pages_are_route_series_by_type(home, samples, records):
    home.add_child(instance=BlogPage(title="One", slug="one"))
    home.add_child(instance=BlogPage(title="Two", slug="two"))
    home.add_child(instance=EventPage(title="Fair", slug="fair"))
    client = Client()
    for path in ("/one/", "/two/", "/fair/"):
        assert client.get(path).status_code == 200
    assert client.get("/no-such-page/").status_code == 404
    assert samples.count("page:wagtail_site.blogpage") == 2
    assert samples.count("page:wagtail_site.eventpage") == 1
    routes = [line["http"]["route"] for line in records("django_observability.access")]
    assert routes[:3] == ["page:wagtail_site.blogpage"] * 2 + ["page:wagtail_site.eventpage"]
    # No page, no hook: the 404 keeps Wagtail's URL pattern.
    assert routes[3] == "/((?:[\\w\\-]+/)*)"
    assert samples.count("/((?:[\\w\\-]+/)*)", status="404") == 1


def test_the_app_urls_answer_before_the_catch_all():
    client = Client()
    assert client.get("/health/live/").status_code == 200
    response = client.get("/metrics", headers={"Authorization": "Bearer test-token-0123456789"})
    assert response.status_code == 200
    assert b"http_server_request_duration_seconds" in response.content


def test_an_editor_publishing_in_the_admin_is_audited(
    home, records, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import User

    editor = User.objects.create_superuser("editor", password="editor-pw-value-3")
    client = Client()
    client.force_login(editor)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/admin/pages/add/wagtail_site/blogpage/{home.pk}/",
            {
                "title": "From the admin",
                "slug": "from-the-admin",
                "body": "published by an editor",
                "action-publish": "action-publish",
                "comments-TOTAL_FORMS": "0",
                "comments-INITIAL_FORMS": "0",
                "comments-MIN_NUM_FORMS": "0",
                "comments-MAX_NUM_FORMS": "1000",
            },
        )
    assert response.status_code == 302, response.content[:2000]
    page = BlogPage.objects.get(slug="from-the-admin")
    assert page.live
    audited = model_records(records)
    assert audited
    assert {r["target"]["type"] for r in audited} == {"wagtail_site.blogpage"}
    assert {r["user"]["id"] for r in audited} == {str(editor.pk)}
    assert {r["target"]["id"] for r in audited} == {str(page.pk)}
