"""logging/celery_records.py: Celery's per-task lines without the task's arguments and result."""

import json
import logging

import pytest

from django_observability.logging import CeleryRecordFilter, JsonFormatter

SUCCEEDED = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"


def celery_record(fmt, context, exc_info=None):
    """A record as ``celery.app.trace`` makes it: the context as arguments and as ``data``."""
    record = logging.LogRecord(
        "celery.app.trace", logging.INFO, "trace.py", 129, fmt, (context,), exc_info
    )
    record.data = context
    return record


def line(record):
    return json.loads(JsonFormatter().format(record))


def succeeded(**extra):
    context = {
        "id": "5c2d9f3e-0000-4000-8000-000000000001",
        "name": "shop.tasks.send_receipt",
        "return_value": "'receipt for jane@example.com'",
        "runtime": 0.0125,
        "args": "('jane@example.com',)",
        "kwargs": "{'card': '4111111111111111'}",
    }
    context.update(extra)
    return celery_record(SUCCEEDED, context)


def test_the_arguments_and_result_are_not_written_and_the_run_time_is_kept():
    record = succeeded()
    assert CeleryRecordFilter().filter(record) is True
    out = line(record)
    assert "data" not in out
    assert "4111" not in json.dumps(out)
    assert "jane@example.com',)" not in json.dumps(out)
    assert out["event"] == {"duration": 12_500_000}
    # The message is Celery's, formatted from its arguments as Celery formats it.
    assert out["message"].startswith("Task shop.tasks.send_receipt[5c2d9f3e-")
    assert out["message"].endswith("succeeded in 0.0125s: 'receipt for jane@example.com'")


def test_without_the_filter_a_json_line_would_carry_them():
    """What the filter is for: the formatter writes every extra."""
    out = line(succeeded())
    assert out["data"]["args"] == "('jane@example.com',)"


@pytest.mark.parametrize("runtime", [None, "0.1", -1.0])
def test_a_run_time_that_is_not_a_duration_is_left_out(runtime):
    record = succeeded(runtime=runtime)
    CeleryRecordFilter().filter(record)
    assert "event.duration" not in vars(record)
    assert "data" not in vars(record)


def test_a_failure_line_keeps_its_exception_in_error_fields():
    try:
        raise ValueError("refused")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    context = {
        "id": "t",
        "name": "shop.tasks.pay",
        "exc": "ValueError('refused')",
        "traceback": "Traceback ...",
        "args": "('jane@example.com',)",
        "kwargs": "{}",
        "description": "raised unexpected",
        "internal": False,
        "hostname": "w@h",
    }
    record = celery_record("Task %(name)s[%(id)s] %(description)s: %(exc)s", context, exc_info)
    record.levelno, record.levelname = logging.ERROR, "ERROR"
    CeleryRecordFilter().filter(record)
    out = line(record)
    assert "data" not in out
    assert "jane" not in json.dumps(out)
    assert out["error"]["type"] == "ValueError"
    assert out["message"] == "Task shop.tasks.pay[t] raised unexpected: ValueError('refused')"


def test_records_of_other_shapes_pass_untouched():
    record = logging.LogRecord("celery.app.trace", logging.INFO, "x.py", 1, "plain", (), None)
    assert CeleryRecordFilter().filter(record) is True
    record.data = "a text"  # not Celery's dict: taken off all the same
    CeleryRecordFilter().filter(record)
    assert "data" not in vars(record)
    assert "event.duration" not in vars(record)


def test_the_records_arguments_lose_the_tasks_arguments_the_message_does_not_show():
    """An error tracker's logging integration keeps a record's args: Celery's dict is there too."""
    record = succeeded()
    message = record.getMessage()
    CeleryRecordFilter().filter(record)
    assert "args" not in record.args
    assert "kwargs" not in record.args
    assert record.getMessage() == message  # Celery's message, unchanged
    # A format of the project's own that shows them keeps them.
    custom = celery_record("Task %(name)s%(args)s", {"name": "t", "args": "(1,)", "kwargs": "{}"})
    CeleryRecordFilter().filter(custom)
    assert custom.getMessage() == "Task t(1,)"
    assert "kwargs" not in custom.args
