"""HttpCheck: the expected status, redirects on the same host, TLS verified, bounded, no secrets.

A small HTTP server on a thread plays the dependency; a server that never
answers is a socket that listens and reads nothing.
tests/test_peers_dependency_checks.py stops a real HTTP server process with SIGSTOP.
"""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.fake_peers")
from django.test import Client, override_settings  # noqa: E402

from django_observability.health import registry  # noqa: E402
from django_observability.health.base import FAIL, PASS, HealthError  # noqa: E402
from django_observability.health.http import HttpCheck, expected_statuses  # noqa: E402
from django_observability.health.runner import CheckSpec, run_check  # noqa: E402
from tests.fake_peers import server_context  # noqa: E402
from tests.health_state import fresh_health  # noqa: E402, F401

# The fixtures silent_port, refused_port and tls_files.
pytest_plugins = ["tests.fake_peers"]

HTTP_CHECK = "django_observability.health.http.HttpCheck"


class Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/status/<code>``, ``/to?<url>`` (a 302 there), anything else 200."""

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        self.server.requests.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]
        if self.path.startswith("/status/"):
            code = int(self.path.split("?")[0].split("/")[2])
            self.send_response(code)
        elif self.path.startswith("/to?"):
            self.send_response(302)
            self.send_header("Location", self.path[4:])
        else:
            self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"ok")

    do_GET = do_HEAD = _answer


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def tls_upstream(tls_files: tuple[Path, Path]) -> Iterator[Upstream]:
    server = Upstream()
    server.socket = server_context(tls_files).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# --- options ------------------------------------------------------------------------


def test_expected_statuses():
    assert expected_statuses(204) == {204}
    assert expected_statuses([200, 204]) == {200, 204}
    assert expected_statuses(range(200, 300)) == set(range(200, 300))
    for bad in ("200", [], [99], [600], 2.0):
        with pytest.raises(ValueError, match="expected_status must be status codes"):
            expected_statuses(bad)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"url": "ftp://h/"},
        {"url": "http://h/", "method": "POST"},
        {"url": "http://h/", "expected_status": 0},
    ],
)
def test_bad_options_stop_the_check_from_loading(options):
    with pytest.raises(ValueError, match=r"url option|GET or HEAD|expected_status"):
        HttpCheck(**options)


# --- the request --------------------------------------------------------------------


def test_the_expected_status_passes(upstream):
    component = HttpCheck(url=upstream.base + "/health", timeout=2.0).run()
    assert component.status == PASS
    assert component.component_id == upstream.base + "/health"
    assert component.component_type == "component"
    assert component.observed_unit == "ms"
    assert component.observed_value >= 0
    [(method, path, headers)] = upstream.requests
    assert (method, path) == ("GET", "/health")
    assert headers["User-Agent"] == "django-observability health check"


def test_another_status_fails_and_says_which(upstream):
    check = HttpCheck(url=upstream.base + "/status/503?token=s3cret", timeout=2.0)
    result = run_check(CheckSpec("api", check, 2.0))
    assert result.status == FAIL
    output = result.components[0].output
    assert output == f"GET {upstream.base}/status/503 answered 503, expected 200"
    assert upstream.requests[0][1] == "/status/503?token=s3cret"  # the query is sent, not shown


def test_a_set_or_range_of_statuses(upstream):
    assert HttpCheck(url=upstream.base + "/status/204", expected_status=[200, 204]).run()
    assert HttpCheck(url=upstream.base + "/status/404", expected_status=range(200, 500)).run()
    with pytest.raises(HealthError, match="expected 200-299"):
        HttpCheck(url=upstream.base + "/status/500", expected_status=range(200, 300)).run()


def test_head(upstream):
    HttpCheck(url=upstream.base + "/", method="head").run()
    assert upstream.requests[0][0] == "HEAD"


def test_credentials_are_sent_and_never_shown(upstream):
    url = upstream.base.replace("//", "//svc:p%40ss@") + "/private?key=s3cret#frag"
    check = HttpCheck(url=url, headers={"X-Api-Key": "k3y"}, timeout=2.0)
    component = check.run()
    headers = upstream.requests[0][2]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"svc:p@ss").decode()
    assert headers["X-Api-Key"] == "k3y"
    shown = str(component.as_dict())
    for secret in ("svc", "p%40ss", "p@ss", "s3cret", "k3y", "frag"):
        assert secret not in shown


# --- redirects ----------------------------------------------------------------------


def test_a_redirect_on_the_same_host_is_followed(upstream):
    component = HttpCheck(url=upstream.base + "/to?/landing").run()
    assert component.status == PASS
    assert [path for _, path, _ in upstream.requests] == ["/to?/landing", "/landing"]


def test_a_redirect_to_another_host_is_not_followed(upstream):
    elsewhere = f"http://localhost:{upstream.server_address[1]}/other?sig=s3cret"
    with pytest.raises(HealthError) as caught:
        HttpCheck(url=upstream.base + "/to?" + elsewhere).run()
    message = str(caught.value)
    assert "another host, not followed" in message
    assert f"http://localhost:{upstream.server_address[1]}/other" in message
    assert "s3cret" not in message
    assert len(upstream.requests) == 1


def test_an_expected_redirect_is_the_answer(upstream):
    check = HttpCheck(url=upstream.base + "/to?/landing", expected_status=302)
    assert check.run().status == PASS
    assert len(upstream.requests) == 1


def test_redirects_are_counted(upstream):
    url = upstream.base + "/to?/to?/landing"
    with pytest.raises(HealthError, match="answered 302"):
        HttpCheck(url=url, max_redirects=1).run()
    assert HttpCheck(url=url, max_redirects=2).run().status == PASS


# --- TLS ----------------------------------------------------------------------------


def test_tls_certificates_are_verified(tls_upstream, tls_files):
    url = f"https://localhost:{tls_upstream.server_address[1]}/"
    with pytest.raises(HealthError, match="CERTIFICATE_VERIFY_FAILED"):
        HttpCheck(url=url, timeout=2.0).run()
    component = HttpCheck(url=url, ca_file=str(tls_files[0]), timeout=2.0).run()
    assert component.status == PASS


# --- bounded ------------------------------------------------------------------------


def test_a_server_that_never_answers_fails_within_the_timeout(silent_port):
    start = time.monotonic()
    with pytest.raises(HealthError) as caught:
        HttpCheck(url=f"http://127.0.0.1:{silent_port}/health", timeout=0.3).run()
    assert time.monotonic() - start < 1.5
    assert str(caught.value) == f"GET http://127.0.0.1:{silent_port}/health: no answer within 0.3 s"


def test_readiness_with_a_hung_upstream_answers_in_time(silent_port):
    checks = {"api": (HTTP_CHECK, {"url": f"http://127.0.0.1:{silent_port}/", "timeout": 0.3})}
    client = Client()
    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS=checks,
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["api"],
        OBSERVABILITY_HEALTH_CACHE_SECONDS=0,
        OBSERVABILITY_HEALTH_DEADLINE=0.6,
    ):
        registry.reset()
        client.get("/health/live/")  # the first request of a process loads the URLconf
        for _ in range(3):
            start = time.monotonic()
            response = client.get("/health/ready/")
            assert time.monotonic() - start < 0.9
            assert response.status_code == 503


def test_bad_options_in_the_settings_fail_the_check():
    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS={
            "misused": (HTTP_CHECK, {"url": "http://h/", "method": "PUT"})
        },
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["misused"],
    ):
        registry.reset()
        response = Client().get("/health/ready/", HTTP_AUTHORIZATION="Bearer test-token-0123456789")
    assert response.status_code == 503
    assert "GET or HEAD" in response.json()["checks"]["misused"][0]["output"]
