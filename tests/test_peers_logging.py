"""Log lines of a standard project under real gunicorn and uvicorn (``-m peers``).

The project is written here as ``django-admin startproject`` lays one out:
``DJANGO_SETTINGS_MODULE`` is set only in ``wsgi.py`` / ``asgi.py``, the
settings say ``LOGGING = logging_config()`` and name the service, and
``gunicorn.conf.py`` is the README's (the hooks in one import line, the same
``logging_config()`` as ``logconfig_dict``). Nothing in the environment names
the service or the settings.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

# Helpers live in tests/peers.py; its asserts get pytest's messages too.
pytest.register_assert_rewrite("tests.peers")

from tests.peers import REPO, Server, executable, free_port, http, wait_for  # noqa: E402

pytestmark = pytest.mark.peers

SERVICE = "shop-api"
ENVIRONMENT = "staging"

# Secrets a client sends in the query string and the Referer.
TOKEN = "tok-4f1c9e"
PASSWORD = "pw-7d2a11"
REFERER_TOKEN = "ref-9b3e55"
SECRET_PATH = f"/x/?token={TOKEN}&password={PASSWORD}&page=2"
REFERER = f"https://shop.example/cart?api_key={REFERER_TOKEN}&step=3"
MASK = "[REDACTED]"  # the formatter's mask: django_observability.logging.REDACTED

PROJECT = {
    "mysite/__init__.py": "",
    "mysite/settings.py": """
        import os

        from django_observability.logging import logging_config

        BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        SECRET_KEY = "peer-test-only"
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1"]
        INSTALLED_APPS = [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_observability",
        ]
        MIDDLEWARE = ["django_observability.middleware.ObservabilityMiddleware"]
        ROOT_URLCONF = "mysite.urls"
        DATABASES = {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(BASE_DIR, "db.sqlite3"),
            }
        }
        USE_TZ = True
        OBSERVABILITY_SERVICE_NAME = "shop-api"
        OBSERVABILITY_ENVIRONMENT = "staging"
        LOGGING = logging_config(
            server_access_log=os.environ.get("SITE_SERVER_ACCESS_LOG") == "1"
        )
    """,
    "mysite/urls.py": """
        from django.urls import include, path

        from mysite import views

        urlpatterns = [
            path("x/", views.page),
            path("warn/", views.warn),
            path("", include("django_observability.urls")),
        ]
    """,
    "mysite/views.py": """
        import warnings

        from django.http import JsonResponse


        def page(request):
            return JsonResponse({"page": request.GET.get("page")})


        def warn(request):
            warnings.warn("the old report format goes away in 2.0", UserWarning)
            return JsonResponse({"warned": True})
    """,
    "mysite/wsgi.py": """
        import os

        from django.core.wsgi import get_wsgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

        application = get_wsgi_application()
    """,
    "mysite/asgi.py": """
        import os

        from django.core.asgi import get_asgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

        application = get_asgi_application()
    """,
    "gunicorn.conf.py": """
        import os

        from django_observability.gunicorn import (  # noqa: F401
            child_exit, logger_class, on_starting, post_fork, worker_exit,
        )
        from django_observability.logging import logging_config

        bind = os.environ["SITE_BIND"]
        workers = 2
        logconfig_dict = logging_config(
            mail_admins=False,
            server_access_log=os.environ.get("SITE_SERVER_ACCESS_LOG") == "1",
        )
    """,
}


def write_project(root: Path) -> None:
    for name, text in PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def project_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a deployment that names neither the settings nor the service."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}
        and not key.startswith(("GUNICORN_", "OBSERVABILITY_", "PROMETHEUS_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(REPO)])
    env["PROMETHEUS_MULTIPROC_DIR"] = str(root / "multiproc")
    env["OTEL_TRACES_EXPORTER"] = "none"
    env.update(extra)
    return env


def records(server: Server) -> list[dict[str, Any]]:
    """Every line the server wrote, each one JSON object (fails on any other line)."""
    lines = server.log_path.read_text(errors="replace").splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line that is not JSON: {line!r}\n{server.log_tail()}")
    return out


def logger_of(record: dict[str, Any]) -> str:
    return record["log"]["logger"]


def send_traffic(server: Server) -> None:
    """The secret-bearing request, one warning, and a request to wait on."""
    resp = http(server.url + SECRET_PATH, headers={"Referer": REFERER})
    assert resp.status == 200, resp.body[:300]
    assert http(server.url + "/warn/").status == 200
    assert http(server.url + "/x/?page=3").status == 200


def run(server: Server) -> list[dict[str, Any]]:
    """Start, send the traffic, stop gracefully; the lines it wrote."""
    server.start()
    try:
        server.wait_ready("/health/live/")
        send_traffic(server)
        # The app writes its access line as the response is done: wait for the last one.
        wait_for(
            lambda: server.log_path.read_text().count('"django_observability.access"') >= 3,
            deadline=5.0,
        )
    finally:
        server.stop()
    return records(server)


def gunicorn_server(root: Path, name: str, **extra: str) -> Server:
    port = free_port()
    return Server(
        name=name,
        argv=[executable("gunicorn"), "-c", "gunicorn.conf.py", "mysite.wsgi:application"],
        cwd=root,
        env=project_env(root, SITE_BIND=f"127.0.0.1:{port}", **extra),
        log_path=root / f"{name}.log",
        url=f"http://127.0.0.1:{port}",
    )


def uvicorn_server(root: Path, name: str, **extra: str) -> Server:
    port = free_port()
    return Server(
        name=name,
        argv=[
            executable("uvicorn"),
            "mysite.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
        ],
        cwd=root,
        env=project_env(root, **extra),
        log_path=root / f"{name}.log",
        url=f"http://127.0.0.1:{port}",
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mysite")
    write_project(root)
    (root / "multiproc").mkdir()
    return root


@pytest.fixture(scope="module")
def gunicorn_default(project: Path) -> list[dict[str, Any]]:
    return run(gunicorn_server(project, "gunicorn-default"))


@pytest.fixture(scope="module")
def gunicorn_opt_in(project: Path) -> list[dict[str, Any]]:
    return run(gunicorn_server(project, "gunicorn-opt-in", SITE_SERVER_ACCESS_LOG="1"))


@pytest.fixture(scope="module")
def uvicorn_default(project: Path) -> list[dict[str, Any]]:
    return run(uvicorn_server(project, "uvicorn-default"))


@pytest.fixture(scope="module")
def uvicorn_opt_in(project: Path) -> list[dict[str, Any]]:
    return run(uvicorn_server(project, "uvicorn-opt-in", SITE_SERVER_ACCESS_LOG="1"))


def assert_no_secret(lines: list[dict[str, Any]]) -> None:
    text = json.dumps(lines)
    for secret in (TOKEN, PASSWORD, REFERER_TOKEN):
        assert secret not in text


def app_access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in lines if logger_of(r) == "django_observability.access"]


# --- the service fields: master and workers alike -----------------------------------


def test_gunicorn_master_and_workers_write_the_same_service(gunicorn_default):
    master = [r for r in gunicorn_default if logger_of(r) == "gunicorn.error"]
    messages = [r["message"] for r in master]
    assert any(m.startswith("Starting gunicorn") for m in messages), messages
    assert any(m.startswith("Listening at") for m in messages), messages
    workers = app_access_lines(gunicorn_default)
    assert len(workers) == 3
    master_pids = {r["process"]["pid"] for r in master if r["message"].startswith("Starting")}
    assert master_pids.isdisjoint({r["process"]["pid"] for r in workers})
    services = {(logger_of(r), json.dumps(r["service"])) for r in gunicorn_default}
    assert {service for _, service in services} == {
        json.dumps({"name": SERVICE, "environment": ENVIRONMENT})
    }, sorted(services)


def test_uvicorn_lines_name_the_service(uvicorn_default):
    assert any(logger_of(r) == "uvicorn.error" for r in uvicorn_default)
    assert {json.dumps(r["service"]) for r in uvicorn_default} == {
        json.dumps({"name": SERVICE, "environment": ENVIRONMENT})
    }


# --- the servers' access lines --------------------------------------------------------


@pytest.mark.parametrize("deployment", ["gunicorn_default", "uvicorn_default"])
def test_by_default_no_server_access_line(deployment, request):
    lines = request.getfixturevalue(deployment)
    loggers = {logger_of(r) for r in lines}
    assert "gunicorn.access" not in loggers
    assert "uvicorn.access" not in loggers
    assert len(app_access_lines(lines)) == 3  # the app's own line, without the query string
    assert_no_secret(lines)


@pytest.mark.parametrize(
    ("deployment", "logger"),
    [("gunicorn_opt_in", "gunicorn.access"), ("uvicorn_opt_in", "uvicorn.access")],
)
def test_server_access_lines_when_asked_for_are_masked(deployment, logger, request):
    lines = request.getfixturevalue(deployment)
    access = [
        r["message"] for r in lines if logger_of(r) == logger and "/health/" not in r["message"]
    ]
    assert len(access) == 3, access
    (secret_line,) = [m for m in access if "/x/?token=" in m]
    assert f"/x/?token={MASK}&password={MASK}&page=2" in secret_line
    if logger == "gunicorn.access":  # its default format writes the Referer
        assert f"https://shop.example/cart?api_key={MASK}&step=3" in secret_line
    assert any("/x/?page=3" in m for m in access)
    assert_no_secret(lines)


# --- Python warnings ------------------------------------------------------------------


@pytest.mark.parametrize("deployment", ["gunicorn_default", "uvicorn_default"])
def test_a_warning_is_one_json_line(deployment, request):
    lines = request.getfixturevalue(deployment)
    warned = [r for r in lines if logger_of(r) == "py.warnings"]
    assert len(warned) == 1, warned
    (line,) = warned
    assert line["log.level"] == "warning"
    assert "UserWarning: the old report format goes away in 2.0" in line["message"]
    assert line["service"]["name"] == SERVICE
