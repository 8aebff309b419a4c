"""tasks/celery.py: Celery's signals turned into task metrics, the task context and log fields.

A real Celery app in this process: tasks run eagerly (``apply()``: prerun and
postrun without a broker), and through a real worker (``celery.contrib.
testing``'s, in a thread, solo pool) on Kombu's in-memory broker, so that the
message and its headers go the whole way from publish to run.
"""

import logging
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery, signals
from celery.app.task import Context
from celery.contrib.testing.worker import start_worker
from celery.exceptions import Ignore, Reject, TaskRevokedError, TimeLimitExceeded
from django.test import override_settings

from django_observability import faults, get_request_id
from django_observability.context import REQUEST_ID
from django_observability.tasks import celery as tasks_celery
from django_observability.tasks.context import (
    ENQUEUED_AT_HEADER,
    REQUEST_ID_HEADER,
    current_task,
    message_header,
)

HEX32 = re.compile(r"[0-9a-f]{32}")


class Boom(Exception):
    pass


BOOM = Boom("the task's own exception")

app = Celery("unit", broker="memory://", backend="cache+memory://", set_as_current=False)
app.conf.update(
    broker_connection_retry_on_startup=True,
    broker_transport_options={"polling_interval": 0.01},
    worker_hijack_root_logger=False,
)


@app.task(name="unit.ok")
def ok():
    info = current_task()
    return {"request_id": get_request_id(), "task": [info.id, info.name]}


@app.task(name="unit.failing")
def failing():
    raise BOOM


@app.task(name="unit.retried", bind=True, max_retries=2)
def retried(self):
    if self.request.retries < 1:
        raise self.retry(countdown=0)
    return self.request.retries


@app.task(name="unit.rejected")
def rejected():
    raise Reject("no", requeue=False)


@app.task(name="unit.ignored")
def ignored():
    raise Ignore()


@app.task(name="unit.headers", bind=True)
def headers(self):
    request = self.request
    return [
        message_header(request, REQUEST_ID_HEADER),
        message_header(request, ENQUEUED_AT_HEADER),
    ]


def finished(samples, task, outcome):
    return samples.value("tasks_finished_total", task=task, outcome=outcome)


def counted(samples, task, outcome, expected=1, deadline=10.0):
    """Whether the worker's count reaches ``expected`` within ``deadline`` seconds.

    A result is stored before the worker sends ``task_postrun``, so a test's
    ``get()`` can return while the worker thread is still counting.
    """
    end = time.monotonic() + deadline
    while finished(samples, task, outcome) != expected and time.monotonic() < end:
        time.sleep(0.01)
    return finished(samples, task, outcome) == expected


@pytest.fixture(scope="module")
def worker():
    """A real worker in a thread of this process, consuming the in-memory broker."""
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as w:
        yield w


@pytest.fixture
def request_id():
    token = REQUEST_ID.set("req-unit-1")
    yield "req-unit-1"
    REQUEST_ID.reset(token)


# --- run eagerly: prerun and postrun -------------------------------------------------


def test_eager_success_is_counted_with_its_duration(samples):
    result = ok.apply()
    assert result.successful()
    assert finished(samples, "unit.ok", "success") == 1
    assert samples.value("task_duration_seconds_count", task="unit.ok", outcome="success") == 1
    assert samples.value("tasks_active", task="unit.ok") == 0
    # Run directly, never published: no enqueue, no queue wait.
    assert samples.value("tasks_enqueued_total", task="unit.ok") is None
    assert samples.value("task_queue_wait_seconds_count", task="unit.ok") is None
    assert current_task() is None


def test_eager_task_sees_its_context_and_the_requests_id(request_id):
    result = ok.apply(task_id="tid-1").get()
    assert result == {"request_id": request_id, "task": ["tid-1", "unit.ok"]}
    assert get_request_id() == request_id


def test_a_failing_task_is_counted_and_its_exception_passes_unchanged(samples):
    with pytest.raises(Boom) as raised:
        failing.apply(throw=True)
    assert raised.value is BOOM
    assert finished(samples, "unit.failing", "failure") == 1
    assert samples.value("tasks_active", task="unit.failing") == 0


@pytest.mark.parametrize(("task", "outcome"), [(rejected, "rejected"), (ignored, "ignored")])
def test_celerys_other_end_states(samples, task, outcome):
    task.apply()
    assert finished(samples, task.name, outcome) == 1
    assert samples.value("tasks_active", task=task.name) == 0


def test_instrumentation_faults_never_fail_a_task(monkeypatch, caplog, samples):
    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("broken metrics")

    monkeypatch.setattr(tasks_celery, "get_metrics", Broken)
    faults.reset()
    with caplog.at_level(logging.DEBUG, "django_observability"):
        assert ok.apply(task_id="tid-2").get()["task"] == ["tid-2", "unit.ok"]
        assert ok.apply().successful()
        with pytest.raises(Boom) as raised:
            failing.apply(throw=True)
    assert raised.value is BOOM
    assert current_task() is None  # left even though the recording failed
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sorted(r.getMessage() for r in errors) == [
        "django_observability: fault in tasks.postrun; the request is served regardless",
        "django_observability: fault in tasks.prerun; the request is served regardless",
    ]  # once each, with a traceback
    faults.reset()


# --- through a real worker: published, carried, consumed -----------------------------


def test_the_message_carries_the_request_id_and_the_enqueue_time(worker, request_id, samples):
    carried_id, enqueued_at = headers.apply_async().get(timeout=10, interval=0.01)
    assert carried_id == request_id
    assert float(enqueued_at) == pytest.approx(datetime.now(UTC).timestamp(), abs=30)
    result = ok.apply_async().get(timeout=10, interval=0.01)
    assert result["request_id"] == request_id  # get_request_id() inside the task
    assert samples.value("tasks_enqueued_total", task="unit.ok") == 1
    assert counted(samples, "unit.ok", "success")
    assert samples.value("task_queue_wait_seconds_count", task="unit.ok") == 1
    assert samples.value("tasks_active", task="unit.ok") == 0


def test_a_task_enqueued_outside_a_request_gets_its_own_id(worker):
    first = ok.apply_async().get(timeout=10, interval=0.01)["request_id"]
    second = ok.apply_async().get(timeout=10, interval=0.01)["request_id"]
    assert HEX32.fullmatch(first)
    assert HEX32.fullmatch(second)
    assert first != second


def test_a_retry_is_a_new_message_and_each_run_has_one_outcome(worker, request_id, samples):
    assert retried.apply_async().get(timeout=10, interval=0.01) == 1
    assert samples.value("tasks_enqueued_total", task="unit.retried") == 2
    assert counted(samples, "unit.retried", "success")
    assert finished(samples, "unit.retried", "retry") == 1
    assert samples.value("task_queue_wait_seconds_count", task="unit.retried") == 2


def test_a_failure_through_the_worker(worker, samples):
    result = failing.apply_async()
    with pytest.raises(Boom):
        result.get(timeout=10, interval=0.01)
    assert counted(samples, "unit.failing", "failure")


def test_an_expired_task_is_revoked_without_running(worker, samples):
    result = ok.apply_async(expires=datetime.now(UTC) - timedelta(seconds=5))
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10, interval=0.01)
    assert counted(samples, "unit.ok", "revoked")
    assert finished(samples, "unit.ok", "success") is None
    assert samples.value("tasks_active", task="unit.ok") is None  # never started


# --- receivers called as the worker's main process calls them -----------------------


def test_revoked_counts_the_request_task_name(samples):
    tasks_celery.revoked(sender=ok, request=Context(task="unit.ok"), terminated=True)
    assert finished(samples, "unit.ok", "revoked") == 1


def test_only_failures_the_child_could_not_report_are_counted_in_the_main_process(samples):
    tasks_celery.failed(sender=ok, task_id="t", exception=TimeLimitExceeded(1.0))
    assert finished(samples, "unit.ok", "failure") == 1
    # Raised by the task: postrun counts it in the process that ran it.
    tasks_celery.failed(sender=ok, task_id="t", exception=BOOM)
    tasks_celery.failed(sender=ok, task_id="t", exception=Reject("no"))
    assert finished(samples, "unit.ok", "failure") == 1


def test_the_task_label_is_capped(samples):
    with override_settings(OBSERVABILITY_METRICS_LABEL_CAP=2):
        for name in ("a", "b", "c", "d"):
            tasks_celery.revoked(request=Context(task=f"unit.{name}"))
        assert finished(samples, "unit.a", "revoked") == 1
        assert finished(samples, "unit.b", "revoked") == 1
        assert finished(samples, "_other", "revoked") == 2


# --- logging in the worker ---------------------------------------------------------


def test_the_worker_keeps_the_projects_logging_only_when_it_has_one():
    def connected():
        return signals.setup_logging.has_listeners()

    tasks_celery.uninstall()
    try:
        with override_settings(LOGGING={"version": 1}):
            tasks_celery._connect()
            assert connected()
            tasks_celery.uninstall()
        with override_settings(LOGGING={}):
            tasks_celery._connect()
            assert not connected()
    finally:
        tasks_celery.uninstall()
        tasks_celery._connect()
