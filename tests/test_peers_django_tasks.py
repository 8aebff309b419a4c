"""Django's task framework end to end: the example's exports, django-tasks-db's real worker, rotel.

The example project under gunicorn and a real ``python manage.py db_worker``
started from example_project/ (django-tasks-db's worker, ``django.tasks`` on
Django 6, the django-tasks backport on 5.2), one private SQLite database
for both, both exporting spans over OTLP/HTTP to a real collector (rotel).
N requests to ``POST /api/v1/exports/``, each with its own ``traceparent``
and request id, enqueue an export that succeeds or (``?kind=fail``) fails.
The task's row is all the web process and the worker share. Then:

* each task's consumer span ``run <task>`` is in the trace of the request
  that enqueued it, a child of that request's producer span ``enqueue
  <task>``, with the task's queries (DB client spans) as its children; the
  failing one has status ERROR and the exception's class as ``error.type``;
  the worker's polling makes no span;
* the worker's JSON lines about each task carry ``task.id`` (the 202's id),
  ``task.name`` and the enqueuing request's ``http.request.id`` and trace id;
* the worker's ``/metrics`` (on its own port, read with the token the
  example's settings take from ``OBSERVABILITY_AUTH_TOKEN``) counts exactly
  the successes and failures, gunicorn's ``/metrics`` each task enqueued;
* ``manage.py observability_worker_alive`` passes while the worker runs and
  fails once it has stopped (SIGTERM: it exits 0 and removes its heartbeat).

Everything on 127.0.0.1, free ports, temporary folders; stopped by process id.
"""

from __future__ import annotations

import collections
import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.peers", "tests.peers_tracing", "tests.peers_celery")

from tests.peers import (  # noqa: E402
    EXAMPLE_DIR,
    Server,
    by_labels,
    example_env,
    free_port,
    http,
    make_gunicorn,
    manage,
    stop_process,
    wait_for,
)
from tests.peers_celery import json_lines  # noqa: E402
from tests.peers_tracing import Collector, Span  # noqa: E402

pytest_plugins = ["tests.peers", "tests.peers_tracing"]

pytestmark = pytest.mark.peers

EXPORTS = "/api/v1/exports/"
EXPORT = "shop.background.export_orders"
FAIL = "shop.background.fail_export"
# The kind of each request, in order: N tasks, some of them failing.
KINDS = ("orders", "fail", "orders", "orders", "fail", "orders")
NAMES = {"orders": EXPORT, "fail": FAIL}
N = len(KINDS)
TOKEN = f"peers-{secrets.token_hex(16)}"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/plain"}
DEADLINE = 20.0


def scrape(base_url: str) -> str:
    """``/metrics`` read with the token, as a Prometheus outside loopback would."""
    resp = http(base_url + "/metrics", headers=AUTH)
    assert resp.status == 200, (resp.status, resp.body[:500])
    return resp.body.decode()


@dataclass
class DbWorker:
    """A real ``python manage.py db_worker`` of the example project, logging to a file."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def json_lines(self) -> list[dict[str, Any]]:
        return json_lines(self.log_text())


@contextlib.contextmanager
def running_db_worker(workdir: Path, env: dict[str, str], metrics_port: int) -> Iterator[DbWorker]:
    """The worker started in its own session; ready once it polls and serves ``/metrics``."""
    log_path = workdir / "db_worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "db_worker",
                "--no-reload",
                "--no-startup-delay",
                "--interval",
                "0.2",
            ],
            cwd=EXAMPLE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = DbWorker(proc, log_path, f"http://127.0.0.1:{metrics_port}")
    try:
        ready = wait_for(
            lambda: (
                proc.poll() is None
                and "Starting worker" in worker.log_text()
                and http(worker.metrics_url + "/metrics", headers=AUTH, timeout=2).status == 200
            ),
            deadline=30.0,
        )
        assert ready, f"db_worker not ready (status {proc.poll()}):\n{worker.log_text()[-6000:]}"
        yield worker
    finally:
        stop_process(proc)


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


@dataclass
class Sent:
    kind: str
    name: str
    trace_id: str
    request_id: str
    task_id: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> dict[str, Any]:
    """gunicorn and the db worker started, N exports enqueued by N requests and run."""
    workdir = tmp_path_factory.mktemp("django-tasks")
    since = collector.mark()
    metrics_port = free_port()
    heartbeat = workdir / "db-worker-heartbeat"
    env = example_env(workdir / "db.sqlite3")
    env.update(
        EXAMPLE_CELERY_DIR=str(workdir / "celery"),
        OBSERVABILITY_AUTH_TOKEN=TOKEN,
        EXAMPLE_TRACING_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    proc = manage(env, "migrate", "--noinput", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    worker_env = dict(
        env,
        EXAMPLE_WORKER_METRICS_PORT=str(metrics_port),
        EXAMPLE_WORKER_HEARTBEAT_FILE=str(heartbeat),
    )
    web: Server = make_gunicorn("web", workdir, env, workers=2)
    with contextlib.ExitStack() as stack:
        web.start()
        stack.callback(web.stop)
        worker = stack.enter_context(running_db_worker(workdir, worker_env, metrics_port))
        web.wait_ready("/health/live/")
        alive_running = manage(worker_env, "observability_worker_alive", timeout=60)

        sent = []
        for i, kind in enumerate(KINDS):
            trace_id, parent = traceparent()
            request_id = f"export-{i}-{secrets.token_hex(4)}"
            query = "?kind=fail" if kind == "fail" else ""
            resp = http(
                f"{web.url}{EXPORTS}{query}",
                "POST",
                headers={"traceparent": parent, "X-Request-ID": request_id},
            )
            assert resp.status == 202, (resp.status, resp.body[:500])
            assert resp.headers["x-request-id"] == request_id
            body = resp.json()
            assert body["task"] == NAMES[kind]
            sent.append(Sent(kind, NAMES[kind], trace_id, request_id, body["task_id"]))

        def finished() -> dict[tuple[str, ...], float]:
            counts = by_labels(
                scrape(worker.metrics_url), "tasks_finished_total", "task", "outcome"
            )
            return counts if sum(counts.values()) >= N else {}

        wait_for(finished, deadline=DEADLINE)
        time.sleep(0.5)  # a stray extra run (there must be none) would show up
        worker_metrics = scrape(worker.metrics_url)
        web_metrics = scrape(web.url)

        wanted = {s.trace_id for s in sent}

        def arrived(spans: list[Span]) -> bool:
            ours = [s for s in spans if s.trace_id in wanted]
            return sum(s.kind == "SPAN_KIND_CONSUMER" for s in ours) >= N

        spans = collector.wait_spans(arrived, since=since, deadline=DEADLINE)

        stop_process(worker.proc)
        alive_stopped = manage(worker_env, "observability_worker_alive", timeout=60)
    return {
        "sent": sent,
        "spans": spans,
        "worker": worker,
        "worker_metrics": worker_metrics,
        "web_metrics": web_metrics,
        "alive_running": alive_running,
        "alive_stopped": alive_stopped,
        "heartbeat": heartbeat,
    }


def test_consumer_spans_are_in_the_enqueuing_traces_with_db_children(run: dict) -> None:
    spans: list[Span] = run["spans"]
    by_trace = collections.defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    worker_instances = set()
    for sent in run["sent"]:
        trace = by_trace[sent.trace_id]
        names = [(s.name, s.kind) for s in trace]
        (server,) = [s for s in trace if s.kind == "SPAN_KIND_SERVER"]
        assert server.attributes["http.request.id"] == sent.request_id
        (producer,) = [s for s in trace if s.kind == "SPAN_KIND_PRODUCER"]
        assert producer.name == f"enqueue {sent.name}", names
        assert producer.parent_id == server.span_id
        assert producer.attributes["messaging.system"] == "django.tasks"
        assert producer.attributes["messaging.message.id"] == sent.task_id
        # The task's row is written inside the producer span.
        inserts = [s for s in trace if s.parent_id == producer.span_id]
        assert any(str(s.attributes.get("db.query.text", "")).startswith("INSERT") for s in inserts)

        (consumer,) = [s for s in trace if s.kind == "SPAN_KIND_CONSUMER"]
        assert consumer.name == f"run {sent.name}", names
        assert consumer.parent_id == producer.span_id
        assert consumer.attributes["messaging.message.id"] == sent.task_id
        assert consumer.attributes["messaging.operation.type"] == "process"
        # It ran in the worker, not in the web process.
        assert consumer.service_instance != server.service_instance
        worker_instances.add(consumer.service_instance)
        # Its children: the task's own queries, then the worker's UPDATE of the
        # task's row with the result (before the framework's task_finished).
        queries = sorted(
            (s for s in trace if s.parent_id == consumer.span_id), key=lambda s: s.start_ns
        )
        assert all(s.kind == "SPAN_KIND_CLIENT" for s in queries), names
        assert all(s.attributes.get("db.system.name") == "sqlite" for s in queries), names
        operations = [s.attributes.get("db.operation.name") for s in queries]
        if sent.kind == "orders":
            assert consumer.status_code == "STATUS_CODE_UNSET"
            assert operations == ["SELECT", "SELECT", "UPDATE"], names
            assert all('"auth_' in str(s.attributes["db.query.text"]) for s in queries[:2])
        else:
            assert consumer.status_code == "STATUS_CODE_ERROR"
            assert consumer.attributes["error.type"] == "shop.background.ExportError"
            assert operations == ["UPDATE"], names
        assert "dbtaskresult" in str(queries[-1].attributes["db.query.text"])
    # The worker polled the table many times: none of it is a span (nor a trace of its own).
    (instance,) = worker_instances
    wanted = {sent.trace_id for sent in run["sent"]}
    strays = [s for s in spans if s.service_instance == instance and s.trace_id not in wanted]
    assert not strays, [(s.name, s.attributes.get("db.query.text")) for s in strays[:5]]


def test_worker_lines_carry_task_request_and_trace_ids(run: dict) -> None:
    lines = run["worker"].json_lines()
    by_task = collections.defaultdict(list)
    for line in lines:
        if "task" in line:
            by_task[line["task"]["id"]].append(line)
    assert set(by_task) == {sent.task_id for sent in run["sent"]}
    for sent in run["sent"]:
        task_lines = by_task[sent.task_id]
        for line in task_lines:
            assert line["task"]["name"] == sent.name, line
            assert line["http"]["request"]["id"] == sent.request_id, line
            assert line["trace"]["id"] == sent.trace_id, line
        messages = [line["message"] for line in task_lines]
        if sent.kind == "orders":
            assert "orders exported" in messages
            assert f"Task id={sent.task_id} path={sent.name} state=SUCCESSFUL" in messages
        else:
            (error,) = [line for line in task_lines if line["log.level"] == "error"]
            assert error["message"] == f"Task id={sent.task_id} path={sent.name} state=FAILED"
            assert error["error"]["type"] == "shop.background.ExportError"
    # The worker's own lines carry no task fields.
    assert any(
        line["message"].startswith("Starting worker") and "task" not in line for line in lines
    )


def test_worker_metrics_count_each_outcome_and_web_metrics_each_enqueue(run: dict) -> None:
    store = run["worker_metrics"]
    per_kind = collections.Counter(sent.kind for sent in run["sent"])
    finished = by_labels(store, "tasks_finished_total", "task", "outcome")
    assert finished == {
        (EXPORT, "success"): float(per_kind["orders"]),
        (FAIL, "failure"): float(per_kind["fail"]),
    }, store
    durations = by_labels(store, "task_duration_seconds_count", "task", "outcome")
    assert durations == finished
    waits = by_labels(store, "task_queue_wait_seconds_count", "task")
    assert waits == {(EXPORT,): float(per_kind["orders"]), (FAIL,): float(per_kind["fail"])}
    assert all(value == 0 for value in by_labels(store, "tasks_active", "task").values())
    assert by_labels(store, "tasks_enqueued_total", "task") == {}  # the worker enqueued nothing
    enqueued = by_labels(run["web_metrics"], "tasks_enqueued_total", "task")
    assert enqueued == {(EXPORT,): float(per_kind["orders"]), (FAIL,): float(per_kind["fail"])}


def test_worker_alive_while_it_runs_and_not_after_it_stopped(run: dict) -> None:
    running = run["alive_running"]
    assert running.returncode == 0, running.stdout + running.stderr
    assert "worker alive" in running.stdout
    # SIGTERM while it waits for work: a graceful stop that removes the heartbeat file.
    assert run["worker"].proc.returncode == 0, run["worker"].log_text()[-3000:]
    assert not run["heartbeat"].exists()
    stopped = run["alive_stopped"]
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "no heartbeat file" in stopped.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
