"""The example project's background work with real programs: gunicorn, Celery, ``db_worker``.

The example project under gunicorn and its own Celery worker, started as a
reader of docs/example-tasks.md would (``celery -A example worker --beat``
from example_project/), on each broker the example knows: Kombu's filesystem
transport in a temporary folder (the default, what ``make demo`` uses) and a
private redis-server (``EXAMPLE_CELERY_BROKER_URL``). Requests to
``POST /api/v1/reports/`` answer 202 with a task id, and then:

* the worker's JSON lines say the report succeeded, the failing task failed
  and the flaky one was retried and then succeeded, each with the task id
  from the 202 and the enqueuing request's id; beat's ``refresh-stats``
  entry runs too;
* the worker's ``/metrics`` (on ``EXAMPLE_WORKER_METRICS_PORT``) counts each
  run by outcome, and gunicorn's ``/metrics`` each task it enqueued.

A broker that stops answering (the private redis-server paused with
SIGSTOP: connections are accepted, nothing is answered) makes ``POST
/api/v1/reports/`` answer 503 with a short error within the bounds the
settings give Celery (a couple of seconds, not gunicorn's 30 s timeout), while
the other pages answer as usual; once it answers again, reports are enqueued
again.

Then ``make demo``'s launcher (example_project/run_demo.py): it starts gunicorn,
the Celery worker and django-tasks-db's ``manage.py db_worker``; a report and
an export go through, each run by its worker, and Ctrl-C (SIGINT) stops all
three and every process they started; when one dies, the others are stopped.

Everything on 127.0.0.1, free ports, temporary folders; stopped by process id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.register_assert_rewrite("tests.peers", "tests.peers_celery")

from tests.peers import (  # noqa: E402
    EXAMPLE_DIR,
    Server,
    by_labels,
    example_env,
    free_port,
    http,
    make_gunicorn,
    manage,
    scrape,
    wait_for,
)
from tests.peers_celery import CeleryWorker, json_lines, running_redis, running_worker  # noqa: E402

pytestmark = pytest.mark.peers

REPORTS = "/api/v1/reports/"
KINDS = {
    "report": "shop.tasks.build_report",
    "fail": "shop.tasks.fail_report",
    "retry": "shop.tasks.flaky_report",
}
LOG_DEADLINE = 20.0


def project_env(workdir: Path, db: Path, metrics_port: int, **extra: str) -> dict[str, str]:
    """The example's environment: a private database, broker folder and worker metrics port."""
    env = example_env(db)
    env.update(
        EXAMPLE_CELERY_DIR=str(workdir / "celery"),
        EXAMPLE_WORKER_METRICS_PORT=str(metrics_port),
        EXAMPLE_BEAT_SECONDS="1",
    )
    env.update(extra)
    return env


def migrated(env: dict[str, str]) -> None:
    proc = manage(env, "migrate", "--noinput", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def post_report(base_url: str, kind: str) -> tuple[str, str]:
    """POST /api/v1/reports/?kind=...: the task id of the 202 and the request's id."""
    resp = http(f"{base_url}{REPORTS}?kind={kind}", method="POST")
    assert resp.status == 202, (resp.status, resp.body[:500])
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["task"] == KINDS[kind]
    return body["task_id"], resp.headers["x-request-id"]


def lines_of(text: str, task_id: str) -> list[dict[str, Any]]:
    """The JSON lines about one task run (its ``task.id``, or its id in Celery's message)."""
    return [
        line
        for line in json_lines(text)
        if line.get("task", {}).get("id") == task_id or f"[{task_id}]" in line.get("message", "")
    ]


def wait_for_line(read: Any, task_id: str, phrase: str) -> dict[str, Any]:
    """The first JSON line about ``task_id`` whose message holds ``phrase``; fails after a while."""

    def found() -> dict[str, Any] | None:
        return next((x for x in lines_of(read(), task_id) if phrase in x["message"]), None)

    line = wait_for(found, deadline=LOG_DEADLINE)
    assert line, f"no line with {phrase!r} for task {task_id}:\n{read()[-6000:]}"
    return line


# --- gunicorn and `celery -A example worker`, on each broker ------------------------------


@dataclass
class Stack:
    web: Server
    worker: CeleryWorker
    metrics_port: int
    # kind -> (task id, request id) of the report requested
    sent: dict[str, tuple[str, str]]


@pytest.fixture(scope="module", params=["filesystem", "redis"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"example-worker-{request.param}")
    with contextlib.ExitStack() as stack:
        extra = {}
        if request.param == "redis":
            redis = stack.enter_context(running_redis(workdir / "redis"))
            extra["EXAMPLE_CELERY_BROKER_URL"] = redis.url
        metrics_port = free_port()
        env = project_env(workdir, workdir / "db.sqlite3", metrics_port, **extra)
        migrated(env)
        web = make_gunicorn("gunicorn", workdir, env, workers=2)
        worker_env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(workdir / "worker-multiproc"))
        worker = CeleryWorker("example", workdir, worker_env, extra=["--beat"], cwd=EXAMPLE_DIR)
        stack.callback(web.stop)
        web.start()
        stack.enter_context(running_worker(worker))
        web.wait_ready("/metrics")
        sent = {kind: post_report(web.url, kind) for kind in KINDS}
        yield Stack(web, worker, metrics_port, sent)


def test_the_worker_says_each_task_ended_as_it_should(stack):
    read = stack.worker.log_text
    report_id, report_request = stack.sent["report"]
    succeeded = wait_for_line(read, report_id, "succeeded")
    assert succeeded["message"].startswith(f"Task shop.tasks.build_report[{report_id}] succeeded")
    assert succeeded["task"] == {"id": report_id, "name": "shop.tasks.build_report"}
    built = wait_for_line(read, report_id, "report built")
    # The task's own line carries the id of the request that enqueued it.
    assert built["http"]["request"]["id"] == report_request

    fail_id, _ = stack.sent["fail"]
    failed = wait_for_line(read, fail_id, "raised unexpected")
    assert failed["log.level"] == "error"
    assert failed["error"]["type"].endswith("ReportError")

    retry_id, retry_request = stack.sent["retry"]
    retried = wait_for_line(read, retry_id, "retry: Retry in 1")
    then = wait_for_line(read, retry_id, "succeeded")
    assert retried["@timestamp"] < then["@timestamp"]
    for line in lines_of(read(), retry_id):
        if "task" in line:
            assert line["http"]["request"]["id"] == retry_request


def test_beat_runs_refresh_stats(stack):
    def refreshed() -> bool:
        return any(
            line.get("task", {}).get("name") == "shop.tasks.refresh_stats"
            and "succeeded" in line["message"]
            for line in stack.worker.json_lines()
        )

    assert wait_for(refreshed, deadline=LOG_DEADLINE), stack.worker.log_tail()


def test_worker_and_web_metrics_count_the_tasks(stack):
    worker_url = f"http://127.0.0.1:{stack.metrics_port}"
    expected = {
        ("shop.tasks.build_report", "success"): 1.0,
        ("shop.tasks.fail_report", "failure"): 1.0,
        ("shop.tasks.flaky_report", "retry"): 1.0,
        ("shop.tasks.flaky_report", "success"): 1.0,
    }

    def finished() -> dict[tuple[str, ...], float]:
        counts = by_labels(scrape(worker_url), "tasks_finished_total", "task", "outcome")
        return {key: counts.get(key, 0.0) for key in expected}

    assert wait_for(lambda: finished() == expected, deadline=LOG_DEADLINE), finished()
    enqueued = by_labels(scrape(stack.web.url), "tasks_enqueued_total", "task")
    assert enqueued == {(name,): 1.0 for name in KINDS.values()}


# --- a broker that does not answer --------------------------------------------------------

# Longer than the settings' bound on a publish to a broker that does not answer
# (a connection attempt, one retry: about 3 s), far shorter than what it was
# without them (the request held until gunicorn's 30 s timeout killed the worker).
PUBLISH_BOUND = 10.0


def test_reports_answer_503_soon_while_redis_is_paused_and_other_pages_are_unaffected(
    tmp_path,
):
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(running_redis(tmp_path / "redis"))
        env = project_env(
            tmp_path,
            tmp_path / "db.sqlite3",
            free_port(),
            EXAMPLE_CELERY_BROKER_URL=redis.url,
        )
        migrated(env)
        web = make_gunicorn("gunicorn", tmp_path, env, workers=2)
        stack.callback(web.stop)
        web.start()
        web.wait_ready("/api/v1/items/1/")
        post_report(web.url, "report")  # the web process holds a connection to Redis now

        redis.pause()
        stack.callback(redis.resume)
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1))
        for _ in range(2):  # on the connection it held, then on a new one
            # timeout: urllib raises TimeoutError if no answer comes within the bound.
            pending = pool.submit(http, f"{web.url}{REPORTS}", method="POST", timeout=PUBLISH_BOUND)
            # Meanwhile gunicorn's other worker serves the other pages.
            assert http(web.url + "/api/v1/items/1/", timeout=PUBLISH_BOUND).status == 200
            resp = pending.result()
            assert resp.status == 503, (resp.status, resp.body[:500])
            assert resp.headers["content-type"] == "application/json"
            assert resp.json() == {"error": "broker unavailable"}  # no exception text
        assert http(web.url + "/api/v1/items/1/", timeout=PUBLISH_BOUND).status == 200

        redis.resume()
        post_report(web.url, "report")  # answered again: 202
        # Why the 503s: one error line each, with the broker's error.
        errors = [
            line
            for line in json_lines(web.log_path.read_text(errors="replace"))
            if line["message"] == "report not enqueued: broker unavailable"
        ]
        assert len(errors) == 2, web.log_tail()
        assert all(line["error"]["type"] == "kombu.exceptions.OperationalError" for line in errors)


# --- make demo's launcher ---------------------------------------------------------------------


def gunicorn_args() -> str:
    """gunicorn 25+ opens a control socket at a fixed path: two servers would share it."""
    from gunicorn.config import KNOWN_SETTINGS

    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        return "--no-control-socket"
    return ""


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str
    metrics_url: str
    db_metrics_url: str
    demo_dir: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tree(self) -> list[psutil.Process]:
        """The launcher's descendants now."""
        return psutil.Process(self.proc.pid).children(recursive=True)


@contextlib.contextmanager
def running_demo(tmp_path: Path) -> Iterator[Demo]:
    """run_demo.py as `make demo` runs it, on free ports, its folder in ``tmp_path``."""
    db = tmp_path / "db.sqlite3"
    env = example_env(db)
    port, metrics_port, db_metrics_port = free_port(), free_port(), free_port()
    env.update(
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_CMD_ARGS=gunicorn_args(),
        EXAMPLE_WORKER_METRICS_PORT=str(metrics_port),
        EXAMPLE_DB_WORKER_METRICS_PORT=str(db_metrics_port),
    )
    env.pop("EXAMPLE_CELERY_DIR", None)  # the launcher's default: DEMO_DIR/celery
    migrated(env)
    demo_dir = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "run_demo.py", str(demo_dir)],
            cwd=EXAMPLE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    demo = Demo(
        proc,
        log,
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{metrics_port}",
        f"http://127.0.0.1:{db_metrics_port}",
        demo_dir,
    )
    try:
        up = wait_for(
            lambda: (
                http(demo.url + "/api/v1/items/1/", timeout=2).status == 200
                and http(demo.metrics_url + "/metrics", timeout=2).status == 200
                and http(demo.db_metrics_url + "/metrics", timeout=2).status == 200
                and " ready." in demo.text()
                and "Starting worker" in demo.text()
            ),
            deadline=40.0,
        )
        assert up, demo.text()[-6000:]
        yield demo
    finally:
        if proc.poll() is None:
            # What is left after the test: the launcher's group, then the
            # programs' own groups (each started its own session).
            leftovers = demo.tree()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            for child in leftovers:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            proc.wait(timeout=10)


def gone(processes: list[psutil.Process]) -> bool:
    return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in processes)


def post_export(base_url: str) -> tuple[str, str]:
    """POST /api/v1/exports/ (Django's task framework): the task id of the 202, the request id."""
    resp = http(f"{base_url}/api/v1/exports/", method="POST")
    assert resp.status == 202, (resp.status, resp.body[:500])
    body = resp.json()
    assert body["task"] == "shop.background.export_orders"
    return body["task_id"], resp.headers["x-request-id"]


def test_the_demo_launcher_runs_all_three_and_ctrl_c_stops_them(tmp_path):
    with running_demo(tmp_path) as demo:
        tree = demo.tree()
        commands = [" ".join(p.cmdline()) for p in tree]
        assert any("gunicorn" in c for c in commands), commands
        assert sum("celery -A example worker" in c and "--beat" in c for c in commands) >= 3, (
            commands  # the main process, two prefork children (and beat)
        )
        assert sum("manage.py db_worker --no-reload" in c for c in commands) == 1, commands
        task_id, _ = post_report(demo.url, "report")
        export_id, export_request = post_export(demo.url)
        wait_for_line(demo.text, task_id, "succeeded")
        # The db worker ran the export: its line carries the task and the request.
        exported = wait_for_line(demo.text, export_id, "orders exported")
        assert exported["task"] == {"id": export_id, "name": "shop.background.export_orders"}
        assert exported["http"]["request"]["id"] == export_request
        # The default broker: the filesystem transport in DEMO_DIR/celery.
        assert list((demo.demo_dir / "celery" / "processed").glob("*.msg"))
        # The worker's metrics store is its own, not the web servers'.
        assert list((demo.demo_dir / "worker-multiproc").iterdir())
        # The db worker's /metrics and heartbeat are its own too.
        finished = by_labels(scrape(demo.db_metrics_url), "tasks_finished_total", "task", "outcome")
        assert finished == {("shop.background.export_orders", "success"): 1.0}
        assert (demo.demo_dir / "db-worker-heartbeat").exists()
        assert (demo.demo_dir / "celery" / "worker-heartbeat").exists()

        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(timeout=30) == 0, demo.text()[-4000:]
        assert wait_for(lambda: gone(tree), deadline=5.0), [p for p in tree if not gone([p])]
        assert "Warm shutdown" in demo.text()
        assert "Shutting down: Master" in demo.text()
        assert "shutting down gracefully" in demo.text()  # the db worker's SIGTERM
        assert not (demo.demo_dir / "db-worker-heartbeat").exists()


def test_the_demo_launcher_stops_the_workers_when_gunicorn_dies(tmp_path):
    with running_demo(tmp_path) as demo:
        tree = demo.tree()
        assert any("db_worker" in " ".join(p.cmdline()) for p in tree)
        master = next(p for p in tree if "gunicorn" in " ".join(p.cmdline()))
        master.kill()

        assert demo.proc.wait(timeout=30) == 1, demo.text()[-4000:]
        assert "run_demo: gunicorn exited" in demo.text()
        # Every process is gone, gunicorn's orphaned workers too: the launcher
        # sent SIGTERM to what was left of gunicorn's process group (on their
        # own they take up to half gunicorn's 30 s timeout to notice).
        assert wait_for(lambda: gone(tree), deadline=3.0), [
            (p.pid, p.cmdline()) for p in tree if not gone([p])
        ]
