"""tasks/django_tasks.py: Django's task framework turned into metrics, task context, logs and spans.

Real ``django.tasks`` (Django 6) or the django-tasks backport (5.2), with its
immediate backend (the task runs inside ``enqueue()``) and django-tasks-db's
database backend, whose real worker loop (``manage.py db_worker --batch``)
runs here in this process against the test database.
"""

import asyncio
import logging
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from opentelemetry.trace import SpanKind, StatusCode

from django_observability import faults, tracing
from django_observability.context import REQUEST_ID
from django_observability.tasks import db_worker
from django_observability.tasks import django_tasks as tasks_django
from django_observability.tasks.context import REQUEST_ID_HEADER, current_task
from tests import dtasks
from tests.peers import free_port

HEX32 = re.compile(r"[0-9a-f]{32}")
OK = "tests.dtasks.ok"
FAILING = "tests.dtasks.failing"
STORED = "tests.dtasks.stored"
STORED_FAILING = "tests.dtasks.stored_failing"


@pytest.fixture
def request_id():
    token = REQUEST_ID.set("req-dtasks-1")
    yield "req-dtasks-1"
    REQUEST_ID.reset(token)


@pytest.fixture
def worker_files(tmp_path, settings):
    """The database worker's services on a free port and a private heartbeat file."""
    settings.OBSERVABILITY_WORKER_METRICS_PORT = free_port()
    settings.OBSERVABILITY_WORKER_HEARTBEAT_FILE = str(tmp_path / "heartbeat")
    return tmp_path


def run_db_worker() -> None:
    """django-tasks-db's real worker: every ready task of the ``db`` backend, then it exits."""
    call_command(
        "db_worker", "--batch", "--backend=db", "--no-startup-delay", "--no-reload", verbosity=0
    )


def finished(samples, task, outcome):
    return samples.value("tasks_finished_total", task=task, outcome=outcome)


def status(result) -> str:
    return str(result.status)


# --- the immediate backend: the task runs inside enqueue() ------------------------------------


@pytest.mark.django_db
def test_a_task_is_counted_and_sees_its_context_and_the_requests_id(request_id, samples):
    result = dtasks.ok.enqueue(5)
    assert status(result) == "SUCCESSFUL"
    assert result.return_value == {
        "request_id": request_id,
        "task": [result.id, OK],
        "users": 0,
        "value": 5,
    }
    assert samples.value("tasks_enqueued_total", task=OK) == 1
    assert finished(samples, OK, "success") == 1
    assert samples.value("task_duration_seconds_count", task=OK, outcome="success") == 1
    assert samples.value("task_queue_wait_seconds_count", task=OK) == 1
    assert samples.value("tasks_active", task=OK) == 0
    assert current_task() is None
    assert REQUEST_ID.get() == request_id  # the request's id is current again


@pytest.mark.django_db
def test_a_task_enqueued_outside_a_request_gets_an_id_of_its_own():
    first = dtasks.ok.enqueue().return_value["request_id"]
    second = dtasks.ok.enqueue().return_value["request_id"]
    assert HEX32.fullmatch(first)
    assert HEX32.fullmatch(second)
    assert first != second


def test_a_failing_task_is_counted_and_the_framework_keeps_its_exception(samples):
    result = dtasks.failing.enqueue()
    assert status(result) == "FAILED"
    assert result.errors[0].exception_class_path == "tests.dtasks.Boom"
    assert finished(samples, FAILING, "failure") == 1
    assert samples.value("tasks_active", task=FAILING) == 0
    assert current_task() is None


def test_an_enqueue_that_raises_raises_unchanged(samples, spans):
    with pytest.raises(TypeError) as raised:
        dtasks.ok.enqueue(object())  # arguments must be JSON
    assert "object" in str(raised.value)  # the framework's own message
    assert samples.value("tasks_enqueued_total", task=OK) is None
    (producer,) = spans.get_finished_spans()
    assert producer.kind == SpanKind.PRODUCER
    assert producer.status.status_code == StatusCode.ERROR


@pytest.mark.django_db(transaction=True)
def test_an_async_task_and_aenqueue(request_id, samples):
    async def enqueue():
        return await dtasks.async_ok.aenqueue()

    result = asyncio.run(enqueue())
    assert status(result) == "SUCCESSFUL"
    assert result.return_value == {
        "request_id": request_id,
        "task": [result.id, "tests.dtasks.async_ok"],
    }
    assert finished(samples, "tests.dtasks.async_ok", "success") == 1


@pytest.mark.django_db
def test_spans_producer_then_consumer_with_the_tasks_queries(spans, request_id):
    with tracing.trace_operation("the request") as outer:
        result = dtasks.ok.enqueue()
    by_name = {s.name: s for s in spans.get_finished_spans()}
    producer = by_name[f"enqueue {OK}"]
    consumer = by_name[f"run {OK}"]
    assert producer.kind == SpanKind.PRODUCER
    assert producer.parent.span_id == outer.get_span_context().span_id
    assert consumer.kind == SpanKind.CONSUMER
    assert consumer.parent.span_id == producer.context.span_id
    assert producer.attributes["messaging.message.id"] == result.id
    assert consumer.attributes["messaging.message.id"] == result.id
    for span, kind in ((producer, "send"), (consumer, "process")):
        assert span.attributes["messaging.system"] == "django.tasks"
        assert span.attributes["messaging.operation.type"] == kind
        assert span.attributes["messaging.destination.name"] == "default"
        assert span.attributes["django_observability.task.backend"] == "default"
        assert "5" not in {str(v) for v in span.attributes.values()}  # no arguments
    queries = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert queries
    assert all(q.parent.span_id == consumer.context.span_id for q in queries)
    assert consumer.status.status_code == StatusCode.UNSET


def test_a_failed_run_marks_its_span(spans):
    dtasks.failing.enqueue()
    consumer = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER)
    assert consumer.status.status_code == StatusCode.ERROR
    assert consumer.attributes["error.type"] == "tests.dtasks.Boom"
    assert not consumer.events  # no exception text on the span: it stays in the result


@pytest.mark.django_db
def test_a_task_that_enqueues_a_task(spans, request_id, samples):
    outer = dtasks.enqueues_another.enqueue()
    assert status(outer) == "SUCCESSFUL"
    assert finished(samples, OK, "success") == 1
    consumers = {s.name: s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER}
    inner = consumers[f"run {OK}"]
    outer_span = consumers["run tests.dtasks.enqueues_another"]
    assert inner.context.trace_id == outer_span.context.trace_id
    assert current_task() is None


def test_instrumentation_faults_never_fail_a_task(monkeypatch, caplog):
    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("broken metrics")

    monkeypatch.setattr(tasks_django, "get_metrics", Broken)
    faults.reset()
    with caplog.at_level(logging.DEBUG, "django_observability"):
        assert status(dtasks.failing.enqueue()) == "FAILED"
        assert status(dtasks.failing.enqueue()) == "FAILED"
    assert current_task() is None
    errors = sorted(
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name == "django_observability"
    )  # the framework logs the task's own failure too (django.tasks, Django 6.0)
    assert errors == [
        "django_observability: fault in tasks.django.enqueued; the request is served regardless",
        "django_observability: fault in tasks.django.finished; the request is served regardless",
        "django_observability: fault in tasks.django.started; the request is served regardless",
    ]  # once each
    faults.reset()


def test_receivers_ignore_what_is_not_a_run_they_started(samples):
    tasks_django.started(task_result=None)
    tasks_django.finished(task_result=None)
    assert current_task() is None
    assert samples.value("tasks_finished_total", task=OK, outcome="success") is None


def test_task_name_is_the_module_path():
    assert tasks_django.task_name(dtasks.ok) == OK


def test_uninstall_and_install_again(samples):
    tasks_django.uninstall()
    try:
        dtasks.failing.enqueue()
        assert finished(samples, FAILING, "failure") is None
    finally:
        tasks_django.install()
    dtasks.failing.enqueue()
    assert finished(samples, FAILING, "failure") == 1


# --- the database backend and its worker ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_stored_task_carries_the_request_id_and_the_trace(spans, request_id, worker_files):
    from django_tasks_db.models import DBTaskResult

    with tracing.trace_operation("the request"):
        result = dtasks.stored.enqueue(7)
    row = DBTaskResult.objects.get(id=result.id)
    carried = row.args_kwargs[tasks_django.CARRIED_KEY]
    assert carried[REQUEST_ID_HEADER] == request_id
    producer = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER)
    assert carried["traceparent"].split("-")[1:3] == [
        f"{producer.context.trace_id:032x}",
        f"{producer.context.span_id:016x}",
    ]
    assert row.args_kwargs["args"] == [7]  # the task's own arguments as they were

    spans.clear()
    REQUEST_ID.set("")  # the worker is another process: no request around it
    run_db_worker()
    finished_spans = spans.get_finished_spans()
    result.refresh()
    assert status(result) == "SUCCESSFUL"
    assert result.return_value["request_id"] == request_id
    assert result.return_value["task"] == [result.id, STORED]
    assert result.return_value["value"] == 7
    consumer = next(s for s in finished_spans if s.kind == SpanKind.CONSUMER)
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent.span_id == producer.context.span_id
    clients = [s for s in finished_spans if s.kind == SpanKind.CLIENT]
    # The task's query is traced, under the task; the worker's polling is not.
    assert clients
    assert all(
        s.parent is not None and s.parent.span_id == consumer.context.span_id for s in clients
    )


@pytest.mark.django_db(transaction=True)
def test_the_db_worker_counts_runs_by_outcome_and_queue_wait(samples, worker_files):
    for value in range(3):
        dtasks.stored.enqueue(value)
    dtasks.stored_failing.enqueue()
    later = dtasks.stored.using(run_after=timezone.now() + timedelta(hours=1)).enqueue()
    run_db_worker()
    assert samples.value("tasks_enqueued_total", task=STORED) == 4
    assert finished(samples, STORED, "success") == 3
    assert finished(samples, STORED_FAILING, "failure") == 1
    assert samples.value("task_queue_wait_seconds_count", task=STORED) == 3
    assert samples.value("tasks_active", task=STORED) == 0
    later.refresh()
    assert status(later) == "READY"  # deferred: not run yet
    assert current_task() is None


@pytest.mark.django_db(transaction=True)
def test_a_task_stored_outside_a_request_gets_its_own_trace_and_id(spans, worker_files):
    result = dtasks.stored.enqueue()
    run_db_worker()
    result.refresh()
    assert HEX32.fullmatch(result.return_value["request_id"])
    consumer = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER)
    producer = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER)
    assert consumer.context.trace_id == producer.context.trace_id  # the enqueue started it


@pytest.mark.django_db(transaction=True)
def test_without_tracing_nothing_but_the_request_id_is_carried(request_id):
    from django_tasks_db.models import DBTaskResult

    result = dtasks.stored.enqueue()
    carried = DBTaskResult.objects.get(id=result.id).args_kwargs[tasks_django.CARRIED_KEY]
    assert carried[REQUEST_ID_HEADER] == request_id
    assert "traceparent" not in carried


@pytest.mark.django_db(transaction=True)
def test_the_db_worker_serves_metrics_and_beats_while_it_runs(worker_files, settings):
    import urllib.request

    from django_observability.tasks import worker

    seen = {}

    def probe(**kwargs):
        """A receiver after ours: the worker's /metrics and heartbeat while the task runs."""
        scrape = urllib.request.Request(
            f"http://127.0.0.1:{worker.serving_port()}/metrics",
            headers={"Authorization": f"Bearer {settings.OBSERVABILITY_AUTH_TOKEN}"},
        )
        with urllib.request.urlopen(scrape, timeout=5) as response:
            seen["metrics"] = response.read().decode()
        seen["heartbeat"] = (worker_files / "heartbeat").read_text()

    dtasks.stored.enqueue()
    dtasks.task_started.connect(probe, weak=False, dispatch_uid="test-probe")
    try:
        run_db_worker()
    finally:
        dtasks.task_started.disconnect(dispatch_uid="test-probe")
    assert f'tasks_active{{task="{STORED}"}} 1.0' in seen["metrics"]
    assert seen["heartbeat"].split()[0].isdigit()
    assert worker.serving_port() is None  # stopped with the loop
    assert not (worker_files / "heartbeat").exists()


def test_the_db_worker_loop_is_wrapped_once_its_command_is_imported():
    from django_tasks_db.management.commands.db_worker import Worker

    assert hasattr(Worker.run, "_django_observability_wrapped")
    db_worker.uninstall()
    try:
        assert not hasattr(Worker.run, "_django_observability_wrapped")
    finally:
        db_worker._wrap()
    assert hasattr(Worker.run, "_django_observability_wrapped")


@override_settings(OBSERVABILITY_WORKER_METRICS_PORT=None)
def test_without_a_port_the_worker_serves_no_metrics(tmp_path, settings):
    from django_observability.tasks import worker

    settings.OBSERVABILITY_WORKER_HEARTBEAT_FILE = str(tmp_path / "heartbeat")
    worker.start_services()
    try:
        assert worker.serving_port() is None
    finally:
        worker.stop_services()
