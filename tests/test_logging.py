import contextlib
import datetime
import decimal
import io
import json
import logging
import logging.config
import os
import queue
import re
import subprocess
import sys
import threading
from logging.handlers import QueueHandler, QueueListener

import pytest
from django.test import RequestFactory, override_settings
from django.utils.log import configure_logging
from opentelemetry.sdk.trace import TracerProvider

from django_observability import logging as obs_logging
from django_observability.logging import (
    REDACTED,
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    logging_config,
)
from django_observability.request_id import _current

LOGGER = "tests.logging"


def strict_loads(line):
    """json.loads that refuses NaN and Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def log_line(msg="hello", *args, formatter=None, level=logging.INFO, stacklevel=2, **kw):
    """Log one record through a JsonFormatter; the raw line, checked to be one line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or JsonFormatter())
    logger = logging.getLogger(LOGGER)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.log(level, msg, *args, stacklevel=stacklevel, **kw)
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
    text = stream.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1, text
    return text[:-1]


def log_json(*args, **kw):
    return strict_loads(log_line(*args, stacklevel=3, **kw))


@contextlib.contextmanager
def in_request(request_id):
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


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
            "file": {"name": "test_logging.py", "line": lineno},
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


@pytest.mark.usefixtures("no_otel_env")
def test_service_follows_override_settings():
    formatter = JsonFormatter()
    with override_settings(OBSERVABILITY_SERVICE_NAME="one", OBSERVABILITY_ENVIRONMENT="prod"):
        assert log_json(formatter=formatter)["service"] == {"name": "one", "environment": "prod"}
    with override_settings(OBSERVABILITY_SERVICE_NAME="two"):
        # No environment configured: the field is left out, not empty.
        assert log_json(formatter=formatter)["service"] == {"name": "two"}


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


# Extras ---------------------------------------------------------------------


def test_dotted_extras_are_nested_and_merged():
    extra = {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "http.response.body.bytes": 512,
        "url.path": "/items/",
        "event.duration": 1_500_000,
        "plain": "as is",
        "count": 3,
        "ratio": 0.5,
        "flag": True,
        "nothing": None,
    }
    with in_request("rid-1"):
        data = log_json(extra=extra)
    assert data["http"] == {
        "request": {"id": "rid-1", "method": "GET"},
        "response": {"status_code": 200, "body": {"bytes": 512}},
    }
    assert data["url"] == {"path": "/items/"}
    assert data["event"] == {"duration": 1_500_000}
    assert data["plain"] == "as is"
    assert data["count"] == 3
    assert data["ratio"] == 0.5
    assert data["flag"] is True
    assert data["nothing"] is None


def test_extras_merge_into_fixed_fields_and_dict_values():
    extra = {
        "log.origin.extra_note": "x",
        "service.version": "1.2.3",
        "db": {"system": "postgresql", "query": {"count": 1}},
        "db.query.duration": 20,
    }
    snapshot = json.dumps(extra, sort_keys=True)
    data = log_json(extra=extra)
    assert data["log"]["logger"] == LOGGER
    assert data["log"]["origin"]["extra_note"] == "x"
    assert (
        data["log"]["origin"]["function"] == "test_extras_merge_into_fixed_fields_and_dict_values"
    )
    assert data["service"]["version"] == "1.2.3"
    assert data["service"]["name"]
    assert data["db"] == {"system": "postgresql", "query": {"count": 1, "duration": 20}}
    # The caller's objects are never modified.
    assert json.dumps(extra, sort_keys=True) == snapshot


def test_a_dotted_key_under_a_plain_value_stays_flat():
    data = log_json(extra={"user": "ann", "user.id": 7})
    assert data["user"] == "ann"
    assert data["user.id"] == 7


def test_dict_message():
    data = log_json({"event.action": "export", "message": "exported", "token": "t0k"})
    assert data["event"] == {"action": "export"}
    assert data["message"] == "exported"
    assert data["token"] == REDACTED


def test_static_fields_are_copied_per_record():
    formatter = JsonFormatter(static_fields={"labels": {"team": "core"}})
    first = log_json(formatter=formatter, extra={"labels.shard": "a"})
    second = log_json(formatter=formatter)
    assert first["labels"] == {"team": "core", "shard": "a"}
    assert second["labels"] == {"team": "core"}


def test_integration_attributes_are_not_extras():
    # Stamped by OpenTelemetry's logging instrumentation and by uvicorn.
    data = log_json(
        extra={"otelTraceID": "0", "otelSpanID": "0", "color_message": "\x1b[1m", "_private": 1}
    )
    assert not {"otelTraceID", "otelSpanID", "color_message", "_private"} & set(data)


# Redaction ------------------------------------------------------------------


SECRET = "hunter2-s3cr3t-value"


def test_redaction_at_any_depth():
    extra = {
        "password": SECRET,
        "user": {"name": "ann", "Password": SECRET, "profile": {"api_key": SECRET}},
        "headers": [
            {"Authorization": f"Bearer {SECRET}"},
            {"Cookie": f"sessionid={SECRET}"},
            {"X-CSRFToken": SECRET},
            {"Accept": "text/html"},
        ],
        "sessionid": SECRET,
        "http.request.headers.authorization": SECRET,
        "DB_PASSWD": SECRET,
        "client_secret": SECRET,
        "refresh_token": SECRET,
        "x-api-key": SECRET,
        "ApiKey": SECRET,
        "aws_credentials": SECRET,
        "pairs": ({"csrfmiddlewaretoken": SECRET}, "plain"),
    }
    snapshot = repr(extra)
    line = log_line("login for %s", "ann", extra=extra)
    assert SECRET not in line
    data = strict_loads(line)
    assert data["message"] == "login for ann"
    assert data["password"] == REDACTED
    assert data["user"] == {"name": "ann", "Password": REDACTED, "profile": {"api_key": REDACTED}}
    assert data["headers"] == [
        {"Authorization": REDACTED},
        {"Cookie": REDACTED},
        {"X-CSRFToken": REDACTED},
        {"Accept": "text/html"},
    ]
    assert data["sessionid"] == REDACTED
    assert data["http"]["request"]["headers"] == {"authorization": REDACTED}
    for key in ("DB_PASSWD", "client_secret", "refresh_token", "x-api-key", "ApiKey"):
        assert data[key] == REDACTED
    assert data["aws_credentials"] == REDACTED
    assert data["pairs"] == [{"csrfmiddlewaretoken": REDACTED}, "plain"]
    assert repr(extra) == snapshot  # redacted copies, the caller's data untouched


def test_a_whole_sensitive_subtree_is_redacted():
    data = log_json(extra={"session": {"id": SECRET, "user": 1}})
    assert data["session"] == REDACTED


def test_request_headers_mapping_is_redacted_not_stringified():
    request = RequestFactory().get(
        "/account/?token=" + SECRET,
        HTTP_AUTHORIZATION=f"Bearer {SECRET}",
        HTTP_COOKIE=f"sessionid={SECRET}",
        HTTP_ACCEPT="text/html",
    )
    line = log_line(extra={"headers": request.headers, "request": request})
    assert SECRET not in line
    data = strict_loads(line)
    assert data["headers"]["Authorization"] == REDACTED
    assert data["headers"]["Cookie"] == REDACTED
    assert data["headers"]["Accept"] == "text/html"
    assert data["request"] == "<WSGIRequest: GET '/account/'>"


def test_the_message_itself_is_not_altered():
    data = log_json("password reset for %s", "ann", extra={"token": SECRET})
    assert data["message"] == "password reset for ann"
    assert data["token"] == REDACTED


def test_redact_keys_are_extensible():
    formatter = JsonFormatter(redact_keys=["ssn", "IBAN"])
    data = log_json(formatter=formatter, extra={"user_ssn": "1", "iban": "2", "password": "3"})
    assert data == {**data, "user_ssn": REDACTED, "iban": REDACTED, "password": REDACTED}

    class Narrow(JsonFormatter):
        redact_keys = ("pin",)

    data = log_json(formatter=Narrow(), extra={"card_pin": "1", "password": "visible"})
    assert data["card_pin"] == REDACTED
    assert data["password"] == "visible"
    assert JsonFormatter.redact_keys == obs_logging.DEFAULT_REDACT_KEYS


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
    assert error["type"] == "tests.test_logging.Outer.BoomError"
    assert error["message"] == "it broke"
    assert error["stack_trace"].startswith("Traceback (most recent call last):")
    assert 'raise Outer.BoomError("it broke")' in error["stack_trace"]
    assert error["stack_trace"].rstrip().endswith("tests.test_logging.Outer.BoomError: it broke")


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
from django_observability.request_id import _current
assert obs._get_current_span is None
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


# Robustness -----------------------------------------------------------------


class Opaque:
    def __str__(self):
        return "opaque!"


class Unprintable:
    def __str__(self):
        raise RuntimeError("no str")

    __repr__ = __str__


def test_values_json_cannot_encode_do_not_break_logging():
    looped = [1]
    looped.append(looped)
    extra = {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "amount": decimal.Decimal("1.10"),
        "tags": {"b", "a"},
        "raw": b"\xffbytes",
        "obj": Opaque(),
        "broken": Unprintable(),
        "keys": {("a", 1): "tuple key", 2: "int key"},
        "nan": float("nan"),
        "inf": float("inf"),
        "looped": looped,
    }
    with in_request("rid-robust"):
        line = log_line("still %s", "logged", extra=extra)
    data = strict_loads(line)
    assert data["message"] == "still logged"
    assert data["http"]["request"]["id"] == "rid-robust"
    assert data["when"] == "2024-01-02T03:04:05+00:00"
    assert data["amount"] == "1.10"
    assert data["tags"] == ["a", "b"]
    assert data["raw"] == "\\xffbytes"
    assert data["obj"] == "opaque!"
    assert data["broken"] == "<unprintable Unprintable>"
    assert data["keys"] == {"('a', 1)": "tuple key", "2": "int key"}
    assert data["nan"] == "nan"
    assert data["inf"] == "inf"
    assert data["looped"][0] == 1


def test_a_simple_unencodable_value_keeps_the_fast_path():
    # Only the NaN case above needs the slow path; default= handles the rest.
    data = log_json(extra={"obj": Opaque(), "tags": frozenset({3, 1})})
    assert data["obj"] == "opaque!"
    assert data["tags"] == [1, 3]


def test_fast_and_merged_paths_write_the_same_fixed_fields(tracer):
    formatter = JsonFormatter()
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 12, "m %s", ("x",), None, "fn")
    with in_request("r"), tracer.start_as_current_span("s"):
        ContextFilter().filter(record)
    record.__dict__["url.path"] = "/p"
    fields = formatter._fields(record)
    fast = strict_loads(formatter._fast(record, fields))
    merged = formatter._merged(record, fields)
    assert fast == merged
    assert list(fast) == list(merged)


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

    monkeypatch.setattr(JsonFormatter, "_extras_into", broken)
    data = strict_loads(log_line("hello %s", "you", extra={"password": SECRET}))
    assert data["message"] == "hello you"
    assert data["error"] == {
        "type": "RuntimeError",
        "message": "log record could not be formatted: formatter bug",
    }
    assert SECRET not in json.dumps(data)


def test_broken_settings_do_not_cost_the_line(monkeypatch):
    def broken():
        raise RuntimeError("bad settings")

    monkeypatch.setattr(obs_logging, "_read_service", broken)
    monkeypatch.setattr(obs_logging, "_service_cache", None)
    assert log_json()["service"] == {"name": "django"}


# The ready-made LOGGING dict -------------------------------------------------


def _state(logger):
    return (logger.handlers[:], logger.level, logger.propagate, logger.disabled, logger.filters[:])


@contextlib.contextmanager
def applied(config, names=(), *, django=False, before=None):
    """Apply a LOGGING dict, then put every touched logger back as it was.

    A context manager inside the test rather than a fixture: pytest attaches
    its own capturing handlers to the root logger per test phase, and those
    must be restored within the same phase.
    """
    names = {None, *names, *config.get("loggers", {})}
    saved = {name: _state(logging.getLogger(name)) for name in names}
    saved_list = logging._handlerList[:]
    saved_named = dict(logging._handlers)
    try:
        if before is not None:
            before()
        if django:
            configure_logging("logging.config.dictConfig", config)
        else:
            logging.config.dictConfig(config)
        yield
    finally:
        for name, (handlers, level, propagate, disabled, filters) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled
            logger.filters[:] = filters
        logging._handlerList[:] = saved_list
        logging._handlers.clear()
        logging._handlers.update(saved_named)


def _servers_configure_logging_first():
    """What gunicorn and uvicorn do before Django loads: their own handlers."""
    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from uvicorn.config import LOGGING_CONFIG

    logging.config.dictConfig(LOGGING_CONFIG)
    Logger(Config())


ALL_LOGGERS = [
    "django",
    "django.request",
    "django.server",
    "django.security.csrf",
    "django.db.backends",
    "django_observability",
    "django_observability.access",
    "django_observability.audit",
    "gunicorn.error",
    "gunicorn.access",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "myproject.views",
]


def test_logging_config_shape():
    config = logging_config()
    assert config["version"] == 1
    assert config["disable_existing_loggers"] is False
    assert config["formatters"]["json"] == {"()": "django_observability.logging.JsonFormatter"}
    assert config["filters"]["context"] == {"()": "django_observability.logging.ContextFilter"}
    console = config["handlers"]["console"]
    assert console["class"] == "logging.StreamHandler"
    assert console["stream"] == "ext://sys.stdout"
    assert console["formatter"] == "json"
    assert console["filters"] == ["context"]
    assert config["root"] == {"level": "INFO", "handlers": ["console"]}
    assert logging_config("debug")["root"]["level"] == "DEBUG"
    assert logging_config(json=False)["handlers"]["console"]["formatter"] == "text"
    expected = {
        "django": "INFO",
        "django.request": "NOTSET",
        "django.server": "NOTSET",
        "django.security": "NOTSET",
        "django_observability": "INFO",
        "django_observability.access": "INFO",
        "django_observability.audit": "INFO",
        "gunicorn.error": "INFO",
        "gunicorn.access": "INFO",
        "uvicorn": "INFO",
        "uvicorn.error": "NOTSET",
        "uvicorn.access": "INFO",
    }
    assert {name: c["level"] for name, c in config["loggers"].items()} == expected
    for logger in config["loggers"].values():
        assert logger["propagate"] is True  # one handler, on the root: one line per record
        assert "console" not in logger["handlers"]
    assert config["loggers"]["django"]["handlers"] == ["mail_admins"]  # as Django has it
    assert logging_config(access_log=False)["loggers"]["django_observability.access"] == {
        "level": "WARNING",
        "handlers": [],
        "propagate": True,
    }


def test_without_mail_admins_for_a_server_master():
    """gunicorn's logconfig_dict is applied before Django's settings exist:
    nothing in it may read them when it is made."""
    config = logging_config(mail_admins=False)
    assert "mail_admins" not in config["handlers"]
    assert "require_debug_false" not in config["filters"]
    assert config["loggers"]["django"]["handlers"] == []
    code = (
        "import logging.config, io, json\n"
        "from django_observability.logging import logging_config\n"
        "stream = io.StringIO()\n"
        "logging.config.dictConfig(logging_config(stream=stream, mail_admins=False))\n"
        "logging.getLogger('gunicorn.error').info('Starting gunicorn')\n"
        "from django.conf import settings\n"
        "assert not settings.configured\n"
        "print(json.loads(stream.getvalue())['message'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Starting gunicorn"


def test_exactly_one_json_line_per_record_from_every_logger(capsys):
    stream = io.StringIO()
    config = logging_config(stream=stream)
    before = {name: _state(logging.getLogger(name)) for name in ALL_LOGGERS}
    with applied(config, ALL_LOGGERS, django=True, before=_servers_configure_logging_first):
        request = RequestFactory().get("/missing/?token=" + SECRET)
        with in_request("one-line"):
            for name in ALL_LOGGERS:
                logging.getLogger(name).info("info from %s", name)
            logging.getLogger("django.request").warning(
                "Not Found: %s", request.path, extra={"status_code": 404, "request": request}
            )
            try:
                raise ValueError("boom")
            except ValueError:
                logging.getLogger("django.request").error(
                    "Internal Server Error: /x",
                    exc_info=True,
                    extra={"status_code": 500, "request": request},
                )
            logging.getLogger("django.db.backends").debug("below the level: dropped")
    lines = stream.getvalue().splitlines()
    records = [strict_loads(line) for line in lines]
    assert [r["log"]["logger"] for r in records] == [
        *ALL_LOGGERS,
        "django.request",
        "django.request",
    ]
    assert all(r["http"]["request"]["id"] == "one-line" for r in records)
    assert records[-1]["error"]["type"] == "ValueError"
    assert SECRET not in stream.getvalue()
    # Nothing went anywhere else (Django's console handler, gunicorn's, uvicorn's).
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""
    assert {name: _state(logging.getLogger(name)) for name in ALL_LOGGERS} == before


def test_default_stream_is_stdout(capsys):
    with applied(logging_config()):
        logging.getLogger("django_observability.access").info("GET / 200")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert strict_loads(out)["message"] == "GET / 200"


def test_levels_and_access_log_switch():
    stream = io.StringIO()
    with applied(logging_config("WARNING", access_log=False, stream=stream), ALL_LOGGERS):
        logging.getLogger("django_observability.access").info("access: dropped")
        logging.getLogger("django_observability").info("info: dropped at WARNING")
        logging.getLogger("django").info("django info: dropped at WARNING")
        logging.getLogger("django_observability.audit").info("audit: kept")
        logging.getLogger("gunicorn.access").info("server access: kept")
        logging.getLogger("myproject").warning("warning: kept")
    messages = [strict_loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["audit: kept", "server access: kept", "warning: kept"]

    stream = io.StringIO()
    with applied(logging_config("WARNING", stream=stream), ALL_LOGGERS):
        logging.getLogger("django_observability.access").info("access: kept")
    assert strict_loads(stream.getvalue())["message"] == "access: kept"


def test_text_lines_carry_the_request_id():
    stream = io.StringIO()
    with applied(logging_config(json=False, stream=stream), ALL_LOGGERS):
        with in_request("text-rid"):
            logging.getLogger("django_observability.access").info("GET /x 200")
        logging.getLogger("django").warning("outside")
    first, second = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO django_observability.access "
        r"\[text-rid\] GET /x 200",
        first,
    )
    assert second.endswith("WARNING django [-] outside")


def test_text_formatter_does_not_change_the_record():
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "m", (), None)
    record.request_id = None
    line = TextFormatter("%(request_id)s %(trace_id)s %(message)s").format(record)
    assert line == "- - m"
    assert record.request_id is None
    assert "trace_id" not in record.__dict__


# Lines written from a template (the fast path) --------------------------------


def general_line(formatter, record):
    """The line as the general path writes it: every field through the walk and the encoder."""
    fields = formatter._fields(record)
    try:
        return formatter._fast(record, fields)
    except LookupError:
        return formatter._encode(formatter._merged(record, fields))


def make_record(msg="m %s", args=("x",), **extra):
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 7, msg, args, None, func="here")
    record.__dict__.update(extra)
    return record


TEMPLATED = [
    {},
    {"request_id": "rid-1", "trace_id": "a" * 32, "span_id": "b" * 16},
    {"request_id": 17},
    {"request_id": "", "trace_id": None},
    {"http.request.method": "GET", "http.response.status_code": 200, "url.path": '/a"b\\c/'},
    {"http.request.method": "GET", "request_id": "rid", "http.request.size": 5},
    {"a": 1, "a.b": 2},
    {"a.b": 2, "a": 1},
    {"a.b.c": True, "a.b.d": None, "a.e": 1.5, "f": -0.0},
    {"n": 10**30, "ok": False, "text": "héllo \u2028 \x01 \U0001f600"},
    {"password": "hunter2", "nested.api_key": "k", "user.id": "7"},
    {"a..b": 1, ".a": 2, "a.": 3, "_private": 4},
    {"wierd key \"'\\": "v", "é.ü": "x"},
    {"message_extra": "\x00\x010\x01\x00"},
]


@pytest.mark.parametrize("extra", TEMPLATED)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_templated_lines_match_the_general_path(extra, ascii_only):
    formatter = JsonFormatter(json_ensure_ascii=ascii_only)
    for value in ("first", "second"):  # the template is made, then reused
        record = make_record(args=(value,), **extra)
        planned = formatter._planned(record)
        assert planned is not None
        assert planned == general_line(formatter, record)
        assert formatter.format(record) == planned
        strict_loads(planned)


@pytest.mark.parametrize(
    "static",
    [
        {"cloud": {"region": "eu-1"}, "team": "shop"},
        {"a": {"x": 1}},  # merged with the record's "a.b"
        {"a": "scalar"},  # the record's "a.b" lands flat
        {"deploy.ring": 2},
    ],
)
def test_templated_lines_with_static_fields(static):
    formatter = JsonFormatter(static_fields=static)
    for value in (1, 2):
        record = make_record(**{"a.b": value, "c": "d"})
        planned = formatter._planned(record)
        assert planned is not None
        assert planned == general_line(formatter, record)


@pytest.mark.parametrize(
    "extra",
    [
        {"data": {"k": "v"}},  # a dict: nested by the walk
        {"items": [1, 2]},
        {"when": datetime.date(2025, 1, 2)},
        {"ratio": float("nan")},
        {"big": decimal.Decimal("1.5")},
        {"service": "mine"},  # shares a name with a fixed field
        {"log.level": "x"},
    ],
)
def test_records_a_template_does_not_fit_take_the_general_path(extra):
    formatter = JsonFormatter()
    record = make_record(**extra)
    assert formatter._planned(record) is None
    line = formatter.format(record)
    strict_loads(line)


def test_a_template_is_not_used_for_a_value_of_another_kind():
    formatter = JsonFormatter()
    assert formatter._planned(make_record(data="text")) is not None
    record = make_record(data={"password": SECRET, "k": 1})
    assert formatter._planned(record) is None
    data = strict_loads(formatter.format(record))
    assert data["data"] == {"password": REDACTED, "k": 1}


def test_values_that_look_like_holes_are_plain_text():
    from django_observability.logging import _HOLE_MARK

    lookalike = f"\x00{_HOLE_MARK}:0\x00"
    formatter = JsonFormatter(static_fields={"odd": lookalike})
    record = make_record(x=1, y=lookalike)
    line = formatter.format(record)
    assert line == general_line(formatter, record)
    data = strict_loads(line)
    assert data["odd"] == data["y"] == lookalike
    assert data["x"] == 1


def test_errors_and_dict_messages_take_the_general_path():
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(LOGGER, logging.ERROR, __file__, 1, "m", (), sys.exc_info())
    assert formatter._planned(record) is None
    assert strict_loads(formatter.format(record))["error"]["type"] == "ValueError"
    record = make_record(msg={"message": "hi", "k": 1}, args=())
    assert formatter._planned(record) is None
    assert strict_loads(formatter.format(record))["k"] == 1


def test_templates_are_bounded(monkeypatch):
    monkeypatch.setattr(obs_logging, "_PLAN_CACHE_SIZE", 3)
    formatter = JsonFormatter()
    for n in range(10):  # a new shape of record each time
        record = make_record(**{f"key{n}": n})
        line = formatter.format(record)
        assert strict_loads(line)[f"key{n}"] == n
        assert line == general_line(formatter, record)
    assert len(formatter._plans) == 3


@pytest.mark.parametrize(
    ("extra", "parent"),
    [
        ({"order": None, "order.id": 17}, "order"),
        ({"a.b": None, "a.b.c": 1}, "a.b"),
        ({"request_id": "rid", "http": None, "http.x": 1}, "http"),
        ({"order.id": 17, "order": None}, "order"),
    ],
)
def test_a_none_parent_of_dotted_extras_nests_as_the_general_path_does(extra, parent):
    formatter = JsonFormatter()
    for value in ("x", None, "y", None):  # the template is made while the parent is set
        record = make_record(**{**extra, parent: value})
        assert formatter.format(record) == general_line(formatter, record)


def test_attributes_named_by_ints_are_not_taken_for_ids():
    formatter = JsonFormatter()
    for _ in range(2):
        record = make_record(request_id="req-42")
        record.__dict__.update({0: "zero", 1: "one", 5: "five"})
        line = formatter.format(record)
        assert line == general_line(formatter, record)
        data = strict_loads(line)
        assert (data["0"], data["1"], data["5"]) == ("zero", "one", "five")
        assert data["http"] == {"request": {"id": "req-42"}}


def test_non_finite_static_fields_still_give_json():
    formatter = JsonFormatter(static_fields={"x": float("nan"), "y": float("inf")})
    record = make_record(a=1)
    data = strict_loads(formatter.format(record))
    assert (data["x"], data["y"], data["a"]) == ("nan", "inf", 1)


def test_static_fields_changed_or_lazy_are_read_again():
    class Build:
        n = 0

        def __str__(self):
            Build.n += 1
            return f"v{Build.n}"

    formatter = JsonFormatter(static_fields={"build": Build()})
    seen = {strict_loads(formatter.format(make_record(a=1)))["build"] for _ in range(3)}
    assert len(seen) == 3  # written from the object each time, as the general path does

    formatter = JsonFormatter(static_fields={"team": "shop"})
    assert "later" not in strict_loads(formatter.format(make_record(a=1)))
    formatter.static_fields["later"] = "added"
    record = make_record(a=2)
    line = formatter.format(record)
    assert strict_loads(line)["later"] == "added"
    assert line == general_line(formatter, record)


def test_fixed_fields_of_other_types_are_not_mixed_up():
    formatter = JsonFormatter()
    odd = make_record()
    odd.lineno = True
    formatter.format(odd)
    record = make_record()
    assert strict_loads(formatter.format(record))["log"]["origin"]["file"]["line"] == 7
    assert type(strict_loads(formatter.format(record))["log"]["origin"]["file"]["line"]) is int
