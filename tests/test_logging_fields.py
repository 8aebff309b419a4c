"""django_observability.logging.fields: the fixed fields every line has."""

import datetime
import io
import logging
import logging.config
import os
import re
import sys
import threading

import pytest
from django.test import override_settings
from opentelemetry.sdk.trace import TracerProvider

from django_observability.logging import (
    REDACTED,
    ContextFilter,
    JsonFormatter,
)
from django_observability.logging.fields import FIXED_FIELDS, FIXED_NAMES, FixedFields
from tests.logging_support import (
    LOGGER,
    applied,
    in_request,
    log_line,
    make_record,
    strict_loads,
)


@pytest.fixture
def tracer():
    # A local provider: nothing global is set, yet start_as_current_span still
    # makes its span the current one.
    return TracerProvider().get_tracer("tests")


@pytest.fixture
def no_otel_env(monkeypatch):
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)


# Fields ---------------------------------------------------------------------


@pytest.mark.usefixtures("no_otel_env")
@override_settings(OBSERVABILITY_SERVICE_NAME="shop", OBSERVABILITY_ENVIRONMENT="staging")
def test_every_fixed_field():
    line = log_line("hello %s", "world", level=logging.WARNING)
    lineno = sys._getframe().f_lineno - 1
    data = strict_loads(line)

    assert line.startswith('{"@timestamp":')
    assert list(data)[:3] == ["@timestamp", "log.level", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["@timestamp"])
    stamp = datetime.datetime.fromisoformat(data["@timestamp"].replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - stamp).total_seconds()) < 5
    assert data["log.level"] == "warning"
    assert data["message"] == "hello world"
    assert data["log"] == {
        "logger": LOGGER,
        "origin": {
            "file": {"name": "test_logging_fields.py", "line": lineno},
            "function": "test_every_fixed_field",
        },
    }
    assert data["service"] == {"name": "shop", "environment": "staging"}
    assert data["process"] == {
        "pid": os.getpid(),
        "thread": {"name": threading.current_thread().name},
    }
    # Outside a request and a span: no ids, no error, no LogRecord internals.
    for absent in ("trace", "span", "http", "error", "args", "msg", "levelno", "pathname"):
        assert absent not in data
    assert set(data) == {"@timestamp", "log.level", "message", "log", "service", "process"}


def test_timestamp_is_the_records_time_in_utc():
    formatter = JsonFormatter()
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "m", (), None)
    record.created = 1_700_000_000.25
    record.msecs = 250.0
    assert strict_loads(formatter.format(record))["@timestamp"] == "2023-11-14T22:13:20.250Z"
    record.created, record.msecs = 1_700_000_001.0, 7.0
    assert strict_loads(formatter.format(record))["@timestamp"] == "2023-11-14T22:13:21.007Z"


def test_one_line_whatever_the_message():
    line = log_line('multi\nline "quoted" \u2028 caf\u00e9 \x00')
    assert "\n" not in line
    assert strict_loads(line)["message"] == 'multi\nline "quoted" \u2028 caf\u00e9 \x00'


def test_usable_from_a_logging_dict():
    stream = io.StringIO()
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "django_observability.logging.JsonFormatter",
                "redact_keys": ["iban"],
                "static_fields": {"event.dataset": "shop.app"},
            }
        },
        "handlers": {
            "s": {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}
        },
        "loggers": {"tests.dictconfig": {"handlers": ["s"], "level": "INFO", "propagate": False}},
    }
    with applied(config, names=["tests.dictconfig"]):
        logging.getLogger("tests.dictconfig").info("hi", extra={"customer_iban": "DE00 1234"})
    data = strict_loads(stream.getvalue())
    assert data["customer_iban"] == REDACTED
    assert data["event"] == {"dataset": "shop.app"}


def test_fast_and_merged_paths_write_the_same_fixed_fields(tracer):
    formatter = JsonFormatter()
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 12, "m %s", ("x",), None, "fn")
    with in_request("r"), tracer.start_as_current_span("s"):
        ContextFilter().filter(record)
    record.__dict__["url.path"] = "/p"
    # The fixed fields as text (lines from a template, and most others)...
    fast = strict_loads(formatter.format(record))
    # ... and as a dict, when an extra shares a name with one of them.
    record.__dict__["log.custom"] = 1
    merged = strict_loads(JsonFormatter().format(record))
    assert merged["log"].pop("custom") == 1
    assert fast == merged
    assert list(fast) == list(merged)
    assert list(fast)[:6] == list(FIXED_FIELDS)


def test_head_and_dict_are_the_same_table():
    fixed = FixedFields(ensure_ascii=True)
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 12, "caf\u00e9", (), None, "fn")
    record.message = record.getMessage()
    head = fixed.head(record)
    assert head == fixed.head(record)  # the call site's text, kept
    as_dict = fixed.as_dict(record)
    assert strict_loads(head + "}") == as_dict
    assert list(strict_loads(head + "}")) == list(as_dict) == list(FIXED_FIELDS)
    assert set(FIXED_FIELDS) == FIXED_NAMES


def test_fixed_fields_of_other_types_are_not_mixed_up():
    formatter = JsonFormatter()
    odd = make_record()
    odd.lineno = True
    formatter.format(odd)
    record = make_record()
    assert strict_loads(formatter.format(record))["log"]["origin"]["file"]["line"] == 7
    assert type(strict_loads(formatter.format(record))["log"]["origin"]["file"]["line"]) is int
