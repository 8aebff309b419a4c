import logging

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.test import Client, override_settings
from prometheus_client import REGISTRY, generate_latest

from django_observability.audit import AuditEvent, audit_event, record_event, username_hmac
from tests.clients import AsyncHTTP, SyncHTTP

PASSWORD = "correct-horse-battery-staple-73"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def user():
    return User.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def audit(caplog):
    caplog.set_level(logging.DEBUG)
    return lambda: [r for r in caplog.records if r.name == "django_observability.audit"]


def field(record, name):
    return record.__dict__.get(name)


def everything_logged(caplog):
    return "\n".join(
        f"{r.getMessage()} {sorted((k, str(v)) for k, v in r.__dict__.items())}"
        for r in caplog.records
    )


# --- authentication -----------------------------------------------------------------


def test_login_logout_through_django_views(user, samples, audit, caplog):
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    client.post("/logout/")
    assert samples.value("auth_events_total", event="login") == 1
    assert samples.value("auth_events_total", event="logout") == 1
    login, logout = audit()
    assert field(login, "event.action") == "login"
    assert field(login, "event.outcome") == "success"
    assert field(login, "event.category") == "authentication"
    assert field(login, "user.id") == str(user.pk)
    assert field(login, "client.ip") == "127.0.0.1"
    assert field(login, "request_id") == response["X-Request-ID"]
    assert field(logout, "event.action") == "logout"
    assert field(logout, "user.id") == str(user.pk)
    # No username, no password, anywhere.
    logged = everything_logged(caplog)
    assert PASSWORD not in logged
    assert "alice" not in logged


@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong-password-1"), ("nobody", "wrong-password-2")]
)
def test_failed_login(user, samples, audit, caplog, username, password):
    response = Client().post("/login/", {"username": username, "password": password})
    assert response.status_code == 200  # the form again
    assert samples.value("auth_events_total", event="login_failed") == 1
    (record,) = audit()
    assert record.levelno == logging.WARNING
    assert field(record, "event.action") == "login_failed"
    assert field(record, "event.outcome") == "failure"
    assert field(record, "user.id") is None
    assert field(record, "user.hash") is None  # not logged unless opted in
    logged = everything_logged(caplog) + generate_latest(REGISTRY).decode()
    assert password not in logged
    assert username not in logged


@override_settings(OBSERVABILITY_AUDIT_LOG_USERNAMES=True)
def test_failed_login_username_as_keyed_hash(user, audit, caplog):
    Client().post("/login/", {"username": "alice", "password": "wrong-password-3"})
    (record,) = audit()
    assert field(record, "user.hash") == username_hmac("alice")
    assert len(field(record, "user.hash")) == 64
    assert "alice" not in everything_logged(caplog)
    with override_settings(SECRET_KEY="another-secret-key-entirely"):
        assert username_hmac("alice") != field(record, "user.hash")


def test_async_login_views(user, samples, audit, caplog):
    http = AsyncHTTP()
    assert (
        http.request(
            "POST", "/async-login/", data={"username": "alice", "password": "nope-4"}
        ).status_code
        == 401
    )
    ok = http.request("POST", "/async-login/", data={"username": "alice", "password": PASSWORD})
    assert ok.status_code == 200
    assert http.request("POST", "/async-logout/").status_code == 200
    assert samples.value("auth_events_total", event="login_failed") == 1
    assert samples.value("auth_events_total", event="login") == 1
    assert samples.value("auth_events_total", event="logout") == 1
    assert [field(r, "event.action") for r in audit()] == ["login_failed", "login", "logout"]
    assert field(audit()[1], "user.id") == str(user.pk)
    assert PASSWORD not in everything_logged(caplog)


@override_settings(OBSERVABILITY_AUTH_EVENTS=False)
def test_auth_events_can_be_switched_off(user, samples, audit):
    Client().post("/login/", {"username": "alice", "password": PASSWORD})
    assert samples.value("auth_events_total", event="login") is None
    assert audit() == []


# --- model changes ----------------------------------------------------------------


@override_settings(OBSERVABILITY_AUDIT_MODELS=["auth.Group", "auth.User"])
def test_model_changes(samples, audit):
    group = Group.objects.create(name="editors")
    group.name = "writers"
    group.save()
    pk = group.pk
    group.delete()
    Permission.objects.filter(codename="add_group").update(name="unaudited")  # not selected
    for action in ("create", "update", "delete"):
        assert samples.value("audit_events_total", action=action, target="auth.group") == 1
    created, updated, deleted = audit()
    assert field(created, "event.action") == "create"
    assert field(created, "event.category") == "database"
    assert field(created, "target.type") == "auth.group"
    assert field(created, "target.id") == str(pk)
    assert field(updated, "event.type") == "change"
    assert field(deleted, "event.type") == "deletion"


@override_settings(OBSERVABILITY_AUDIT_MODELS=["auth.*"])
def test_unselected_models_and_app_wildcards(samples, audit):
    Group.objects.create(name="g")
    with override_settings(OBSERVABILITY_AUDIT_MODELS=["sessions.*"]):
        Group.objects.create(name="h")
    assert samples.value("audit_events_total", action="create", target="auth.group") == 1


@override_settings(OBSERVABILITY_AUDIT_MODELS=["audit_models.Page"])
def test_a_selected_model_selects_its_subclasses(samples, audit):
    from tests.audit_models.models import BlogPage, DraftPage, NewsPage, Page, Unrelated

    saves = []

    def count_saves(sender, **kwargs):
        saves.append(sender)

    from django.db.models.signals import post_save

    post_save.connect(count_saves)
    try:
        page = Page.objects.create(title="home")
        blog = BlogPage.objects.create(title="blog")
        news = NewsPage.objects.create(title="news")
        draft = DraftPage.objects.create(title="draft")
        blog.body = "edited"
        blog.save()
        Unrelated.objects.create(name="not audited")
    finally:
        post_save.disconnect(count_saves)
    # One save, one record: a child's save sends post_save once, as the child.
    records = audit()
    assert len(records) == 5 == len(saves) - 1
    assert [(field(r, "event.action"), field(r, "target.type")) for r in records] == [
        ("create", "audit_models.page"),
        ("create", "audit_models.blogpage"),
        ("create", "audit_models.newspage"),
        ("create", "audit_models.draftpage"),
        ("update", "audit_models.blogpage"),
    ]
    assert [field(r, "target.id") for r in records] == [
        str(pk) for pk in (page.pk, blog.pk, news.pk, draft.pk, blog.pk)
    ]
    # The parent that selected a subclass is in the record; not when it is itself.
    assert [field(r, "target.audited_as") for r in records] == [None] + ["audit_models.page"] * 4
    for target in ("page", "blogpage", "newspage", "draftpage"):
        labels = {"action": "create", "target": f"audit_models.{target}"}
        assert samples.value("audit_events_total", **labels) == 1
    assert samples.value("audit_events_total", action="update", target="audit_models.blogpage") == 1


@override_settings(OBSERVABILITY_AUDIT_MODELS=["audit_models.Page"])
def test_deleting_a_subclass_is_one_record(samples, audit):
    from tests.audit_models.models import BlogPage, NewsPage, Page

    blog = BlogPage.objects.create(title="blog")
    news = NewsPage.objects.create(title="news")
    other = NewsPage.objects.create(title="other")
    page = Page.objects.create(title="page")
    ids = [str(obj.pk) for obj in (blog, news, other, page)]
    blog.delete()  # deletes its Page row too: Django sends post_delete for both
    NewsPage.objects.filter(pk=news.pk).delete()  # three rows, one page
    # As treebeard (Wagtail) does: the parent's queryset, the child's rows by cascade.
    Page.objects.filter(pk__in=[other.pk, page.pk]).delete()
    deletions = [r for r in audit() if field(r, "event.action") == "delete"]
    assert sorted((field(r, "target.type"), field(r, "target.id")) for r in deletions) == sorted(
        [
            ("audit_models.blogpage", ids[0]),
            ("audit_models.newspage", ids[1]),
            ("audit_models.newspage", ids[2]),
            ("audit_models.page", ids[3]),
        ]
    )
    assert samples.value("audit_events_total", action="delete", target="audit_models.page") == 1


@override_settings(OBSERVABILITY_AUDIT_MODELS=["audit_models.BlogPage"])
def test_a_selected_child_does_not_select_its_parent_or_siblings(samples, audit):
    from tests.audit_models.models import DraftPage, NewsPage, Page

    Page.objects.create(title="parent")
    DraftPage.objects.create(title="proxy of the parent")
    NewsPage.objects.create(title="grandchild")
    (record,) = audit()
    assert field(record, "target.type") == "audit_models.newspage"
    assert field(record, "target.audited_as") == "audit_models.blogpage"


@override_settings(OBSERVABILITY_AUDIT_MODELS=["audit_models.*"])
def test_the_selection_is_decided_again_when_the_setting_changes():
    from django.contrib.auth.models import User as AuthUser

    from django_observability.audit import selection
    from tests.audit_models.models import NewsPage

    assert selection.selected_by(NewsPage) == "audit_models.newspage"
    assert selection.selected_by(AuthUser) is None
    with override_settings(OBSERVABILITY_AUDIT_MODELS=["auth.Group"]):
        assert selection.selected_by(NewsPage) is None  # the cache was reset


@override_settings(OBSERVABILITY_AUDIT_MODELS=["auth.Group"])
def test_rolled_back_changes_are_not_audited(samples, audit):
    def doomed():
        with transaction.atomic():
            Group.objects.create(name="doomed")
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        doomed()
    with transaction.atomic():
        Group.objects.create(name="kept")
        assert audit() == []  # not before the commit
    assert samples.value("audit_events_total", action="create", target="auth.group") == 1
    assert len(audit()) == 1


@override_settings(OBSERVABILITY_AUDIT_MODELS=["auth.User"])
def test_login_is_not_a_user_update(user, samples, audit):
    Client().post("/login/", {"username": "alice", "password": PASSWORD})
    assert samples.value("audit_events_total", action="update", target="auth.user") is None
    assert [field(r, "event.action") for r in audit()] == ["login"]


@override_settings(OBSERVABILITY_AUDIT_MODELS=["auth.Group"])
def test_acting_user_inside_a_request(user, audit):
    for http in (SyncHTTP(), AsyncHTTP()):
        http.client.force_login(user)
        assert http.request("POST", "/groups/", data={"name": f"g-{http.mode}"}).status_code == 201
    records = [r for r in audit() if field(r, "event.action") == "create"]
    assert [field(r, "user.id") for r in records] == [str(user.pk), str(user.pk)]
    assert all(field(r, "request_id") for r in records)


# --- security events --------------------------------------------------------------


def test_permission_denied(samples, audit):
    for http in (SyncHTTP(), AsyncHTTP()):
        assert http.get("/forbidden/").status_code == 403
    assert samples.value("security_events_total", type="permission_denied") == 2
    assert [field(r, "event.action") for r in audit()] == ["permission_denied"] * 2


def test_suspicious_operation(samples, audit):
    assert SyncHTTP().get("/suspicious/").status_code == 400
    assert samples.value("security_events_total", type="suspicious_operation") == 1


def test_disallowed_host(samples, audit):
    response = Client().get("/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert samples.value("security_events_total", type="disallowed_host") == 1
    (record,) = audit()
    assert field(record, "event.outcome") == "failure"
    assert field(record, "request_id") == response["X-Request-ID"]


@override_settings(
    LOGGING_CONFIG=None,
    MIDDLEWARE=[
        "django_observability.middleware.ObservabilityMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
)
def test_csrf_failure(samples, audit):
    client = Client(enforce_csrf_checks=True)
    assert client.post("/csrf/").status_code == 403
    assert samples.value("security_events_total", type="csrf_failure") == 1


def test_silenced_security_loggers_still_count(samples):
    # A common recipe silences DisallowedHost; the event is still counted once.
    silenced = logging.getLogger("django.security.DisallowedHost")
    silenced.propagate = False
    try:
        Client().get("/", HTTP_HOST="evil.example")
    finally:
        silenced.propagate = True
    assert samples.value("security_events_total", type="disallowed_host") == 1


def test_counted_after_logging_is_configured_again(samples):
    """A later dictConfig resets the handlers of django.security's children: still counted."""
    import logging.config

    from django_observability import audit

    parent = logging.getLogger("django.security")
    saved = (parent.level, list(parent.handlers))
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {"django.security": {"handlers": [], "level": "INFO"}},
        }
    )
    try:
        Client().get("/", HTTP_HOST="evil.example")
        Client().get("/suspicious/")
    finally:
        parent.setLevel(saved[0])
        parent.handlers = saved[1]
        audit.install()
    assert samples.value("security_events_total", type="disallowed_host") == 1
    assert samples.value("security_events_total", type="suspicious_operation") == 1


def test_unknown_security_loggers_fall_back_to_the_parent(samples):
    logging.getLogger("django.security.ThirdPartySuspicious").error("odd upload")
    assert samples.value("security_events_total", type="suspicious_operation") == 1


@override_settings(OBSERVABILITY_SECURITY_EVENTS=False)
def test_security_events_can_be_switched_off(samples):
    Client().get("/forbidden/")
    assert samples.series("security_events_total") == []


# --- record_event and the signal ---------------------------------------------------


def test_record_event_and_signal(user, samples, audit):
    received = []

    def receiver(sender, event, **kwargs):
        received.append((sender, event))

    def broken(sender, event, **kwargs):
        raise RuntimeError("a receiver bug")

    audit_event.connect(receiver)
    audit_event.connect(broken)
    try:
        event = record_event(
            "export", target=user, actor=user, rows=12, api_key="sk-live-should-not-appear"
        )
    finally:
        audit_event.disconnect(receiver)
        audit_event.disconnect(broken)
    assert samples.value("audit_events_total", action="export", target="auth.user") == 1
    assert received == [(AuditEvent, event)]
    assert event.target_id == str(user.pk)
    assert event.actor_id == str(user.pk)
    (record,) = audit()
    assert field(record, "rows") == 12


def test_custom_labels_are_capped(samples):
    for i in range(60):
        record_event(f"custom-action-{i}", target=f"thing-{i}")
    actions = {labels["action"] for labels in samples.series("audit_events_total")}
    targets = {labels["target"] for labels in samples.series("audit_events_total")}
    assert len(actions) == 51
    assert "_other" in actions
    assert len(targets) == 51
    assert samples.total("audit_events_total") == 60
