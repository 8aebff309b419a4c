"""jobs.py: scheduled jobs seen to run (declared commands, Celery beat entries, the push).

Commands run through Django's ``call_command``; beat entries are resolved
against a real Celery app's ``beat_schedule`` and run eagerly (``apply()``
sends ``task_postrun`` like a worker does). Pushes go to a real
``prometheus-pushgateway`` on a free loopback port (tests marked ``peers``);
a gateway that is down is a closed port, a gateway that hangs a socket that
listens and never answers.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from celery.app.task import Context
from celery.schedules import crontab, schedule
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings

from django_observability import jobs
from tests import peers
from tests.job_app.management.commands import failing_report, nightly_report
from tests.peers import Server, executable, free_port, http

app = Celery("jobs-unit", broker="memory://", backend="cache+memory://", set_as_current=False)
app.conf.beat_schedule = {
    "nightly-report": {"task": "jobs.report", "schedule": crontab(hour=3, minute=0)},
    "cleanup-every-10-minutes": {"task": "jobs.cleanup", "schedule": 600.0},
    "sync-eu": {"task": "jobs.sync", "schedule": timedelta(hours=1), "args": ("eu",)},
    "sync-us": {"task": "jobs.sync", "schedule": schedule(timedelta(hours=2)), "args": ("us",)},
    "twice-a": {"task": "jobs.twice", "schedule": 60.0},
    "twice-b": {"task": "jobs.twice", "schedule": 60.0},
}


@app.task(name="jobs.report")
def report():
    return "ok"


@app.task(name="jobs.cleanup")
def cleanup():
    raise RuntimeError("the task's own failure")


BEAT = {jobs.BEAT_HEADER: True}
JOBS = {"nightly_report": {"interval": 86400}, "failing_report": {"interval": 3600}}


def beat_request(**fields: object) -> Context:
    return Context(**fields)


# --- settings and system checks ------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("OBSERVABILITY_JOBS", ["nightly_report"], "E100"),
        ("OBSERVABILITY_JOBS", {"nightly_report": 86400}, "E100"),
        ("OBSERVABILITY_JOBS", {"nightly_report": {"interval": 0}}, "E100"),
        ("OBSERVABILITY_JOBS", {"nightly_report": {"interval": True}}, "E100"),
        ("OBSERVABILITY_JOBS", {"nightly_report": {"interval": 60, "every": 2}}, "E100"),
        ("OBSERVABILITY_JOBS", {"": {"interval": 60}}, "E100"),
        ("OBSERVABILITY_PUSHGATEWAY_URL", "pushgateway:9091", "E101"),
        ("OBSERVABILITY_PUSHGATEWAY_TIMEOUT", 0, "E102"),
    ],
)
def test_invalid_settings_are_system_check_errors(setting, value, check_id):
    with override_settings(**{setting: value}):
        ids = {message.id for message in run_checks()}
    assert f"django_observability.{check_id}" in ids


def test_valid_settings_pass_the_checks():
    with override_settings(
        OBSERVABILITY_JOBS={"nightly_report": {"interval": 86400}, "sync-eu": {"interval": 1.5}},
        OBSERVABILITY_PUSHGATEWAY_URL="http://pushgateway:9091",
        OBSERVABILITY_PUSHGATEWAY_TIMEOUT=0.5,
    ):
        ids = {message.id for message in run_checks()}
    assert not {i for i in ids if i.startswith("django_observability.E10")}


# --- which command is a job ----------------------------------------------------------


def test_a_command_is_a_job_by_its_name_when_declared():
    with override_settings(OBSERVABILITY_JOBS=JOBS):
        assert jobs.command_job(nightly_report.Command()) == "nightly_report"
        assert jobs.declared_interval("nightly_report") == 86400.0
    assert jobs.command_job(nightly_report.Command()) is None  # not declared
    assert jobs.declared_interval("nightly_report") is None


def test_execute_is_wrapped_once():
    wrapped = BaseCommand.execute
    assert wrapped.observability_job_hook
    jobs.install()
    assert BaseCommand.execute is wrapped
    assert not getattr(wrapped.__wrapped__, "observability_job_hook", False)


def test_commands_keep_their_output_and_errors_without_a_gateway(caplog):
    with override_settings(OBSERVABILITY_JOBS=JOBS), caplog.at_level(logging.WARNING):
        assert call_command(nightly_report.Command()) == "sent"
        with pytest.raises(CommandError, match="the report server is down"):
            call_command(failing_report.Command())
    assert not caplog.records  # nothing to push to: nothing to say


# --- pushes that cannot land ---------------------------------------------------------


@pytest.fixture
def silent_gateway() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung gateway)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_gateway_that_is_down_changes_nothing_and_is_logged_once(caplog):
    jobs._push_failures_logged.clear()
    down = f"http://127.0.0.1:{free_port()}"
    with (
        override_settings(OBSERVABILITY_JOBS=JOBS, OBSERVABILITY_PUSHGATEWAY_URL=down),
        caplog.at_level(logging.DEBUG, logger="django_observability"),
    ):
        assert call_command(nightly_report.Command()) == "sent"
        with pytest.raises(CommandError, match="the report server is down"):
            call_command(failing_report.Command())
        assert call_command(nightly_report.Command()) == "sent"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "could not push job 'nightly_report'" in warnings[0].getMessage()
    assert down in warnings[0].getMessage()


def test_a_hung_gateway_is_given_up_after_the_timeout(silent_gateway):
    jobs._push_failures_logged.clear()
    with override_settings(
        OBSERVABILITY_JOBS=JOBS,
        OBSERVABILITY_PUSHGATEWAY_URL=silent_gateway,
        OBSERVABILITY_PUSHGATEWAY_TIMEOUT=0.3,
    ):
        started = time.monotonic()
        assert call_command(nightly_report.Command()) == "sent"
        elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed


# --- Celery beat entries -------------------------------------------------------------


def test_beat_job_is_the_entry_that_runs_the_task():
    assert jobs.beat_job(app, "jobs.report", beat_request(headers=BEAT)) == "nightly-report"
    assert jobs.beat_job(app, "jobs.cleanup", beat_request(**BEAT)) == "cleanup-every-10-minutes"


def test_beat_job_tells_entries_of_one_task_apart_by_their_arguments():
    assert jobs.beat_job(app, "jobs.sync", beat_request(headers=BEAT, args=["us"])) == "sync-us"
    assert jobs.beat_job(app, "jobs.sync", beat_request(headers=BEAT, args=["eu"])) == "sync-eu"
    # No entry with these arguments: the task's name stands for the job.
    assert jobs.beat_job(app, "jobs.sync", beat_request(headers=BEAT, args=["ap"])) == "jobs.sync"
    # Two entries alike: neither can be told apart, the task's name again.
    assert jobs.beat_job(app, "jobs.twice", beat_request(headers=BEAT)) == "jobs.twice"


def test_beat_job_takes_the_entry_header_first():
    request = beat_request(headers={jobs.ENTRY_HEADER: "db-entry", **BEAT})
    assert jobs.beat_job(app, "jobs.report", request) == "db-entry"
    # An entry from a database scheduler that our beat_schedule does not know.
    assert jobs.beat_job(app, "jobs.other", beat_request(headers=BEAT)) == "jobs.other"


def test_tasks_beat_did_not_send_are_no_job():
    assert jobs.beat_job(app, "jobs.report", beat_request(headers={})) is None
    assert jobs.beat_job(app, "jobs.report", beat_request()) is None


def test_beat_interval_from_the_schedule_or_the_setting():
    assert jobs.beat_interval(app, "cleanup-every-10-minutes") == 600.0
    assert jobs.beat_interval(app, "sync-eu") == 3600.0
    assert jobs.beat_interval(app, "sync-us") == 7200.0
    assert jobs.beat_interval(app, "nightly-report") is None  # crontab: no one interval
    assert jobs.beat_interval(app, "unknown") is None
    with override_settings(OBSERVABILITY_JOBS={"nightly-report": {"interval": 86400}}):
        assert jobs.beat_interval(app, "nightly-report") == 86400.0


def test_a_beat_entrys_success_is_recorded_where_it_ran(samples):
    before = time.time()
    assert report.apply(headers=BEAT).get() == "ok"
    last = samples.value("job_last_success_timestamp_seconds", job="nightly-report")
    assert last is not None
    assert before <= last <= time.time()
    # crontab and not declared: no interval.
    assert samples.value("job_expected_interval_seconds", job="nightly-report") is None


def test_a_beat_entrys_failure_records_only_its_interval(samples):
    result = cleanup.apply(headers=BEAT)
    assert result.failed()
    assert isinstance(result.result, RuntimeError)
    assert samples.value("job_expected_interval_seconds", job="cleanup-every-10-minutes") == 600.0
    assert (
        samples.value("job_last_success_timestamp_seconds", job="cleanup-every-10-minutes") is None
    )


def test_a_task_beat_did_not_send_records_nothing(samples):
    assert report.apply().get() == "ok"
    assert samples.series("job_last_success_timestamp_seconds") == []


def test_the_job_label_is_capped(samples):
    with override_settings(OBSERVABILITY_METRICS_LABEL_CAP=2):
        for name in ("a", "b", "c", "d"):
            report.apply(headers={jobs.ENTRY_HEADER: name, **BEAT}).get()
        jobs_seen = {s["job"] for s in samples.series("job_last_success_timestamp_seconds")}
    assert jobs_seen == {"a", "b", "_other"}


# --- pushes to a real Pushgateway ----------------------------------------------------


def start_pushgateway(workdir: Path) -> Server:
    """A real prometheus-pushgateway on a free loopback port, started and ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Server(
        name="pushgateway",
        argv=[
            executable("prometheus-pushgateway"),
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={workdir / 'persistence'}",
        ],
        cwd=workdir,
        env={},
        log_path=workdir / "pushgateway.log",
        url=f"http://127.0.0.1:{port}",
    )
    server.start()
    server.wait_ready("/-/ready")
    return server


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_pushgateway(tmp_path_factory.mktemp("pushgateway"))
    yield server
    server.stop()


def gateway_value(gateway: Server, name: str, job: str) -> float | None:
    text = peers.scrape(gateway.url)
    found = [v for labels, v in peers.samples(text, name) if labels.get("job") == job]
    return found[0] if found else None


@pytest.mark.peers
def test_a_declared_commands_success_is_pushed_with_its_interval(pushgateway):
    with override_settings(OBSERVABILITY_JOBS=JOBS, OBSERVABILITY_PUSHGATEWAY_URL=pushgateway.url):
        before = time.time()
        assert call_command(nightly_report.Command()) == "sent"
    last = gateway_value(pushgateway, "job_last_success_timestamp_seconds", "nightly_report")
    assert last is not None
    assert before <= last <= time.time()
    assert gateway_value(pushgateway, "job_expected_interval_seconds", "nightly_report") == 86400
    # One group per job, without an instance: the batch-job convention.
    groups = http(pushgateway.url + "/api/v1/metrics").json()["data"]
    labels = [g["labels"] for g in groups if g["labels"].get("job") == "nightly_report"]
    assert labels == [{"job": "nightly_report"}]


@pytest.mark.peers
def test_a_failure_pushes_the_interval_and_keeps_the_last_success(pushgateway):
    settings = {"OBSERVABILITY_JOBS": JOBS, "OBSERVABILITY_PUSHGATEWAY_URL": pushgateway.url}
    with override_settings(**settings):
        assert jobs.push("failing_report", 1000.0, None)
        assert gateway_value(pushgateway, "job_expected_interval_seconds", "failing_report") is None
        with pytest.raises(CommandError):
            call_command(failing_report.Command())
    assert (
        gateway_value(pushgateway, "job_last_success_timestamp_seconds", "failing_report") == 1000
    )
    assert gateway_value(pushgateway, "job_expected_interval_seconds", "failing_report") == 3600


@pytest.mark.peers
def test_the_push_keeps_the_jobs_other_metrics_and_takes_the_namespace(pushgateway):
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

    own = CollectorRegistry()
    Gauge("report_rows", "Rows the report wrote.", registry=own).set(42)
    pushadd_to_gateway(pushgateway.url, job="weekly", registry=own, timeout=5)
    with override_settings(
        OBSERVABILITY_PUSHGATEWAY_URL=pushgateway.url, OBSERVABILITY_METRICS_NAMESPACE="shop"
    ):
        assert jobs.push("weekly", 2000.0, None)
    assert gateway_value(pushgateway, "shop_job_last_success_timestamp_seconds", "weekly") == 2000
    assert gateway_value(pushgateway, "report_rows", "weekly") == 42


@pytest.mark.peers
def test_a_job_name_with_a_slash_is_one_group(pushgateway):
    with override_settings(OBSERVABILITY_PUSHGATEWAY_URL=pushgateway.url):
        assert jobs.push("reports/daily", 3000.0, 60.0)
    assert gateway_value(pushgateway, "job_last_success_timestamp_seconds", "reports/daily") == 3000
