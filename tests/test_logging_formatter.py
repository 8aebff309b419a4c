"""django_observability.logging.formatter: JsonFormatter's general path and errors."""

import json
import logging
import logging.config

from django_observability.logging.extras import Extras
from tests.logging_support import (
    LOGGER,
    SECRET,
    log_json,
    log_line,
    strict_loads,
)

# Exceptions -----------------------------------------------------------------


class Outer:
    class BoomError(Exception):
        pass


def test_exception_fields():
    try:
        raise Outer.BoomError("it broke")
    except Outer.BoomError:
        line = log_line("failed", level=logging.ERROR, exc_info=True)
    assert "\n" not in line
    error = strict_loads(line)["error"]
    assert error["type"] == "tests.test_logging_formatter.Outer.BoomError"
    assert error["message"] == "it broke"
    assert error["stack_trace"].startswith("Traceback (most recent call last):")
    assert 'raise Outer.BoomError("it broke")' in error["stack_trace"]
    assert (
        error["stack_trace"]
        .rstrip()
        .endswith("tests.test_logging_formatter.Outer.BoomError: it broke")
    )


def test_builtin_exceptions_and_chains():
    try:
        try:
            {}["missing"]
        except KeyError as exc:
            raise ValueError("bad value") from exc
    except ValueError:
        error = log_json(level=logging.ERROR, exc_info=True)["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == "bad value"
    assert "KeyError: 'missing'" in error["stack_trace"]
    assert "direct cause" in error["stack_trace"]


def test_exc_info_without_an_exception_and_stack_info():
    data = log_json(exc_info=True)  # nothing is being handled
    assert "error" not in data
    data = log_json(stack_info=True)
    assert "type" not in data["error"]
    assert data["error"]["stack_trace"].startswith("Stack (most recent call last):")


def test_exception_with_a_broken_str():
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    try:
        raise Unprintable
    except Unprintable:
        error = log_json(exc_info=True)["error"]
    assert error["type"].endswith("Unprintable")
    assert error["message"] == "<unprintable Unprintable>"


def test_bad_message_arguments_still_give_a_json_line():
    line = log_line("%d items", "not a number")
    data = strict_loads(line)
    assert data["message"] == "%d items"
    assert data["log"]["logger"] == LOGGER
    assert data["log.level"] == "info"
    assert data["error"]["type"] == "TypeError"
    assert data["error"]["message"].startswith("log record could not be formatted:")


def test_a_fault_in_the_formatter_still_gives_a_json_line(monkeypatch):
    def broken(self, *args):
        raise RuntimeError("formatter bug")

    monkeypatch.setattr(Extras, "add", broken)
    data = strict_loads(log_line("hello %s", "you", extra={"password": SECRET}))
    assert data["message"] == "hello you"
    assert data["error"] == {
        "type": "RuntimeError",
        "message": "log record could not be formatted: formatter bug",
    }
    assert SECRET not in json.dumps(data)
