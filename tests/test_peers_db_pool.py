"""Django's connection pool on a real PostgreSQL, behind a real gunicorn (``db_connections.py``).

A private PostgreSQL (``tests.peers.Postgres``) and one gunicorn gthread worker
with eight threads, in Prometheus multiprocess mode, serving
``tests/settings_db_pool_peers.py``: Django's pool of at most two connections,
one second to get one, a view held in ``pg_sleep``. More requests than the
pool has connections: the ones that waited and got one, and the ones that
timed out (Django answers 500), are counted as the pool itself counted them;
while they wait ``/metrics`` shows the pool in use and the requests pending;
the exposition passes ``promtool check metrics``. The queries carry their
trace context: PostgreSQL's slow-statement log line of a request names the
request's trace.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.peers")

from tests.peers import (  # noqa: E402
    REPO,
    Postgres,
    Server,
    _gunicorn_extra_args,
    by_labels,
    executable,
    free_port,
    http,
    postgres_server,  # noqa: F401  (fixture)
    run_promtool_check,
    total,
)
from tests.peers_tracing import otel_free_env  # noqa: E402

pytestmark = pytest.mark.peers

TOKEN = {"Authorization": "Bearer test-token-0123456789", "Accept": "text/plain"}
DATABASE = "db_pool_peers"
TRACE_ID = "5c1f0e2d3b4a69788796a5b4c3d2e1f0"


def metrics(server: Server) -> str:
    response = http(server.url + "/metrics", headers=TOKEN)
    assert response.status == 200, response.body[:300]
    return response.body.decode()


def pool_state(text: str) -> dict[str, float]:
    count = by_labels(text, "db_client_connection_count", "alias", "state")
    return {
        "used": count.get(("default", "used"), -1),
        "idle": count.get(("default", "idle"), -1),
        "pending": total(text, "db_client_connection_pending_requests"),
    }


@pytest.fixture
def pooled_gunicorn(tmp_path: Path, postgres_server: Postgres):  # noqa: F811
    pytest.importorskip("psycopg_pool", reason="Django's pool needs psycopg[pool]")
    postgres_server.create_database(DATABASE)
    with postgres_server.connect() as conn:
        # Statements of 250 ms or more are logged, with their text: a slow-query log.
        conn.execute(f'ALTER DATABASE "{DATABASE}" SET log_min_duration_statement = 250')
    port = free_port()
    env = otel_free_env(dict(os.environ))
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings_db_pool_peers",
        DB_POOL_PEERS_PORT=str(postgres_server.port),
        DB_POOL_PEERS_NAME=DATABASE,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "multiproc"),
        PYTHONPATH=str(REPO),
    )
    server = Server(
        name="gunicorn-db-pool",
        argv=[
            executable("gunicorn"),
            "-c",
            "python:django_observability.gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--graceful-timeout",
            "5",
            *_gunicorn_extra_args(),
            "django.core.wsgi:get_wsgi_application()",
        ],
        cwd=REPO,
        env=env,
        log_path=tmp_path / "gunicorn.log",
        url=f"http://127.0.0.1:{port}",
    )
    server.start()
    try:
        server.wait_ready("/health/live/")
        yield server, postgres_server
    finally:
        server.stop()


def test_pool_waits_timeouts_and_state_under_more_threads_than_connections(pooled_gunicorn):
    server, postgres = pooled_gunicorn

    def sleep(seconds: float, headers: dict[str, str] | None = None) -> int:
        return http(f"{server.url}/sleep/?seconds={seconds}", headers=headers, timeout=20).status

    # Four requests for two connections, 0.3 s each: two wait about 0.3 s, and get one.
    traced = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda i: sleep(0.3, traced if i == 0 else None), range(4)))
    assert statuses == [200] * 4, server.log_tail()

    # Five requests of 2.5 s: two hold the connections, three wait one second and time out.
    seen_busy = None
    with ThreadPoolExecutor(max_workers=5) as pool:
        running = [pool.submit(sleep, 2.5) for _ in range(5)]
        end = time.monotonic() + 2.0
        while time.monotonic() < end and seen_busy is None:
            state = pool_state(metrics(server))
            if state["used"] == 2 and state["pending"] == 3:
                seen_busy = state
            time.sleep(0.05)
        statuses = sorted(f.result() for f in running)
    assert statuses == [200, 200, 500, 500, 500], server.log_tail()
    assert seen_busy == {"used": 2, "idle": 0, "pending": 3}, pool_state(metrics(server))

    # The thread reads the pool every 0.2 s: wait for the reading after the last request.
    end = time.monotonic() + 5.0
    while True:
        text = metrics(server)
        settled = pool_state(text) == {"used": 0, "idle": 2, "pending": 0}
        if settled and total(text, "db_client_connection_requests_total") >= 9:
            break
        assert time.monotonic() < end, pool_state(text)
        time.sleep(0.1)

    def value(name: str) -> float:
        return by_labels(text, name, "alias").get(("default",), 0.0)

    assert value("db_client_connection_timeouts_total") == 3
    # The pool opened two connections (min_size 1, grown to max_size 2), whatever it lent.
    assert value("db_client_connections_created_total") == 2
    assert value("db_client_connection_errors_total") == 0
    assert value("db_client_connection_max") == 2
    assert value("db_client_connection_requests_total") == 9
    # Queued: at least the two of the first round that found no idle connection, and the
    # three that timed out; their waits add up to at least 0.3 s twice and 1 s three times.
    assert value("db_client_connection_queued_requests_total") >= 5
    assert value("db_client_connection_wait_time_seconds_total") >= 3.0
    # promtool's linter flags one thing only: the contract's db_client_connection_count
    # (OpenTelemetry's db.client.connection.count in Prometheus form) is a gauge ending in
    # _count. Anything else it says (a parse error, another name) fails.
    check = run_promtool_check(text)
    said = (check.stdout + check.stderr).decode().splitlines()
    problems = [line for line in said if line.strip()]
    assert all(
        line.startswith("db_client_connection_count non-histogram and non-summary metrics")
        for line in problems
    ), problems
    assert check.returncode in (0, 3), problems

    # PostgreSQL's slow-statement line of the traced request leads to its trace.
    lines = [line for line in postgres.log_tail(200_000).splitlines() if "pg_sleep" in line]
    traced_lines = [line for line in lines if f"traceparent='00-{TRACE_ID}-" in line]
    assert len(traced_lines) == 1, lines[-10:]
    assert traced_lines[0].rstrip().endswith("'*/"), traced_lines[0]
