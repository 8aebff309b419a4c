import json
import os
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings

from django_observability.health import Component, registry
from django_observability.health.runner import runner
from django_observability.version import __version__
from tests import health_checks
from tests.clients import AsyncHTTP, SyncHTTP

H = "tests.health_checks."
TOKEN = {"Authorization": "Bearer test-token-0123456789"}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_health(tmp_path, settings):
    settings.OBSERVABILITY_HEALTH_DRAIN_FILE = str(tmp_path / "draining")
    runner.clear()
    registry.reset()
    health_checks.release.clear()
    health_checks.slow_starts.clear()
    yield
    health_checks.release.set()
    runner.clear()


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


def body(response):
    return json.loads(response.body)


def checks(**named):
    return override_settings(
        OBSERVABILITY_HEALTH_CHECKS={
            k: (H + v if isinstance(v, str) and "." not in v else v) for k, v in named.items()
        },
        OBSERVABILITY_HEALTH_READINESS_CHECKS=list(named),
    )


# --- the endpoints ------------------------------------------------------------------


def test_liveness_runs_no_checks(http):
    with checks(bad="broken"):
        response = http.get("/health/live/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/health+json"
    assert body(response) == {"status": "pass"}
    authorized = http.get("/health/live/", headers=TOKEN)
    assert body(authorized) == {"status": "pass", "serviceId": "tests", "description": "liveness"}


def test_default_checks_pass(http):
    response = http.get("/health/", headers=TOKEN)
    assert response.status_code == 200
    data = body(response)
    assert data["status"] == "pass"
    assert set(data["checks"]) == {
        "database",
        "cache",
        "migrations",
        "disk",
        "memory",
        "metrics_store",
    }
    (database,) = data["checks"]["database"]
    assert database["componentId"] == "default"
    assert database["status"] == "pass"
    assert database["observedUnit"] == "ms"
    assert "time" in database
    assert set(data["system"]) >= {"cpu", "memory", "disk"}
    ready = body(http.get("/health/ready/"))
    assert set(ready["checks"]) == {"database", "cache", "migrations"}


def test_status_codes_and_results(http):
    with checks(a="ok", n="number", w="warn", c="Configurable"):
        response = http.get("/health/ready/", headers=TOKEN)
        assert response.status_code == 200
        data = body(response)
        assert data["status"] == "warn"
        assert data["checks"]["n"] == [
            {"status": "pass", "observedValue": 42.5, "time": data["checks"]["n"][0]["time"]}
        ]
        assert data["checks"]["w"][0]["output"] == "disk getting full"
        assert [c["componentId"] for c in data["checks"]["c"]] == ["one", "two"]
    with checks(a="ok", b="broken"):
        assert http.get("/health/ready/").status_code == 503


@pytest.mark.parametrize(
    ("check", "status", "output"),
    [
        ("async_number", "pass", None),
        ("async_broken", "fail", f"ValueError: {health_checks.SECRET}"),
        ("refused", "fail", "upstream refused"),
        ("falsy", "fail", None),
        (("tests.health_checks.with_options", {"multiplier": 5}), "pass", None),
        (("tests.health_checks.Configurable", {"level": "warn"}), "warn", None),
        (("tests.health_checks.NotACheck", {"value": 9}), "pass", None),
    ],
)
def test_kinds_of_checks(http, check, status, output):
    with checks(x=check):
        data = body(http.get("/health/", headers=TOKEN))
    assert data["checks"]["x"][0]["status"] == status
    assert data["checks"]["x"][0].get("output") == output


def test_observed_values_of_callables_and_classes(http):
    with checks(a="async_number", o=("tests.health_checks.with_options", {"multiplier": 5})):
        data = body(http.get("/health/", headers=TOKEN))
    assert data["checks"]["a"][0]["observedValue"] == 7
    assert data["checks"]["o"][0]["observedValue"] == 10


def test_unloadable_check_fails_and_is_a_system_check_error(http):
    from django.core.checks import run_checks

    with checks(gone="does_not_exist"):
        data = body(http.get("/health/", headers=TOKEN))
        ids = [m.id for m in run_checks()]
    assert data["checks"]["gone"][0]["status"] == "fail"
    assert "could not be loaded" in data["checks"]["gone"][0]["output"]
    assert "django_observability.E039" in ids


def test_methods_and_headers(http):
    response = http.get("/health/ready/")
    assert "no-store" in response["Cache-Control"]
    assert http.request("HEAD", "/health/").status_code == 200
    assert http.request("HEAD", "/health/ready/").status_code == 200
    assert http.request("POST", "/health/").status_code == 405
    assert http.request("POST", "/health/ready/").status_code == 405


@pytest.mark.parametrize("path", ["/health/live/", "/health/ready/", "/health/"])
def test_every_answer_has_a_request_id_and_a_length(http, path):
    # /health/live/ and /health/ready/ are answered by the middleware itself.
    response = http.get(path, headers={"X-Request-ID": "probe-1"})
    assert response["X-Request-ID"] == "probe-1"
    assert response["Content-Length"] == str(len(response.body))
    fresh = http.get(path)
    assert len(fresh["X-Request-ID"]) == 32


@pytest.mark.parametrize("kind", ["live", "ready", "report"])
def test_head_gets_the_headers_of_get_and_no_body(rf, kind):
    from django_observability.health.views import answer_probe, report

    def answer(method):
        request = rf.generic(method, "/health/")
        if kind == "report":
            return async_to_sync(report)(request)
        return answer_probe(request, kind)

    get, head = answer("GET"), answer("HEAD")
    assert get.content
    assert head.content == b""
    assert head["Content-Length"] == get["Content-Length"] == str(len(get.content))
    assert head["Content-Type"] == get["Content-Type"]


# --- details: who sees output -------------------------------------------------------


def _leaks(response):
    text = getattr(response, "body", response.content).decode()
    return health_checks.SECRET in text or "RuntimeError" in text


@pytest.mark.parametrize("path", ["/health/", "/health/ready/", "/health/?verbose"])
def test_no_details_for_anonymous_callers(http, path):
    with checks(bad="broken", w="warn"):
        authorized = http.get(path, headers=TOKEN)
        anonymous = http.get(path)  # served from the result cache
        text = http.get(path, headers={"Accept": "text/plain"})
    assert _leaks(authorized)
    assert not _leaks(anonymous)
    assert not _leaks(text)
    assert b"disk getting full" not in anonymous.body
    assert anonymous.status_code == 503


def test_details_for_staff_users():
    User.objects.create_user("staff", password="pw", is_staff=True)
    User.objects.create_user("plain", password="pw")
    with checks(bad="broken"):
        for http in (SyncHTTP(), AsyncHTTP()):
            http.client.login(username="staff", password="pw")
            assert _leaks(http.get("/health/"))
            http.client.login(username="plain", password="pw")
            assert not _leaks(http.get("/health/"))


@override_settings(OBSERVABILITY_AUTH_TOKEN=None, OBSERVABILITY_ALLOWED_IPS=["10.0.0.0/8"])
def test_details_for_allowed_addresses():
    with checks(bad="broken"):
        assert _leaks(Client().get("/health/", REMOTE_ADDR="10.0.0.1"))
        assert not _leaks(Client().get("/health/", REMOTE_ADDR="192.0.2.1"))


@override_settings(
    OBSERVABILITY_AUTH_TOKEN=None,
    OBSERVABILITY_ALLOWED_IPS=["10.0.0.0/8"],
    OBSERVABILITY_TRUSTED_PROXIES=["127.0.0.1"],
)
def test_forwarded_address_from_a_trusted_proxy():
    client = Client()
    with checks(bad="broken"):
        via_proxy = client.get("/health/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.1.1")
        spoofed = client.get("/health/", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="10.1.1.1")
        chained = client.get(
            "/health/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.1.1, 192.0.2.1"
        )
    assert _leaks(via_proxy)
    assert not _leaks(spoofed)  # not from a trusted proxy: header ignored
    assert not _leaks(chained)  # the nearest untrusted hop is 192.0.2.1


@pytest.mark.parametrize(("policy", "anonymous_sees"), [("always", True), ("never", False)])
def test_show_details_policy(http, policy, anonymous_sees):
    with override_settings(OBSERVABILITY_HEALTH_SHOW_DETAILS=policy), checks(bad="broken"):
        assert _leaks(http.get("/health/")) is anonymous_sees
        assert _leaks(http.get("/health/", headers=TOKEN)) is anonymous_sees


def test_verbose_text(http):
    with checks(a="ok", w="warn", bad="broken", c="Configurable"):
        anonymous = http.get("/health/ready/?verbose").body.decode()
        authorized = http.get("/health/ready/?verbose", headers=TOKEN).body.decode()
    assert anonymous.splitlines() == [
        "[+]a ok",
        "[+]w warn",
        "[-]bad failed: reason withheld",
        "[+]c ok",  # one line per check: component ids are details
        "readyz check failed",
    ]
    assert "[+]c:one ok" in authorized
    assert "[+]w warn: disk getting full" in authorized
    assert f"[-]bad failed: RuntimeError: connection failed: {health_checks.SECRET}" in authorized


# --- strangers see statuses only --------------------------------------------------

HOSTNAME = "db-primary-7.internal.example"
SERVICE_VERSION = "2026.12.3-rc1"


def on_this_host():
    """A check that names its component after a host, as per-host checks do."""
    return Component(component_id=HOSTNAME, observed_value=3, output=f"{HOSTNAME} answers")


BUILTIN = "django_observability.health.builtin."
BUILTIN_CHECKS = {
    "database": BUILTIN + "DatabaseCheck",
    "cache": BUILTIN + "CacheCheck",
    "migrations": BUILTIN + "MigrationsCheck",
    "memory": BUILTIN + "MemoryCheck",
    "metrics_store": BUILTIN + "MetricsStoreCheck",
    "storage": BUILTIN + "StorageCheck",
}


@pytest.fixture
def private_things(tmp_path, settings):
    """Checks whose details name a path, a host name, a version and an exception."""
    settings.STORAGES = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.OBSERVABILITY_SERVICE_VERSION = SERVICE_VERSION
    disk = str(tmp_path)
    named = {
        **BUILTIN_CHECKS,
        "disk": (BUILTIN + "DiskCheck", {"path": disk, "warn_percent": 0.0001}),
        "host": f"{__name__}.on_this_host",
        "bad": "broken",
    }
    with checks(**named):
        yield [disk, HOSTNAME, SERVICE_VERSION, __version__, health_checks.SECRET, "RuntimeError"]


def _private_found(text, private):
    return [item for item in private if item in text]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/health/", {}),
        ("/health/?verbose", {}),
        ("/health/", {"Accept": "text/plain"}),
        ("/health/ready/", {}),
        ("/health/ready/?verbose", {}),
        ("/health/live/", {}),
    ],
)
def test_strangers_see_no_path_host_version_or_exception(http, private_things, path, headers):
    response = http.get(path, headers=headers)
    assert response.status_code == (200 if path == "/health/live/" else 503)
    assert _private_found(response.body.decode(), private_things) == []
    if path == "/health/live/":
        return
    # With the token, the same answer has them (the text lines have no componentId
    # for single-component checks, nor a releaseId; nothing has the library's version).
    disk, host, release, _library, secret, exception = private_things
    text = "verbose" in path or headers
    expected = [host, secret, exception] if text else [disk, host, release, secret, exception]
    authorized = http.get(path, headers={**headers, **TOKEN}).body.decode()
    assert _private_found(authorized, private_things) == sorted(expected, key=private_things.index)


def test_strangers_get_statuses_and_check_names_only(http, private_things):
    data = body(http.get("/health/"))
    assert set(data) == {"status", "checks"}
    assert set(data["checks"]) == {*BUILTIN_CHECKS, "disk", "host", "bad"}
    for name, components in data["checks"].items():
        assert components, name
        for component in components:
            assert set(component) == {"status"}, name
    assert data["checks"]["disk"] == [{"status": "warn"}]
    assert data["checks"]["bad"] == [{"status": "fail"}]


def test_authorized_callers_see_the_details(http, private_things, tmp_path):
    data = body(http.get("/health/", headers=TOKEN))
    assert data["releaseId"] == SERVICE_VERSION
    assert data["serviceId"] == "tests"
    assert data["description"] == "health"
    assert data["checks"]["disk"][0]["componentId"] == str(tmp_path)
    assert data["checks"]["host"][0]["componentId"] == HOSTNAME
    assert data["checks"]["bad"][0]["output"].startswith("RuntimeError: ")
    assert "system" in data


def test_release_id_is_the_service_version_and_absent_when_unset(http, settings):
    settings.OBSERVABILITY_SERVICE_VERSION = "4.1.0"
    assert body(http.get("/health/", headers=TOKEN))["releaseId"] == "4.1.0"
    assert body(http.get("/health/live/", headers=TOKEN))["releaseId"] == "4.1.0"
    settings.OBSERVABILITY_SERVICE_VERSION = None
    data = body(http.get("/health/", headers=TOKEN))
    assert "releaseId" not in data
    assert __version__ not in json.dumps({k: v for k, v in data.items() if k != "checks"})


def test_health_command_keeps_the_details(private_things, capsys):
    with pytest.raises(SystemExit):
        call_command("health", "--format", "json")
    data = json.loads(capsys.readouterr().out)
    assert data["releaseId"] == SERVICE_VERSION
    assert data["checks"]["disk"][0]["componentId"] == private_things[0]
    assert data["checks"]["host"][0]["componentId"] == HOSTNAME
    with pytest.raises(SystemExit):
        call_command("health")
    text = capsys.readouterr().out
    assert "[+]disk warn: " in text
    assert health_checks.SECRET in text


# --- never hang -------------------------------------------------------------------


@override_settings(OBSERVABILITY_HEALTH_TIMEOUT=0.3, OBSERVABILITY_HEALTH_DEADLINE=0.6)
def test_hung_check_answered_on_time_and_started_once(http):
    named = {
        "database": "django_observability.health.builtin.DatabaseCheck",
        "s": H + "slow",
    }
    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS=named, OBSERVABILITY_HEALTH_READINESS_CHECKS=list(named)
    ):
        started = time.monotonic()
        response = http.get("/health/ready/", headers=TOKEN)
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert elapsed < 5
        data = body(response)
        assert data["checks"]["database"][0]["status"] == "pass"
        assert data["checks"]["s"][0]["status"] == "fail"
        assert data["checks"]["s"][0]["output"] == "timed out after 0.3 s"
        # Later probes while it still hangs: answered at once, not started again.
        for _ in range(5):
            started = time.monotonic()
            assert http.get("/health/ready/").status_code == 503
            assert time.monotonic() - started < 1
        assert len(health_checks.slow_starts) == 1


@override_settings(OBSERVABILITY_HEALTH_TIMEOUT=0.3)
def test_hung_async_check_is_cancelled(http):
    with checks(a="async_hang"):
        started = time.monotonic()
        data = body(http.get("/health/ready/", headers=TOKEN))
    assert time.monotonic() - started < 5
    assert data["checks"]["a"][0]["output"] == "timed out after 0.3 s"


def test_per_check_timeout_option(http):
    with checks(s=("tests.health_checks.slow", {"timeout": 0.2})):
        data = body(http.get("/health/ready/", headers=TOKEN))
    assert data["checks"]["s"][0]["output"] == "timed out after 0.2 s"


def test_concurrent_probes_share_one_run():
    calls = []

    def counting():
        calls.append(1)
        time.sleep(0.2)

    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS={"c": counting},
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["c"],
        OBSERVABILITY_HEALTH_CACHE_SECONDS=5,
    ):
        statuses = []
        threads = [
            threading.Thread(
                target=lambda: statuses.append(Client().get("/health/ready/").status_code)
            )
            for _ in range(20)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert statuses == [200] * 20
        assert len(calls) == 1
        # Cached: more probes within the period run nothing.
        Client().get("/health/ready/")
        assert len(calls) == 1


def test_results_expire(http):
    calls = []

    def counting():
        calls.append(1)

    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS={"c": counting},
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["c"],
        OBSERVABILITY_HEALTH_CACHE_SECONDS=0,
    ):
        http.get("/health/ready/")
        http.get("/health/ready/")
    assert len(calls) == 2


def test_pool_threads_close_their_database_connections(monkeypatch):
    from django.db import connections
    from django.db.backends.sqlite3.base import DatabaseWrapper

    used_in, closed_in = [], []
    original_close = DatabaseWrapper.close

    def recording_close(self):
        closed_in.append(threading.get_ident())
        return original_close(self)

    monkeypatch.setattr(DatabaseWrapper, "close", recording_close)

    def uses_db():
        connections["default"].ensure_connection()
        used_in.append(threading.get_ident())

    with checks(d=uses_db):
        Client().get("/health/ready/")
    # (Django keeps in-memory SQLite open on close(); on a real server it is closed.)
    assert len(used_in) == 1
    assert used_in[0] != threading.get_ident()
    assert used_in[0] in closed_in


# --- probes reach the checks in real clusters -----------------------------------------


@override_settings(
    ALLOWED_HOSTS=["testserver"],
    SECURE_SSL_REDIRECT=True,
    MIDDLEWARE=[
        "django_observability.middleware.ObservabilityMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
    ],
)
def test_probes_with_pod_ip_host_and_ssl_redirect(http):
    pod = {"Host": "10.1.2.3:8000"}
    assert http.get("/health/live/", headers=pod).status_code == 200
    assert http.get("/health/ready/", headers=pod).status_code == 200
    # The full report keeps host validation and the redirect.
    assert http.get("/health/", headers=pod).status_code == 400
    assert http.get("/health/").status_code == 301
    with override_settings(OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE=False):
        assert http.get("/health/live/", headers=pod).status_code == 400


@pytest.mark.skipif(
    not hasattr(
        __import__("django.contrib.auth.middleware").contrib.auth.middleware,
        "LoginRequiredMiddleware",
    ),
    reason="Django 5.1+",
)
@override_settings(
    OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE=False,
    MIDDLEWARE=[
        "django_observability.middleware.ObservabilityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ],
)
def test_reachable_with_login_required(http):
    for path in ("/health/", "/health/live/", "/health/ready/"):
        assert http.get(path).status_code == 200


def test_not_in_request_metrics(http, samples):
    for path in ("/health/", "/health/live/", "/health/ready/"):
        http.get(path)
    with override_settings(OBSERVABILITY_HEALTH_PROBES_IN_MIDDLEWARE=False):
        for path in ("/health/", "/health/live/", "/health/ready/"):
            http.get(path)
    assert samples.total("http_server_request_duration_seconds_count") == 0


# --- draining ---------------------------------------------------------------------


def test_draining(http, settings):
    call_command("drain")
    assert os.path.exists(settings.OBSERVABILITY_HEALTH_DRAIN_FILE)
    response = http.get("/health/ready/")
    assert response.status_code == 503
    assert body(response)["checks"]["shutdown"][0]["status"] == "fail"
    assert http.get("/health/live/").status_code == 200
    call_command("drain", "--undo")
    assert http.get("/health/ready/").status_code == 200


# --- built-in checks ----------------------------------------------------------------


def test_unapplied_migrations_fail_readiness(http):
    call_command("migrate", "sessions", "zero", verbosity=0)
    try:
        response = http.get("/health/ready/", headers=TOKEN)
        assert response.status_code == 503
        (migrations,) = body(response)["checks"]["migrations"]
        assert migrations["status"] == "fail"
        assert "sessions.0001_initial" in migrations["output"]
    finally:
        call_command("migrate", "sessions", verbosity=0)
    runner.clear()
    assert http.get("/health/ready/").status_code == 200


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({"warn_percent": 99.9999, "fail_percent": 100}, "pass"),
        ({"warn_percent": 0.0001, "fail_percent": 100}, "warn"),
        ({"warn_percent": 0.0001, "fail_percent": 0.0002}, "fail"),
    ],
)
@pytest.mark.parametrize("check", ["DiskCheck", "MemoryCheck"])
def test_threshold_checks(http, check, options, status):
    path = f"django_observability.health.builtin.{check}"
    with checks(x=(path, options)):
        (component,) = body(http.get("/health/", headers=TOKEN))["checks"]["x"]
    assert component["status"] == status
    assert component["observedUnit"] == "%"


def test_storage_check(http, tmp_path, settings):
    settings.STORAGES = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    path = "django_observability.health.builtin.StorageCheck"
    with checks(s=path):
        assert body(http.get("/health/"))["status"] == "pass"
    assert list((tmp_path / "media" / "django-observability-health").iterdir()) == []
    (tmp_path / "blocked").write_text("a file where a directory should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "blocked")},
        },
    }
    runner.clear()
    with checks(s=path):
        assert body(http.get("/health/"))["status"] == "fail"


def test_cgroup_memory(tmp_path, monkeypatch):
    from django_observability.health import builtin

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("1000\n")
    (v2 / "memory.current").write_text("900\n")
    (v2 / "memory.stat").write_text("anon 1\ninactive_file 100\n")
    assert builtin.cgroup_memory(str(v2)) == (800, 1000)
    (v2 / "memory.max").write_text("max\n")
    assert builtin.cgroup_memory(str(v2)) is None
    assert builtin.cgroup_memory(str(tmp_path / "none")) is None


# --- metrics ----------------------------------------------------------------------


def test_health_metrics(http, samples):
    # Not "not ready" before anyone asked.
    http.get("/metrics", headers=TOKEN)
    http.get("/health/live/")
    assert samples.value("health_ready") is None
    with checks(a="ok", w="warn", bad="broken"):
        http.get("/health/ready/")
    assert samples.value("health_check_status", check="a") == 1
    assert samples.value("health_check_status", check="w") == 0.5
    assert samples.value("health_check_status", check="bad") == 0
    assert samples.value("health_check_duration_seconds", check="a") >= 0
    assert samples.value("health_ready") == 0
    runner.clear()
    with checks(a="ok"):
        http.get("/health/ready/")
    assert samples.value("health_ready") == 1


def test_process_metrics_on_scrape(http):
    text = http.get("/metrics", headers=TOKEN).body.decode()
    for name in (
        "django_process_resident_memory_bytes",
        "django_process_cpu_seconds",
        "django_process_open_fds",
        "django_process_threads",
    ):
        line = next(line for line in text.splitlines() if line.startswith(name + " "))
        assert float(line.split()[1]) > 0


# --- management command ---------------------------------------------------------------


def test_health_command(capsys):
    with checks(a="ok", w="warn"):
        call_command("health")
        out = capsys.readouterr().out
        assert "[+]a ok" in out
        assert "[+]w warn: disk getting full" in out
        call_command("health", "--ready", "--format", "json")
        assert json.loads(capsys.readouterr().out)["status"] == "warn"
    runner.clear()
    with checks(bad="broken"), pytest.raises(SystemExit) as exit_info:
        call_command("health", "--ready")
    assert exit_info.value.code == 1
    assert health_checks.SECRET in capsys.readouterr().out
    with checks(bad="broken"):
        call_command("health", "--live")
    assert capsys.readouterr().out.strip() == "livez check passed"
