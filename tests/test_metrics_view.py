import gzip
import os
import subprocess
import sys

import django
import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import AsyncHTTP, SyncHTTP

TOKEN = {"Authorization": "Bearer test-token-0123456789"}


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


def families(body):
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def test_text_format_by_default(http):
    http.get("/api/v1/items/1/")
    response = http.get("/metrics", headers=TOKEN)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    parsed = families(response.body)
    assert parsed["http_server_request_duration_seconds"].type == "histogram"
    assert parsed["http_server_active_requests"].type == "gauge"
    assert parsed["http_server_exceptions"].type == "counter"
    assert "django_observability_build_info" in parsed


def test_openmetrics_when_asked(http):
    http.get("/")
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response = http.get("/metrics", headers={**TOKEN, "Accept": accept})
    assert response["Content-Type"].startswith("application/openmetrics-text")
    text = response.body.decode()
    assert text.rstrip().endswith("# EOF")
    assert "# UNIT http_server_request_duration_seconds seconds" in text


def test_gzip_when_accepted(http):
    http.get("/")
    response = http.get("/metrics", headers={**TOKEN, "Accept-Encoding": "gzip"})
    assert response["Content-Encoding"] == "gzip"
    assert b"http_server_request_duration_seconds_count" in gzip.decompress(response.body)


def test_name_filter(http):
    http.get("/")
    response = http.get("/metrics?name[]=http_server_active_requests", headers=TOKEN)
    assert set(families(response.body)) == {"http_server_active_requests"}


def test_never_cached_and_safe_methods_only(http):
    response = http.get("/metrics", headers=TOKEN)
    assert "no-cache" in response["Cache-Control"]
    assert http.request("HEAD", "/metrics", headers=TOKEN).status_code == 200
    assert http.request("POST", "/metrics", headers=TOKEN).status_code == 405


def test_head_gets_the_headers_of_get_and_no_body(rf, settings):
    from django_observability.views import metrics

    settings.OBSERVABILITY_AUTH_TOKEN = None
    get = metrics(rf.get("/metrics", HTTP_ACCEPT_ENCODING="gzip"))
    head = metrics(rf.head("/metrics", HTTP_ACCEPT_ENCODING="gzip"))
    assert get.content
    assert get["Content-Encoding"] == "gzip"
    assert head.content == b""
    assert get["Content-Length"] == str(len(get.content))
    assert int(head["Content-Length"]) > 0


def test_csrf_exempt():
    client = Client(enforce_csrf_checks=True)
    with override_settings(
        MIDDLEWARE=[
            "django_observability.middleware.ObservabilityMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ]
    ):
        # Refused for the method, not for a missing CSRF token.
        assert client.post("/metrics", headers=TOKEN).status_code == 405


@pytest.mark.skipif(django.VERSION < (5, 1), reason="LoginRequiredMiddleware is Django 5.1+")
@override_settings(
    MIDDLEWARE=[
        "django_observability.middleware.ObservabilityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]
)
def test_reachable_with_login_required_middleware(http):
    assert http.get("/metrics", headers=TOKEN).status_code == 200


# --- multiprocess mode ----------------------------------------------------------

WRITER = """
import sys
from prometheus_client import Counter, Gauge
c = Counter("writer_jobs", "Jobs.", ["kind"])
c.labels("a").inc(int(sys.argv[1]))
Gauge("writer_live", "Live.", multiprocess_mode="livesum").set(1)
"""


def test_multiprocess_mode_aggregates_every_process(tmp_path, monkeypatch):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", WRITER, str(n)], env=env, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    response = Client().get("/metrics", headers=TOKEN)
    parsed = families(response.content)
    (sample,) = [s for s in parsed["writer_jobs"].samples if s.name == "writer_jobs_total"]
    assert sample.value == 7
    # Served from a fresh registry: this process's own default registry
    # (where the in-process metrics live) is not mixed in.
    assert "python_info" not in parsed


def test_multiprocess_mode_serves_the_stores_state(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    parsed = families(Client().get("/metrics", headers=TOKEN).content)
    (writable,) = parsed["django_observability_metrics_store_writable"].samples
    assert writable.value == 1
    assert parsed["django_observability_metrics_store_free_bytes"].samples[0].value > 0


def test_a_store_locked_for_too_long_fails_the_scrape(tmp_path, monkeypatch):
    """A stuck compaction: 503, not totals read while files move."""
    import fcntl

    from django_observability import metrics_store
    from django_observability.metrics_store import files

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(files, "READ_LOCK_TIMEOUT", 0.05)
    fd = os.open(tmp_path / metrics_store.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        response = Client().get("/metrics", headers=TOKEN)
    finally:
        os.close(fd)
    assert response.status_code == 503
    assert Client().get("/metrics", headers=TOKEN).status_code == 200
