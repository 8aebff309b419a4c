"""A real prefork Celery worker's /metrics, heartbeat and broker check, against a real Redis.

A private redis-server is the broker; a real ``celery -A tests.worker_app.app
worker --pool prefork --concurrency 2 --max-tasks-per-child=1`` runs without
``PROMETHEUS_MULTIPROC_DIR`` (its app module calls ``configure()``, which
gives it a private directory). Then:

* its main process serves ``/metrics`` on the configured port: 401 without
  the token, 403 with a wrong one, 200 with it, text that promtool accepts;
* every task run is counted there though each child ran one task and was
  replaced; the children that exited leave no live series behind;
* the heartbeat stays fresh while the broker is stopped (SIGSTOP), goes stale
  when the worker's main process is stopped, and is fresh again after SIGCONT;
* the broker stopped makes the broker check fail within its timeout while a
  readiness probe answers in time; SIGCONT makes it pass again;
* when the worker stops, its private directory and heartbeat file are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery
from django.test import Client, override_settings

pytest.register_assert_rewrite("tests.peers", "tests.peers_celery")

from django_observability.health import registry  # noqa: E402
from django_observability.health.runner import runner  # noqa: E402
from tests.peers import REPO, by_labels, free_port, http, run_promtool_check, wait_for  # noqa: E402
from tests.peers_celery import CeleryWorker, Redis, celery_app_env, running_redis  # noqa: E402

pytestmark = pytest.mark.peers

TOKEN = "worker-peer-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/plain"}
N = 6
INTERVAL = 0.3  # heartbeat seconds
MAX_AGE = 1.5


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory):
    """A Redis of this module's own: the tests stop it."""
    with running_redis(tmp_path_factory.mktemp("worker-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis: Redis):
    workdir = tmp_path_factory.mktemp("worker")
    port = free_port()
    env = celery_app_env(
        redis.url,
        workdir / "db.sqlite3",
        DJANGO_SETTINGS_MODULE="tests.worker_app.settings",
        WORKER_APP_BROKER_URL=redis.url,
        WORKER_APP_METRICS_PORT=str(port),
        WORKER_APP_TOKEN=TOKEN,
        WORKER_APP_HEARTBEAT=str(workdir / "heartbeat"),
        WORKER_APP_HEARTBEAT_INTERVAL=str(INTERVAL),
        TMPDIR=str(workdir),  # where configure() makes its directory
    )
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    celery = CeleryWorker(
        "tests.worker_app.app:app", workdir, env, extra=["--max-tasks-per-child=1"]
    )
    celery.start()
    try:
        celery.wait_ready()
        celery.url = f"http://127.0.0.1:{port}"
        celery.heartbeat = workdir / "heartbeat"
        celery.tmp = workdir
        yield celery
    finally:
        celery.stop()


def scrape(worker: CeleryWorker) -> str:
    response = http(worker.url + "/metrics", headers=AUTH)
    assert response.status == 200, response.body[:300]
    return response.body.decode()


def alive(worker: CeleryWorker) -> subprocess.CompletedProcess[str]:
    """``manage.py observability_worker_alive``, as a container's exec probe runs it."""
    return subprocess.run(
        [sys.executable, "-m", "django", "observability_worker_alive", "--max-age", str(MAX_AGE)],
        env=worker.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_metrics_answer_on_the_port_protected(worker: CeleryWorker) -> None:
    assert http(worker.url + "/metrics").status == 401
    wrong = http(worker.url + "/metrics", headers={"Authorization": "Bearer not-the-token-000"})
    assert wrong.status == 403
    response = http(worker.url + "/metrics", headers=AUTH)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.body.decode()
    assert by_labels(text, "django_observability_build_info")
    assert by_labels(text, "django_observability_metrics_store_writable") == {(): 1.0}
    lint = run_promtool_check(text)
    assert lint.returncode == 0, lint.stderr
    gzipped = http(worker.url + "/metrics", headers={**AUTH, "Accept-Encoding": "gzip"})
    assert gzipped.headers["content-encoding"] == "gzip"


def test_runs_are_counted_through_child_restarts(worker: CeleryWorker, redis: Redis) -> None:
    before = worker.child_pids()
    producer = Celery("producer", broker=redis.url, set_as_current=False)
    for _ in range(N):
        producer.send_task("worker_app.noop")

    def counted() -> float:
        text = scrape(worker)
        done = by_labels(text, "tasks_finished_total", "task", "outcome")
        return done.get(("worker_app.noop", "success"), 0.0) >= N and text

    text = wait_for(counted, deadline=30.0)
    assert text, worker.log_tail()
    time.sleep(0.5)
    text = scrape(worker)
    assert by_labels(text, "tasks_finished_total", "task", "outcome") == {
        ("worker_app.noop", "success"): float(N)
    }
    assert by_labels(text, "task_duration_seconds_count", "task", "outcome") == {
        ("worker_app.noop", "success"): float(N)
    }
    # One task per child: every child of the start was replaced, several times over.
    assert not before & worker.child_pids()
    store = next(worker.tmp.glob("django-observability-worker-*"))

    seen: list[tuple[set[int], set[int]]] = []

    def only_live_series() -> bool:
        # The children that exited (and were reaped) leave no live series behind.
        live = {worker.proc.pid} | worker.child_pids()
        pids = {int(pid) for (pid,) in by_labels(scrape(worker), "django_process_threads", "pid")}
        seen.append((pids, live | worker.child_pids()))
        return worker.proc.pid in pids and pids <= seen[-1][1]

    # Failed before the fork guard: a child forked during a scrape kept the
    # store's lock, and no compaction could run until it exited.
    assert wait_for(only_live_series, deadline=10.0), (seen[-1], sorted(os.listdir(store)))
    assert (store / "counter_archive.db").exists()


def test_heartbeat_and_broker_check_while_the_broker_is_stopped(
    worker: CeleryWorker, redis: Redis
) -> None:
    assert alive(worker).returncode == 0
    checks = {"broker": ("django_observability.health.broker.BrokerCheck", {"url": redis.url})}
    probe = Client()
    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS=checks,
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["broker"],
        OBSERVABILITY_HEALTH_TIMEOUT=0.5,
        OBSERVABILITY_HEALTH_DEADLINE=0.8,
        OBSERVABILITY_HEALTH_CACHE_SECONDS=0,
    ):
        registry.reset()
        runner.clear()
        assert probe.get("/health/ready/").status_code == 200
        redis.pause()
        try:
            for _ in range(3):
                start = time.monotonic()
                response = probe.get("/health/ready/")
                assert time.monotonic() - start < 1.0
                assert response.status_code == 503
                assert probe.get("/health/live/").status_code == 200
            # The worker's liveness does not depend on the broker.
            time.sleep(MAX_AGE)
            result = alive(worker)
            assert result.returncode == 0, result.stderr
            assert http(worker.url + "/metrics", headers=AUTH).status == 200
        finally:
            redis.resume()
        assert wait_for(lambda: probe.get("/health/ready/").status_code == 200, deadline=5.0)
    registry.reset()
    runner.clear()


def test_heartbeat_goes_stale_when_the_main_process_is_stopped(worker: CeleryWorker) -> None:
    assert alive(worker).returncode == 0
    os.kill(worker.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(MAX_AGE + 0.5)
        stale = alive(worker)
        assert stale.returncode == 1
        assert "worker not alive: heartbeat" in stale.stderr
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    assert wait_for(lambda: alive(worker).returncode == 0, deadline=5.0)


def test_a_stopped_worker_leaves_nothing_behind(worker: CeleryWorker) -> None:
    store = next(worker.tmp.glob("django-observability-worker-*"))
    worker.stop()
    assert worker.proc.returncode == 0, worker.log_tail()
    assert not Path(store).exists()
    assert not worker.heartbeat.exists()
    assert alive(worker).returncode == 1
