"""The example project under real servers, scraped by real Prometheus tools.

Run with ``pytest -m peers``; the servers and their traffic are session
fixtures in ``tests/peers.py``.
"""

from __future__ import annotations

import json
import re
import time

import pytest

# Fixtures and helpers live in tests/peers.py; its asserts get pytest's messages too.
pytest.register_assert_rewrite("tests.peers")

from tests.peers import (  # noqa: E402
    ASYNC_BOOM,
    ASYNC_ITEM,
    BOOM,
    CHECKOUT_ERROR,
    GUNICORN_KINDS,
    GUNICORN_REQUESTS,
    GUNICORN_WORKERS,
    HOSTILE_REQUEST_IDS,
    ITEM,
    ROOT,
    STANDARD_METHODS,
    STREAM,
    UVICORN_ROUNDS,
    VALID_REQUEST_ID,
    Run,
    Server,
    by_labels,
    check_statuses,
    http,
    prometheus_query,
    run_promtool_check,
    samples,
    scrape,
    total,
    wait_for,
)

pytest_plugins = ["tests.peers"]

pytestmark = pytest.mark.peers

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
DURATION_COUNT = "http_server_request_duration_seconds_count"
SIZE_COUNT = "http_server_response_body_size_bytes_count"
SIZE_SUM = "http_server_response_body_size_bytes_sum"
ACTIVE = "http_server_active_requests"
EXCEPTIONS = "http_server_exceptions_total"
BUILD_INFO = "django_observability_build_info"


def assert_request_metrics(run: Run, text: str) -> None:
    """What every deployment must report after its plan, exactly."""
    check_statuses(run.results)
    expected = run.expected_series()

    # Every request once, in the right series; /metrics itself never counted.
    assert total(text, DURATION_COUNT) == len(run.results)
    assert by_labels(text, DURATION_COUNT, "method", "route", "status") == expected

    # Label rules: the method set is closed, odd methods are _OTHER.
    methods = {labels["method"] for labels, _ in samples(text, DURATION_COUNT)}
    assert methods <= STANDARD_METHODS | {"_OTHER"}
    assert "_OTHER" in methods
    assert "FOO" not in methods

    # Body sizes: one observation per request, summing to the bytes received.
    sizes = by_labels(text, SIZE_SUM, "method", "route")
    assert sizes == run.expected_body_bytes()
    size_counts = by_labels(text, SIZE_COUNT, "method", "route")
    assert sum(size_counts.values()) == len(run.results)

    # Nothing in flight once the clients are done.
    active = samples(text, ACTIVE)
    assert active, "http_server_active_requests missing"
    assert all(value == 0 for _, value in active), active

    # Build info: one series, value 1.
    info = samples(text, BUILD_INFO)
    assert len(info) == 1, info
    labels, value = info[0]
    assert value == 1
    assert labels["service_version"] == "1.0.0"
    assert set(labels) == {"version", "django_version", "python_version", "service_version"}


# --- gunicorn, two workers, multiprocess mode ------------------------------------


def test_gunicorn_multiprocess_counts_every_request(gunicorn_run: Run) -> None:
    text = scrape(gunicorn_run.url)
    assert len(gunicorn_run.results) == GUNICORN_REQUESTS
    assert_request_metrics(gunicorn_run, text)


def test_gunicorn_workers_restarted_without_losing_counts(gunicorn_run: Run) -> None:
    pids = gunicorn_run.pids()
    # Both workers served, and max_requests replaced workers during the run
    # (so some counts above come from processes that no longer exist).
    assert len(pids) > GUNICORN_WORKERS, (pids, gunicorn_run.server.log_tail())
    assert "Autorestarting worker" in gunicorn_run.server.log_path.read_text(errors="replace")
    text = scrape(gunicorn_run.url)
    assert total(text, DURATION_COUNT) == GUNICORN_REQUESTS
    # Dead workers' live gauges are gone: one build info, no stale in-flight.
    assert len(samples(text, BUILD_INFO)) == 1
    assert all(value == 0 for _, value in samples(text, ACTIVE))


def test_gunicorn_exceptions_by_route_and_class(gunicorn_run: Run) -> None:
    text = scrape(gunicorn_run.url)
    assert by_labels(text, EXCEPTIONS, "route", "exception") == {
        (BOOM, CHECKOUT_ERROR): gunicorn_run.count(BOOM)
    }
    assert gunicorn_run.count(BOOM) == GUNICORN_REQUESTS // len(GUNICORN_KINDS)


def test_gunicorn_request_ids(gunicorn_run: Run) -> None:
    ids = [r.response.headers.get("x-request-id", "") for r in gunicorn_run.results]
    assert all(GENERATED_ID.fullmatch(rid) for rid in ids), ids[:5]
    assert len(set(ids)) == len(ids)


def test_gunicorn_logs_only_json_lines(gunicorn_run: Run) -> None:
    """The example's gunicorn.conf.py gives the master the app's LOGGING too: its own
    lines (start-up, worker restarts) are JSON like everything else; HEAD answers of
    our endpoints have no body for gunicorn to drop (it would warn)."""
    for path in ("/health/live/", "/health/ready/", "/metrics"):
        response = http(gunicorn_run.url + path, method="HEAD")
        assert response.status == 200
        assert int(response.headers["content-length"]) > 0
        assert GENERATED_ID.fullmatch(response.headers["x-request-id"])
    time.sleep(0.5)  # let the workers' lines reach the file
    lines = gunicorn_run.server.log_path.read_text(errors="replace").splitlines()
    records = []
    for line in lines:
        record = json.loads(line)  # fails on any line that is not JSON
        assert isinstance(record, dict), line
        records.append(record)
    by_logger = {}
    for record in records:
        by_logger.setdefault(record["log"]["logger"], []).append(record["message"])
    assert any(m.startswith("Starting gunicorn") for m in by_logger["gunicorn.error"])
    assert any(m.startswith("Autorestarting worker") for m in by_logger["gunicorn.error"])
    assert len(by_logger["django_observability.access"]) >= GUNICORN_REQUESTS
    assert not [m for m in by_logger["gunicorn.error"] if "no-body response" in m]


# --- uvicorn, ASGI, one process ---------------------------------------------------


def test_uvicorn_asgi_metrics(uvicorn_run: Run) -> None:
    text = scrape(uvicorn_run.url)
    assert_request_metrics(uvicorn_run, text)
    assert by_labels(text, EXCEPTIONS, "route", "exception") == {
        (BOOM, CHECKOUT_ERROR): uvicorn_run.count(BOOM),
        (ASYNC_BOOM, CHECKOUT_ERROR): uvicorn_run.count(ASYNC_BOOM),
    }
    # The async view keeps its route, for 200, 404 raised inside it, and 403.
    series = by_labels(text, DURATION_COUNT, "method", "route", "status")
    assert {key for key in series if key[1] == ASYNC_ITEM} == {
        ("GET", ASYNC_ITEM, "200"),
        ("GET", ASYNC_ITEM, "404"),
        ("_OTHER", ASYNC_ITEM, "403"),
    }


def test_uvicorn_streaming_body_size_is_bytes_sent(uvicorn_run: Run) -> None:
    streams = [r for r in uvicorn_run.results if r.call.route == STREAM]
    received = [len(r.response.body) for r in streams if r.call.method == "GET"]
    assert received
    assert all(n > 0 for n in received)
    text = scrape(uvicorn_run.url)
    sizes = by_labels(text, SIZE_SUM, "method", "route")
    counts = by_labels(text, SIZE_COUNT, "method", "route")
    assert sizes[("GET", STREAM)] == sum(received)
    assert counts[("GET", STREAM)] == len(received)
    assert sizes[("HEAD", STREAM)] == 0
    assert counts[("HEAD", STREAM)] == len(streams) - len(received)


def test_uvicorn_request_ids(uvicorn_run: Run) -> None:
    for result in uvicorn_run.results:
        sent = dict(result.call.headers).get("X-Request-ID")
        echoed = result.response.headers.get("x-request-id")
        assert echoed, result.call
        if sent == VALID_REQUEST_ID:
            assert echoed == VALID_REQUEST_ID
        else:
            assert GENERATED_ID.fullmatch(echoed), (sent, echoed)
        if result.call.route == ROOT and result.call.method == "GET":
            # The view saw the same id the response carries.
            assert result.response.json()["request_id"] == echoed
    hostile = [
        r
        for r in uvicorn_run.results
        if dict(r.call.headers).get("X-Request-ID") in HOSTILE_REQUEST_IDS
    ]
    assert len(hostile) == len(HOSTILE_REQUEST_IDS) * UVICORN_ROUNDS


# --- promtool ----------------------------------------------------------------------


@pytest.mark.parametrize("run_fixture", ["gunicorn_run", "uvicorn_run"])
def test_promtool_accepts_metrics(run_fixture: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(run_fixture)
    text = scrape(run.url)
    assert total(text, DURATION_COUNT) == len(run.results)
    proc = run_promtool_check(text)
    assert proc.returncode == 0, (
        f"promtool check metrics rc={proc.returncode}\n{proc.stderr.decode()}{proc.stdout.decode()}"
    )


# --- a real Prometheus -----------------------------------------------------------


def test_prometheus_scrapes_exact_route_counts(
    prometheus_server: Server, gunicorn_run: Run
) -> None:
    url = prometheus_server.url
    scraped_after = gunicorn_run.finished_at

    def scraped_after_traffic() -> bool:
        result = prometheus_query(url, 'timestamp(up{job="example"})')
        return bool(result) and float(result[0]["value"][1]) > scraped_after

    assert wait_for(scraped_after_traffic, deadline=30.0, interval=0.25), (
        f"no scrape within 30 s of {time.time() - scraped_after:.1f} s\n"
        + prometheus_server.log_tail()
    )

    up = prometheus_query(url, 'up{job="example"}')
    assert [r["value"][1] for r in up] == ["1"]

    result = prometheus_query(url, "sum by (route) (http_server_request_duration_seconds_count)")
    got = {r["metric"]["route"]: float(r["value"][1]) for r in result}
    assert got == gunicorn_run.expected_routes()
    assert sum(got.values()) == GUNICORN_REQUESTS
    assert got[ITEM] > 0

    boom = prometheus_query(url, 'sum(http_server_exceptions_total{route="/boom/"})')
    assert float(boom[0]["value"][1]) == gunicorn_run.count(BOOM)
    active = prometheus_query(url, "sum(http_server_active_requests)")
    assert float(active[0]["value"][1]) == 0
