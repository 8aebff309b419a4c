"""Scheduled jobs end to end: commands pushed to a real Pushgateway, scraped by a real Prometheus.

A private ``prometheus-pushgateway`` and a real Prometheus that scrapes it every
second with ``honor_labels: true`` (the Prometheus convention for batch jobs)
and evaluates the packaged recording and alert rules every second. Declared
commands run as ``manage.py`` subprocesses (``tests/settings_jobs.py``): one
succeeds, one fails; a third job's last success is pushed hours old. Then the
real Prometheus holds each job's series under the job's own name, and the
expression of the ``DjangoJobMissed`` alert, evaluated by it, selects the job
that never succeeded and the stale one, and not the one that just ran. The
alert's ``for`` and its firing and silent cases, in simulated time, are the
promtool unit tests of ``assets/prometheus/tests/tasks_test.yml``
(``tests/test_deploy_rules.py`` runs them). The tasks dashboard's
scheduled-job panels run against this Prometheus too, with data. Last, a real
``celery beat`` and a real prefork worker on a private Redis: the entries' runs
are pushed under the entries' names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from django.test import override_settings

from django_observability import dashboards, jobs
from tests.peers import REPO, Server, http, prometheus_query, run_prometheus, wait_for
from tests.test_jobs import start_pushgateway

pytestmark = pytest.mark.peers

RULES = REPO / "django_observability" / "assets" / "prometheus" / "rules"
STALE_AGE = 10_000.0  # seconds: older than 1.5 times the stale job's interval
STALE_INTERVAL = 3600.0


@dataclass
class Stack:
    pushgateway: Server
    prometheus: Server


def start_prometheus(workdir: Path, pushgateway: str) -> Server:
    """A real Prometheus scraping the Pushgateway (honor_labels) with the packaged rules."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "recording.yml"), str(RULES / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway]}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    return run_prometheus(workdir, workdir / "prometheus.yml")


def run_command(name: str, gateway: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_jobs",
        "JOBS_PUSHGATEWAY_URL": gateway,
        "PYTHONPATH": str(REPO),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "django", name],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("peers-jobs")
    pushgateway = start_pushgateway(workdir / "pushgateway")
    prometheus = start_prometheus(workdir / "prometheus", pushgateway.url.removeprefix("http://"))
    try:
        prometheus.wait_ready("/-/ready")
        ok = run_command("nightly_report", pushgateway.url)
        assert (ok.returncode, ok.stdout.strip()) == (0, "sent"), ok.stderr
        failed = run_command("failing_report", pushgateway.url)
        assert failed.returncode == 1, failed.stderr
        assert "the report server is down" in failed.stderr
        with override_settings(OBSERVABILITY_PUSHGATEWAY_URL=pushgateway.url):
            assert jobs.push("stale_report", time.time() - STALE_AGE, STALE_INTERVAL)
        # The first scrape comes 5-6 s after Prometheus starts; the rules follow.
        recorded = "job:job_expected_interval_seconds:max"
        seen = wait_for(lambda: len(prometheus_query(prometheus.url, recorded)) == 3, 30)
        assert seen, prometheus.log_tail()
        yield Stack(pushgateway, prometheus)
    finally:
        prometheus.stop()
        pushgateway.stop()


def by_job(result: list[dict]) -> dict[str, float]:
    return {series["metric"]["job"]: float(series["value"][1]) for series in result}


def test_pushed_series_arrive_under_the_jobs_own_name(stack: Stack):
    now = time.time()
    result = prometheus_query(stack.prometheus.url, "job_last_success_timestamp_seconds")
    labels = sorted((series["metric"] for series in result), key=lambda m: m["job"])
    # honor_labels: the job's own name in job; no instance, no exported_job.
    assert labels == [
        {"__name__": "job_last_success_timestamp_seconds", "job": "nightly_report"},
        {"__name__": "job_last_success_timestamp_seconds", "job": "stale_report"},
    ]
    last = by_job(result)
    assert now - 60 < last["nightly_report"] <= now
    assert last["stale_report"] < now - STALE_AGE + 60
    intervals = by_job(prometheus_query(stack.prometheus.url, "job_expected_interval_seconds"))
    assert intervals == {
        "nightly_report": 86400.0,
        "failing_report": 3600.0,
        "stale_report": STALE_INTERVAL,
    }


def test_recording_rules_keep_one_series_per_job(stack: Stack):
    recorded = prometheus_query(stack.prometheus.url, "job:job_last_success_timestamp_seconds:max")
    assert set(by_job(recorded)) == {"nightly_report", "stale_report"}


def test_the_missed_job_alert_selects_the_stale_and_the_failing_job_only(stack: Stack):
    """The alert's expression as the real Prometheus evaluates it (its ``for`` aside)."""
    [rule] = [
        rule
        for group in yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "DjangoJobMissed"
    ]
    missed = by_job(prometheus_query(stack.prometheus.url, rule["expr"]))
    assert set(missed) == {"failing_report", "stale_report"}
    assert missed["failing_report"] == 3600.0  # never succeeded: the interval
    assert missed["stale_report"] > 1.5 * STALE_INTERVAL  # the age of its last success

    # The rule as loaded by Prometheus: pending (its 5 minutes have not passed) for those two.
    def pending() -> set[str]:
        alerts = 'ALERTS{alertname="DjangoJobMissed", alertstate="pending"}'
        return set(by_job(prometheus_query(stack.prometheus.url, alerts)))

    assert wait_for(lambda: pending() == {"failing_report", "stale_report"}, 10), pending()


def test_the_dashboards_scheduled_job_panels_show_every_job(stack: Stack):
    panels = {
        panel["title"]: panel
        for panel in dashboards.tasks()["panels"]
        if "job_last_success_timestamp_seconds" in str(panel.get("targets"))
    }
    assert set(panels) == {"Time since last success", "Lateness by job"}
    since = by_job(
        prometheus_query(
            stack.prometheus.url, panels["Time since last success"]["targets"][0]["expr"]
        )
    )
    assert set(since) == {"nightly_report", "stale_report"}
    assert since["nightly_report"] < 60
    lateness = by_job(
        prometheus_query(stack.prometheus.url, panels["Lateness by job"]["targets"][0]["expr"])
    )
    assert lateness["stale_report"] > 1.5
    assert lateness["nightly_report"] < 0.01


# --- Celery beat: a real beat and a real prefork worker --------------------------------


def test_beat_entries_run_by_a_real_worker_are_pushed_under_their_names(
    stack: Stack, tmp_path: Path
):
    """``celery beat`` sends two entries every second to a private Redis; the worker that
    runs them pushes the success of one and the interval of both, under the entries' names."""
    from tests.peers_celery import CeleryWorker, celery_app_env, running_redis, running_worker

    with running_redis(tmp_path / "redis") as redis:
        env = celery_app_env(
            redis.url,
            tmp_path / "db.sqlite3",
            DJANGO_SETTINGS_MODULE="tests.settings_jobs_celery",
            JOBS_PUSHGATEWAY_URL=stack.pushgateway.url,
        )
        worker = CeleryWorker("tests.celery_app.app:app", tmp_path, env)
        beat = Server(
            name="celery-beat",
            argv=[
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.celery_app.app:app",
                "beat",
                f"--schedule={tmp_path / 'beat-schedule'}",
                "--pidfile=",
            ],
            cwd=REPO,
            env=env,
            log_path=tmp_path / "beat.log",
            url="",
        )
        with running_worker(worker):
            beat.start()
            try:

                def pushed() -> bool:
                    text = http(stack.pushgateway.url + "/metrics").body.decode()
                    return (
                        'job_last_success_timestamp_seconds{instance="",job="ok-every-second"}'
                        in text
                        and 'job_expected_interval_seconds{instance="",job="failing-every-second"}'
                        in text
                    )

                assert wait_for(pushed, 30), beat.log_tail() + worker.log_tail()
            finally:
                beat.stop()
    text = http(stack.pushgateway.url + "/metrics").body.decode()
    assert 'job_expected_interval_seconds{instance="",job="ok-every-second"} 1' in text
    # The failing entry never succeeded: no last success, so DjangoJobMissed would fire.
    assert 'job_last_success_timestamp_seconds{instance="",job="failing-every-second"}' not in text
