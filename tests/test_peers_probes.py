"""``/metrics`` scraped by pod IP over plain HTTP, under real servers (``probes.py``).

The example project with ``SECURE_SSL_REDIRECT`` on, ``ALLOWED_HOSTS`` without
the pod IP and a token, under gunicorn (sync worker, multiprocess mode) and
uvicorn: Prometheus' request (``Host: 10.1.2.3:8000``, plain HTTP) gets the
exposition with the token, 401/403 without it from an address outside
``OBSERVABILITY_ALLOWED_IPS``; everything else keeps host validation and the
redirect.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.peers")

from tests.peers import (  # noqa: E402
    UNAUTHORIZED_SOURCE,
    Server,
    example_env,
    http,
    http_from,
    make_gunicorn,
    make_uvicorn,
    run_promtool_check,
)

pytest_plugins = ["tests.peers"]

pytestmark = pytest.mark.peers

TOKEN = "pod-scrape-token-0123456789abcdef"
POD = {"Host": "10.1.2.3:8000"}  # what Prometheus' pod discovery sends
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, example_db: Path
) -> Iterable[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        for kind in ("gunicorn", "uvicorn"):
            workdir = tmp_path_factory.mktemp(f"pod-scrape-{kind}")
            db = workdir / "db.sqlite3"
            shutil.copyfile(example_db, db)
            env = example_env(db)
            env.update(
                EXAMPLE_SSL_REDIRECT="1",
                OBSERVABILITY_AUTH_TOKEN=TOKEN,
                EXAMPLE_DRAIN_FILE=str(workdir / "draining"),
            )
            if kind == "gunicorn":
                server = make_gunicorn("gunicorn-pod-scrape", workdir, env, workers=2)
            else:
                server = make_uvicorn("uvicorn-pod-scrape", workdir, env)
            server.start()
            started[kind] = server
        for server in started.values():
            server.wait_ready("/health/live/")
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
def test_scrape_by_pod_ip_over_plain_http(servers: dict[str, Server], kind: str) -> None:
    url = servers[kind].url
    auth = {"Authorization": f"Bearer {TOKEN}"}

    resp = http_from(UNAUTHORIZED_SOURCE, url + "/metrics", headers={**POD, **auth})
    assert resp.status == 200, (resp.status, resp.body[:300])
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.body.decode()
    assert "django_observability_build_info{" in text
    assert run_promtool_check(text).returncode == 0

    resp = http_from(
        UNAUTHORIZED_SOURCE,
        url + "/metrics",
        headers={**POD, **auth, "Accept": OPENMETRICS, "Accept-Encoding": "gzip"},
    )
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert gzip.decompress(resp.body).decode().endswith("# EOF\n")

    # As protected as the view: no token, a wrong token.
    resp = http_from(UNAUTHORIZED_SOURCE, url + "/metrics", headers=POD)
    assert resp.status == 401, (resp.status, resp.body[:300])
    assert b"build_info" not in resp.body
    wrong = {**POD, "Authorization": "Bearer " + TOKEN[:-1] + "x"}
    resp = http_from(UNAUTHORIZED_SOURCE, url + "/metrics", headers=wrong)
    assert resp.status == 403
    # From an allowed address (127.0.0.1 in the example's OBSERVABILITY_ALLOWED_IPS).
    assert http(url + "/metrics", headers=POD).status == 200

    # Everything else keeps host validation and the redirect.
    resp = http(url + "/metrics", method="POST", headers={**POD, **auth})
    assert resp.status == 400, (resp.status, resp.body[:300])
    resp = http(url + "/health/", headers=POD)
    assert resp.status == 400
    resp = http(url + "/api/v1/items/1/")
    assert resp.status == 301
