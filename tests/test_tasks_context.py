"""tasks/context.py: the running task, the request id it carries, the enqueue headers."""

import re

import pytest

from django_observability import get_request_id
from django_observability.context import REQUEST_ID
from django_observability.tasks import context
from django_observability.tasks.context import (
    ENQUEUED_AT_HEADER,
    REQUEST_ID_HEADER,
    current_task,
    enqueue_headers,
    enter_task,
    leave_task,
    message_header,
    queue_wait,
)

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_no_task_outside_one():
    assert current_task() is None


def test_a_task_carries_the_enqueuing_request_id_and_leaves_no_trace():
    info = enter_task("t-1", "shop.send_mail", "req-42")
    try:
        assert current_task() is info
        assert (info.id, info.name, info.request_id) == ("t-1", "shop.send_mail", "req-42")
        assert get_request_id() == "req-42"
    finally:
        leave_task(info)
    assert current_task() is None
    assert get_request_id() is None
    leave_task(info)  # twice: nothing left to undo


def test_a_task_not_started_by_a_request_gets_an_id_of_its_own():
    first = enter_task("t-1", "shop.nightly")
    leave_task(first)
    second = enter_task("t-2", "shop.nightly", None)
    leave_task(second)
    assert HEX32.fullmatch(first.request_id)
    assert HEX32.fullmatch(second.request_id)
    assert first.request_id != second.request_id


@pytest.mark.parametrize("bad", ["", "has space", "x" * 300, 42, b"bytes", ["req"]])
def test_an_invalid_carried_id_is_replaced(bad):
    info = enter_task("t-1", "shop.task", bad)
    leave_task(info)
    assert HEX32.fullmatch(info.request_id)


def test_a_task_run_inside_a_request_keeps_its_id():
    """Celery's eager mode runs the task in the request's own context."""
    token = REQUEST_ID.set("req-eager")
    try:
        info = enter_task("t-1", "shop.task")
        assert get_request_id() == "req-eager"
        leave_task(info)
        assert get_request_id() == "req-eager"
    finally:
        REQUEST_ID.reset(token)


def test_nested_tasks_restore_the_outer_one():
    outer = enter_task("t-1", "outer", "req-outer")
    inner = enter_task("t-2", "inner", "req-inner")
    assert (current_task().name, get_request_id()) == ("inner", "req-inner")
    leave_task(inner)
    assert (current_task() is outer, get_request_id()) == (True, "req-outer")
    leave_task(outer)


def test_enqueue_headers(monkeypatch):
    monkeypatch.setattr(context, "_now", lambda: 1700000000.25)
    assert enqueue_headers() == {ENQUEUED_AT_HEADER: "1700000000.25"}
    token = REQUEST_ID.set("req-7")
    try:
        assert enqueue_headers() == {
            ENQUEUED_AT_HEADER: "1700000000.25",
            REQUEST_ID_HEADER: "req-7",
        }
    finally:
        REQUEST_ID.reset(token)


def test_queue_wait(monkeypatch):
    monkeypatch.setattr(context, "_now", lambda: 1000.0)
    assert queue_wait("990.5") == 9.5
    assert queue_wait(990.5) == 9.5
    # Due later (a countdown): the wait counts from when it was due.
    assert queue_wait("900", not_before=995.0) == 5.0
    assert queue_wait("990", not_before=100.0) == 10.0
    # Another host's clock ahead of ours: no negative wait.
    assert queue_wait("1003") == 0.0
    for bad in (None, "", "soon", "nan", "-5", "0", object()):
        assert queue_wait(bad) is None


def test_message_header_reads_attributes_and_the_headers_dict():
    from celery.app.task import Context

    assert message_header(Context(observability_request_id="a"), REQUEST_ID_HEADER) == "a"
    request = Context(headers={"observability_request_id": "b"})
    assert message_header(request, REQUEST_ID_HEADER) == "b"
    assert message_header(Context(), REQUEST_ID_HEADER) is None
