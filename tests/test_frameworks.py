"""Real Django REST framework and django-ninja APIs: their users and their refusals.

The endpoints are in tests/framework_apis.py, mounted under /frameworks/.
"""

import base64
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token

from django_observability.frameworks import drf_refusal, install, ninja_refusal
from django_observability.logging import JsonFormatter
from tests.clients import AsyncHTTP, SyncHTTP

PASSWORD = "framework-pw-value-91"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


@pytest.fixture
def user():
    return User.objects.create_user("dora", password=PASSWORD)


@pytest.fixture
def token(user):
    return Token.objects.create(user=user).key


@pytest.fixture
def records(caplog):
    """Records of a logger, the access log's as the JSON formatter writes them."""
    caplog.set_level(logging.INFO)
    formatter = JsonFormatter()

    def get(name):
        return [json.loads(formatter.format(r)) for r in caplog.records if r.name == name]

    return get


def access_users(records):
    return [line.get("user", {}).get("id") for line in records("django_observability.access")]


def basic(username, password):
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def security_total(samples):
    return samples.total("security_events_total")


# --- the user the request ended with ---------------------------------------------------------


@pytest.mark.parametrize("scheme", ["token", "basic"])
def test_drf_authenticated_user_in_the_access_line(http, user, token, records, scheme):
    authorization = f"Token {token}" if scheme == "token" else basic("dora", PASSWORD)
    response = http.get("/frameworks/drf/me/", headers={"Authorization": authorization})
    assert response.status_code == 200
    assert json.loads(response.body) == {"user": user.pk}
    assert access_users(records) == [str(user.pk)]


@pytest.mark.parametrize("path", ["/frameworks/ninja/me", "/frameworks/ninja/async-me"])
def test_ninja_authenticated_user_in_the_access_line(http, user, token, records, path):
    response = http.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert json.loads(response.body) == {"user": user.pk}
    assert access_users(records) == [str(user.pk)]


@override_settings(OBSERVABILITY_AUDIT_MODELS=["auth.Group"])
@pytest.mark.parametrize(
    ("path", "form"),
    [("/frameworks/drf/me/", {"name": "d"}), ("/frameworks/ninja/groups?name=n", None)],
)
def test_audit_record_and_access_line_agree(http, user, token, records, path, form):
    headers = {"Authorization": f"Token {token}" if "drf" in path else f"Bearer {token}"}
    response = http.request("POST", path, data=form, headers=headers)
    assert response.status_code == 201
    (audited,) = records("django_observability.audit")
    assert audited["event"]["action"] == "create"
    assert audited["user"]["id"] == str(user.pk)
    assert access_users(records) == [str(user.pk)]


def test_anonymous_api_request_has_no_user(http, records):
    assert http.get("/frameworks/drf/me/").status_code in (401, 403)
    assert access_users(records) == [None]


# --- refusals as security events ---------------------------------------------------------------


def test_drf_permission_denied(http, user, token, samples, records):
    response = http.get("/frameworks/drf/staff/", headers={"Authorization": f"Token {token}"})
    assert response.status_code == 403
    assert json.loads(response.body) == {
        "detail": "You do not have permission to perform this action."
    }
    assert samples.value("security_events_total", type="permission_denied") == 1
    assert security_total(samples) == 1
    (event,) = records("django_observability.audit")
    assert event["event"]["action"] == "permission_denied"
    assert event["user"]["id"] == str(user.pk)


def test_drf_answering_django_permission_denied_counts_once(http, samples):
    response = http.get("/frameworks/drf/django-denied/")
    assert response.status_code == 403
    assert json.loads(response.body) == {"detail": "not for you"}
    assert samples.value("security_events_total", type="permission_denied") == 1
    assert security_total(samples) == 1


def declining_handler(exc, context):
    """A project's DRF exception handler that leaves Django's exceptions to Django."""
    return None


@override_settings(REST_FRAMEWORK={"EXCEPTION_HANDLER": "tests.test_frameworks.declining_handler"})
def test_drf_refusal_left_to_django_counts_once(http, samples):
    # DRF re-raises; Django answers 403 and logs it, which counts it.
    assert http.get("/frameworks/drf/django-denied/").status_code == 403
    assert samples.value("security_events_total", type="permission_denied") == 1
    assert security_total(samples) == 1


def test_drf_csrf_failure_with_session_authentication(user, samples):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/frameworks/drf/me/", {"name": "x"})
    assert response.status_code == 403
    assert response.json()["detail"].startswith("CSRF Failed:")
    assert samples.value("security_events_total", type="csrf_failure") == 1
    assert security_total(samples) == 1


def test_authentication_failures_are_not_security_events(http, user, token, samples):
    # With SessionAuthentication first DRF answers them 403, not 401: still not refusals.
    bad_token = http.get("/frameworks/drf/me/", headers={"Authorization": "Token nope"})
    assert bad_token.status_code == 403
    assert json.loads(bad_token.body) == {"detail": "Invalid token."}
    bad_password = http.get(
        "/frameworks/drf/me/", headers={"Authorization": basic("dora", "wrong")}
    )
    assert bad_password.status_code == 403
    assert json.loads(bad_password.body) == {"detail": "Invalid username/password."}
    ninja = http.get("/frameworks/ninja/me", headers={"Authorization": "Bearer nope"})
    assert ninja.status_code == 401
    assert security_total(samples) == 0
    # A password checked by Django's authenticate() is a failed login.
    assert samples.value("auth_events_total", event="login_failed") == 1


def test_ninja_authorization_error(http, token, samples):
    response = http.get("/frameworks/ninja/forbidden", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert json.loads(response.body) == {"detail": "Forbidden"}
    assert samples.value("security_events_total", type="permission_denied") == 1
    assert security_total(samples) == 1


def test_ninja_django_permission_denied_counts_once(http, samples):
    # Ninja's default handler re-raises it (DEBUG off): Django answers and logs it.
    assert http.get("/frameworks/ninja/django-denied").status_code == 403
    assert samples.value("security_events_total", type="permission_denied") == 1
    assert security_total(samples) == 1


def test_ninja_csrf_failure_with_session_authentication(user, samples):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/frameworks/ninja/session")
    assert response.status_code == 403
    assert response.json() == {"detail": "CSRF check Failed"}
    assert samples.value("security_events_total", type="csrf_failure") == 1
    assert security_total(samples) == 1


# --- the mechanism ---------------------------------------------------------------------------


def test_refusal_types():
    from django.core.exceptions import PermissionDenied
    from ninja.errors import AuthenticationError, AuthorizationError, HttpError
    from rest_framework import exceptions

    assert drf_refusal(exceptions.PermissionDenied()) == "permission_denied"
    assert drf_refusal(exceptions.PermissionDenied("CSRF Failed: x")) == "csrf_failure"
    assert drf_refusal(PermissionDenied()) == "permission_denied"
    assert drf_refusal(exceptions.NotAuthenticated()) is None
    assert drf_refusal(exceptions.AuthenticationFailed()) is None
    assert drf_refusal(exceptions.NotFound()) is None
    assert ninja_refusal(AuthorizationError()) == "permission_denied"
    assert ninja_refusal(PermissionDenied()) == "permission_denied"
    assert ninja_refusal(AuthenticationError()) is None
    assert ninja_refusal(HttpError(403, "CSRF check Failed")) is None  # Django logged it


def test_installed_once(http, token, samples):
    install()
    install()
    http.get("/frameworks/drf/staff/", headers={"Authorization": f"Token {token}"})
    http.get("/frameworks/ninja/forbidden", headers={"Authorization": f"Bearer {token}"})
    assert samples.value("security_events_total", type="permission_denied") == 2


@override_settings(OBSERVABILITY_SECURITY_EVENTS=False)
def test_switched_off_with_security_events(http, token, samples):
    assert http.get("/frameworks/drf/staff/", headers={"Authorization": f"Token {token}"})
    assert security_total(samples) == 0


# --- installing without importing the frameworks -------------------------------------


def test_ready_does_not_import_the_frameworks_and_wraps_them_when_imported():
    # A project with DRF and ninja installed pays for neither until it imports them.
    code = textwrap.dedent(
        """
        import sys
        import django
        from django.conf import settings

        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                            "django_observability"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        )
        django.setup()
        print(sorted(m for m in ("rest_framework.views", "ninja", "pydantic") if m in sys.modules))
        from ninja import NinjaAPI
        from rest_framework.views import APIView

        print(hasattr(APIView.handle_exception, "_observability_wrapped"),
              hasattr(NinjaAPI.on_exception, "_observability_wrapped"))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True True"]
