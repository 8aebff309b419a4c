"""django_observability.logging.context: correlation ids and ContextFilter."""

import io
import logging
import logging.config
import os
import queue
import re
import subprocess
import sys
from logging.handlers import QueueHandler, QueueListener

import pytest
from opentelemetry.sdk.trace import TracerProvider

from django_observability.logging import (
    ContextFilter,
    JsonFormatter,
)
from django_observability.tasks.context import enter_task, leave_task
from tests.logging_support import (
    LOGGER,
    in_request,
    log_json,
    log_line,
    strict_loads,
)


@pytest.fixture
def tracer():
    # A local provider: nothing global is set, yet start_as_current_span still
    # makes its span the current one.
    return TracerProvider().get_tracer("tests")


# Correlation ids ------------------------------------------------------------


def test_ids_from_the_request_and_the_current_span(tracer):
    with in_request("req-123"), tracer.start_as_current_span("s") as span:
        data = log_json()
        context = span.get_span_context()
    assert data["http"] == {"request": {"id": "req-123"}}
    assert data["trace"] == {"id": format(context.trace_id, "032x")}
    assert data["span"] == {"id": format(context.span_id, "016x")}
    assert re.fullmatch(r"[0-9a-f]{32}", data["trace"]["id"])
    assert re.fullmatch(r"[0-9a-f]{16}", data["span"]["id"])


def test_ids_on_the_record_win_over_the_context(tracer):
    with in_request("from-context"), tracer.start_as_current_span("s"):
        data = log_json(extra={"request_id": "explicit", "trace_id": "a" * 32, "span_id": None})
    assert data["http"]["request"]["id"] == "explicit"
    assert data["trace"]["id"] == "a" * 32
    assert "span" not in data  # stamped as None: absent, not read from the context
    assert not {"request_id", "trace_id", "span_id"} & set(data)


def test_no_ids_outside_a_request_and_span():
    data = log_json()
    assert not {"trace", "span", "http"} & set(data)


def test_without_opentelemetry_installed():
    code = """
import logging, sys
sys.modules["opentelemetry"] = None  # as if it were not installed
from django.conf import settings
settings.configure(OBSERVABILITY_SERVICE_NAME="bare")
from django_observability import logging as obs
from django_observability.context import REQUEST_ID as _current
from django_observability.logging import context
assert context.get_current_span is None
record = logging.LogRecord("x", logging.INFO, "app.py", 1, "hi %s", ("there",), None)
_current.set("rid-9")
assert obs.ContextFilter().filter(record) is True
print(obs.JsonFormatter().format(record))
"""
    env = {**os.environ}
    for name in ("DJANGO_SETTINGS_MODULE", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = strict_loads(result.stdout)
    assert data["message"] == "hi there"
    assert data["service"] == {"name": "bare"}
    assert data["http"] == {"request": {"id": "rid-9"}}
    assert "trace" not in data
    assert "span" not in data


def test_context_filter_stamps_ids_and_keeps_explicit_ones(tracer):
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "m", (), None)
    record.request_id = "explicit"
    with in_request("ctx"), tracer.start_as_current_span("s") as span:
        assert ContextFilter().filter(record) is True
        context = span.get_span_context()
    assert record.request_id == "explicit"
    assert record.trace_id == format(context.trace_id, "032x")
    assert record.span_id == format(context.span_id, "016x")

    bare = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "m", (), None)
    assert ContextFilter().filter(bare) is True
    assert (bare.request_id, bare.trace_id, bare.span_id) == (None, None, None)


def test_queue_handler_keeps_the_ids_of_the_logging_context(tracer):
    """Formatted later, in the listener's thread, with the ids of the code that logged."""
    stream = io.StringIO()
    output = logging.StreamHandler(stream)
    output.setFormatter(JsonFormatter())
    records = queue.SimpleQueue()
    listener = QueueListener(records, output)
    stamped = QueueHandler(records)
    stamped.addFilter(ContextFilter())
    logger = logging.getLogger("tests.logging.queue")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(stamped)
    listener.start()
    try:
        with in_request("queued-req"), tracer.start_as_current_span("s") as span:
            logger.info("queued %s", 1, extra={"http.route": "items/"})
            context = span.get_span_context()
        # Without the filter the ids are read when the listener formats: gone.
        logger.removeHandler(stamped)
        logger.addHandler(unstamped := QueueHandler(records))
        with in_request("lost-req"), tracer.start_as_current_span("s"):
            logger.info("unstamped")
    finally:
        listener.stop()
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
        del unstamped
    first, second = (strict_loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "queued 1"
    assert first["http"] == {"request": {"id": "queued-req"}, "route": "items/"}
    assert first["trace"]["id"] == format(context.trace_id, "032x")
    assert first["span"]["id"] == format(context.span_id, "016x")
    assert second["message"] == "unstamped"
    assert not {"trace", "span", "http"} & set(second)


# The running task (tasks/context.py) ------------------------------------------


def _site_line(formatter, task):
    """One line from one call site, in a task (``task``: (id, name)) or not."""
    info = None if task is None else enter_task(*task, "req-task")
    try:
        return strict_loads(log_line("from one site", formatter=formatter))
    finally:
        if info is not None:
            leave_task(info)


def test_a_line_in_a_task_carries_its_id_name_and_the_enqueuing_request():
    formatter = JsonFormatter()
    data = _site_line(formatter, ("t-1", "shop.send_mail"))
    assert data["task"] == {"id": "t-1", "name": "shop.send_mail"}
    assert data["http"]["request"]["id"] == "req-task"
    # The same call site outside the task, through the same formatter's kept
    # layouts: no task fields (and none written as null).
    outside = _site_line(formatter, None)
    assert "task" not in outside
    assert "http" not in outside
    again = _site_line(formatter, ("t-2", "shop.other"))
    assert again["task"] == {"id": "t-2", "name": "shop.other"}


def test_context_filter_stamps_the_task_only_in_one():
    bare = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "m", (), None)
    assert ContextFilter().filter(bare) is True
    assert "task_id" not in bare.__dict__
    assert "task_name" not in bare.__dict__
    info = enter_task("t-9", "shop.task", "req-9")
    try:
        record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "m", (), None)
        assert ContextFilter().filter(record) is True
    finally:
        leave_task(info)
    assert (record.task_id, record.task_name, record.request_id) == ("t-9", "shop.task", "req-9")
    # Formatted after the task ended (a queue listener): the stamped fields.
    data = strict_loads(JsonFormatter().format(record))
    assert data["task"] == {"id": "t-9", "name": "shop.task"}
    assert data["http"]["request"]["id"] == "req-9"
