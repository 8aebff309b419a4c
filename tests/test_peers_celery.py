"""Celery end to end: requests enqueue tasks, a real prefork worker runs them, real peers see it.

A private redis-server is the broker; a real ``celery worker --pool prefork
--concurrency 2 --max-tasks-per-child=2`` runs ``tests.celery_app`` (so its
children are replaced several times during the run); a real gunicorn serves
the project's view that enqueues a task; a real OTLP collector (rotel)
receives the spans of both. N requests, each with its own ``traceparent`` and
request id, enqueue a task that succeeds, fails, is retried once, or makes
two database queries. Then:

* each task's consumer span is in the enqueuing request's trace, under the
  producer span, one per run (the retried task has two), with the task's
  two queries as its children;
* the worker's JSON lines about each task carry its ``task.id``, its name,
  the enqueuing request's ``http.request.id`` and the trace's ``trace.id``;
* the worker's metrics store (read as ``/metrics`` reads it) counts every
  run by outcome, exactly, across the children that came and went, and the
  web process counts the tasks it enqueued.
"""

from __future__ import annotations

import collections
import secrets
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

pytest.register_assert_rewrite("tests.peers", "tests.peers_tracing", "tests.peers_celery")

from django_observability.metrics_store.reader import StoreCollector  # noqa: E402
from tests.peers import REPO, Server, by_labels, free_port, http, scrape, wait_for  # noqa: E402
from tests.peers import executable as program  # noqa: E402
from tests.peers_celery import (  # noqa: E402
    CeleryWorker,
    Redis,
    celery_app_env,
    running_worker,
)
from tests.peers_tracing import Collector, Span  # noqa: E402

pytest_plugins = ["tests.peers", "tests.peers_tracing", "tests.peers_celery"]

pytestmark = pytest.mark.peers

KINDS = ("ok", "failing", "retried", "queries")
PER_KIND = 3
N = PER_KIND * len(KINDS)
# (task, outcome) -> runs, for PER_KIND tasks of each kind.
EXPECTED_RUNS = {
    ("tests.ok", "success"): PER_KIND,
    ("tests.failing", "failure"): PER_KIND,
    ("tests.retried", "retry"): PER_KIND,
    ("tests.retried", "success"): PER_KIND,
    ("tests.queries", "success"): PER_KIND,
}


def tracing(env: dict[str, str], collector: Collector) -> dict[str, str]:
    env.update(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    return env


def web_server(workdir: Path, env: dict[str, str]) -> Server:
    port = free_port()
    return Server(
        name="web",
        argv=[
            program("gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--no-control-socket",
            "tests.celery_app.wsgi:application",
        ],
        cwd=REPO,
        env=env,
        log_path=workdir / "web.log",
        url=f"http://127.0.0.1:{port}",
    )


def store_text(path: Path) -> str:
    """The worker's metrics store as ``/metrics`` would read it (classic text)."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(str(path)))
    return generate_latest(registry).decode()


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, redis_server: Redis, collector: Collector
) -> dict:
    """The worker and the web server started, N tasks enqueued by N requests and run."""
    workdir = tmp_path_factory.mktemp("celery")
    db = workdir / "db.sqlite3"
    worker_store = workdir / "worker-metrics"
    since = collector.mark()
    worker_env = tracing(celery_app_env(redis_server.url, db, worker_store), collector)
    web_env = tracing(celery_app_env(redis_server.url, db, workdir / "web-metrics"), collector)
    worker = CeleryWorker(
        "tests.celery_app.app:app", workdir, worker_env, extra=["--max-tasks-per-child=2"]
    )
    web = web_server(workdir, web_env)
    web.start()
    try:
        with running_worker(worker):
            web.wait_ready("/health/live/")
            sent = []
            for i in range(N):
                kind = KINDS[i % len(KINDS)]
                trace_id, parent = traceparent()
                request_id = f"req-{i}-{secrets.token_hex(4)}"
                response = http(
                    f"{web.url}/enqueue/{kind}/",
                    "POST",
                    headers={"traceparent": parent, "X-Request-ID": request_id},
                )
                assert response.status == 202, response.body
                body = response.json()
                assert body["request_id"] == request_id
                sent.append((kind, trace_id, request_id, body["task_id"]))

            def finished() -> dict:
                counts = by_labels(
                    store_text(worker_store), "tasks_finished_total", "task", "outcome"
                )
                return counts if sum(counts.values()) >= len(EXPECTED_RUNS) * PER_KIND else {}

            wait_for(finished, deadline=30.0)
            time.sleep(0.5)  # let a stray extra run (there must be none) show up
            store = store_text(worker_store)
            children = worker.child_pids()
        web_metrics = scrape(web.url)
    finally:
        web.stop()
    return {
        "sent": sent,
        "worker": worker,
        "store": store,
        "children_at_end": children,
        "web_metrics": web_metrics,
        "collector": collector,
        "since": since,
    }


def test_every_run_is_counted_once_by_outcome_through_child_restarts(run: dict) -> None:
    store = run["store"]
    finished = by_labels(store, "tasks_finished_total", "task", "outcome")
    assert finished == {k: float(v) for k, v in EXPECTED_RUNS.items()}, store
    durations = by_labels(store, "task_duration_seconds_count", "task", "outcome")
    assert durations == {k: float(v) for k, v in EXPECTED_RUNS.items()}
    runs = sum(EXPECTED_RUNS.values())
    waits = by_labels(store, "task_queue_wait_seconds_count", "task")
    assert sum(waits.values()) == runs, waits  # every run came with our enqueue header
    assert all(value == 0 for value in by_labels(store, "tasks_active", "task").values())
    # The worker enqueued the retries (a retry is a new message), the web the tasks.
    retried = by_labels(store, "tasks_enqueued_total", "task")
    assert retried == {("tests.retried",): float(PER_KIND)}
    web = by_labels(run["web_metrics"], "tasks_enqueued_total", "task")
    assert web == {(f"tests.{kind}",): float(PER_KIND) for kind in KINDS}
    # Every message enqueued ended in exactly one outcome.
    assert sum(web.values()) + sum(retried.values()) == sum(finished.values())
    # --max-tasks-per-child=2: the runs took more children than the pool's two.
    pids = {line["process"]["pid"] for line in run["worker"].json_lines() if "task" in line}
    assert len(pids) > 2, pids
    assert not pids & run["children_at_end"] or len(pids - run["children_at_end"]) >= 2


def test_worker_lines_carry_task_request_and_trace_ids(run: dict) -> None:
    lines = run["worker"].json_lines()
    by_task = collections.defaultdict(list)
    for line in lines:
        if "task" in line:
            by_task[line["task"]["id"]].append(line)
    for kind, trace_id, request_id, task_id in run["sent"]:
        task_lines = by_task.get(task_id)
        assert task_lines, f"no line for {kind} task {task_id}"
        for line in task_lines:
            assert line["task"]["name"] == f"tests.{kind}"
            assert line["http"]["request"]["id"] == request_id, line
            assert line["trace"]["id"] == trace_id, line
        messages = " ".join(line["message"] for line in task_lines)
        if kind == "failing":
            assert "raised unexpected" in messages
            (error,) = [line for line in task_lines if line["log.level"] == "error"]
            assert error["error"]["type"] == "tests.celery_app.tasks.Boom"
        else:
            assert "succeeded" in messages
        if kind == "ok":
            (ran,) = [line for line in task_lines if line["message"] == "ok ran"]
            assert ran["seen_request_id"] == request_id  # get_request_id() in the task
    # Lines outside a task (the worker's own) carry no task fields.
    assert any("ready." in line["message"] and "task" not in line for line in lines)


def test_consumer_spans_are_in_the_enqueuing_traces_with_db_children(run: dict) -> None:
    collector: Collector = run["collector"]
    sent = run["sent"]
    wanted = {trace_id for _, trace_id, _, _ in sent}

    def consumers(spans: list[Span]) -> list[Span]:
        return [s for s in spans if s.kind == "SPAN_KIND_CONSUMER" and s.trace_id in wanted]

    spans = collector.wait_spans(
        lambda spans: len(consumers(spans)) >= sum(EXPECTED_RUNS.values()),
        since=run["since"],
        deadline=20.0,
    )
    by_trace = collections.defaultdict(list)
    for span in spans:
        if span.trace_id in wanted:
            by_trace[span.trace_id].append(span)
    for kind, trace_id, request_id, task_id in sent:
        trace = by_trace[trace_id]
        (server,) = [s for s in trace if s.kind == "SPAN_KIND_SERVER"]
        assert server.attributes["http.request.id"] == request_id
        producers = [s for s in trace if s.kind == "SPAN_KIND_PRODUCER"]
        runs = [s for s in trace if s.kind == "SPAN_KIND_CONSUMER"]
        expected = 2 if kind == "retried" else 1
        assert len(runs) == expected, (kind, [s.name for s in trace])  # one span per run
        assert all(s.name == f"run tests.{kind}" for s in runs)
        first = [s for s in producers if s.parent_id == server.span_id]
        assert len(first) == 1, (kind, producers)
        ids = {s.span_id for s in producers}
        assert all(s.parent_id in ids for s in runs), (kind, runs, producers)
        assert all(s.attributes.get("messaging.system") == "celery" for s in runs)
        assert all(s.name == f"enqueue tests.{kind}" for s in producers)
        # The first run's consumer span carries the task id.
        assert any(s.attributes.get("messaging.message.id") == task_id for s in runs)
        if kind == "failing":
            assert runs[0].status_code == "STATUS_CODE_ERROR"
        if kind == "queries":
            (consumer,) = runs
            children = [s for s in trace if s.parent_id == consumer.span_id]
            queries = [s for s in children if s.attributes.get("db.system.name") == "sqlite"]
            assert [s.attributes["db.query.text"] for s in queries] == ["SELECT 1", "SELECT 2"]
            assert all(s.kind == "SPAN_KIND_CLIENT" for s in queries)
        # The spans of the task runs came from the worker's children, not the web.
        assert all(s.service_instance != server.service_instance for s in runs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
