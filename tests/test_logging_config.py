"""django_observability.logging.config: logging_config()."""

import io
import logging
import logging.config
import os
import re
import subprocess
import sys

import pytest
from django.test import RequestFactory, override_settings

from django_observability.logging import logging_config
from tests.logging_support import (
    ALL_LOGGERS,
    SECRET,
    applied,
    in_request,
    servers_configure_logging_first,
    state_of,
    strict_loads,
)

# The ready-made LOGGING dict -------------------------------------------------


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
        "gunicorn.access": "WARNING",  # the servers' access lines: off unless asked for
        "uvicorn": "INFO",
        "uvicorn.error": "NOTSET",
        "uvicorn.access": "WARNING",
        "py.warnings": "NOTSET",
        "celery": "INFO",
        "celery.task": "NOTSET",
        "celery.redirected": "NOTSET",
        "celery.app.trace": "NOTSET",  # Celery's per-task lines: filtered (celery_records)
        "celery.worker.strategy": "NOTSET",
    }
    assert {name: c["level"] for name, c in config["loggers"].items()} == expected
    for logger in config["loggers"].values():
        assert logger["propagate"] is True  # one handler, on the root: one line per record
        assert "console" not in logger["handlers"]
    assert config["loggers"]["django"]["handlers"] == ["mail_admins"]  # as Django has it
    for name in ("celery.app.trace", "celery.worker.strategy"):
        assert config["loggers"][name]["filters"] == ["celery_records"]
    assert config["filters"]["celery_records"] == {
        "()": "django_observability.logging.CeleryRecordFilter"
    }
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
    config = logging_config(stream=stream, server_access_log=True)
    before = {name: state_of(logging.getLogger(name)) for name in ALL_LOGGERS}
    with applied(config, ALL_LOGGERS, django=True, before=servers_configure_logging_first):
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
    assert {name: state_of(logging.getLogger(name)) for name in ALL_LOGGERS} == before


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
        logging.getLogger("gunicorn.access").info("gunicorn access: dropped")
        logging.getLogger("uvicorn.access").info("uvicorn access: dropped")
        logging.getLogger("myproject").warning("warning: kept")
    messages = [strict_loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["audit: kept", "warning: kept"]

    stream = io.StringIO()
    config = logging_config("WARNING", server_access_log=True, stream=stream)
    with applied(config, ALL_LOGGERS):
        logging.getLogger("gunicorn.access").info("gunicorn access: kept")
        logging.getLogger("uvicorn.access").info("uvicorn access: kept")
    messages = [strict_loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["gunicorn access: kept", "uvicorn access: kept"]

    stream = io.StringIO()
    with applied(logging_config("WARNING", stream=stream), ALL_LOGGERS):
        logging.getLogger("django_observability.access").info("access: kept")
    assert strict_loads(stream.getvalue())["message"] == "access: kept"


# Golden lines: what logging_config() writes today, byte for byte ------------------


def golden_records():
    """Records with everything fixed (time, process, thread): an access line, a plain
    line, extras with secrets, a NaN and a fixed-field name, and an error."""

    def fixed(record):
        record.created, record.msecs = 1_700_000_000.25, 250.0
        record.process, record.thread, record.threadName = 4242, 1, "MainThread"
        return record

    access = logging.LogRecord(
        "django_observability.access",
        logging.INFO,
        "/srv/middleware.py",
        493,
        "%s %s %s",
        ("GET", "/api/v1/items/42/", "200"),
        None,
        "_access_log",
    )
    access.__dict__.update(
        {
            "http.request.method": "GET",
            "url.path": "/api/v1/items/42/",
            "http.route": "/api/v1/items/<int:pk>/",
            "http.response.status_code": 200,
            "http.response.body.bytes": 1234,
            "event.duration": 123456,
            "client.ip": "127.0.0.1",
            "db.queries.count": 2,
            "db.queries.duration": 45678,
            "request_id": "rid-1",
            "user.id": "7",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331",
        }
    )
    plain = logging.LogRecord(
        "myproject.views",
        logging.WARNING,
        "/srv/views.py",
        10,
        "caf\u00e9 %s",
        ("\u2028",),
        None,
        "view",
    )
    nested = logging.LogRecord(
        "myproject.views", logging.INFO, "/srv/views.py", 11, "login", (), None, "view"
    )
    nested.__dict__.update(
        {
            "password": "x",
            "data": {"token": "t", "k": [1, 2.5, None]},
            "log.custom": 1,
            "ratio": float("nan"),
        }
    )
    error = logging.LogRecord(
        "django.request", logging.ERROR, "/srv/base.py", 12, "boom", (), None, "get"
    )
    error.exc_text = "Traceback (most recent call last):\nValueError: boom"
    error.stack_info = "Stack (most recent call last):\n  here"
    return [fixed(record) for record in (access, plain, nested, error)]


FIXED_JSON = (
    '"service":{"name":"shop","environment":"prod"},'
    '"process":{"pid":4242,"thread":{"name":"MainThread"}}'
)
GOLDEN_JSON = [
    '{"@timestamp":"2023-11-14T22:13:20.250Z","log.level":"info",'
    '"message":"GET /api/v1/items/42/ 200","log":{"logger":"django_observability.access",'
    '"origin":{"file":{"name":"middleware.py","line":493},"function":"_access_log"}},'
    + FIXED_JSON
    + ',"trace":{"id":"0af7651916cd43dd8448eb211c80319c"},"span":{"id":"b7ad6b7169203331"},'
    '"http":{"request":{"id":"rid-1","method":"GET"},"route":"/api/v1/items/<int:pk>/",'
    '"response":{"status_code":200,"body":{"bytes":1234}}},"url":{"path":"/api/v1/items/42/"},'
    '"event":{"duration":123456},"client":{"ip":"127.0.0.1"},'
    '"db":{"queries":{"count":2,"duration":45678}},"user":{"id":"7"}}',
    '{"@timestamp":"2023-11-14T22:13:20.250Z","log.level":"warning",'
    '"message":"caf\\u00e9 \\u2028","log":{"logger":"myproject.views",'
    '"origin":{"file":{"name":"views.py","line":10},"function":"view"}},' + FIXED_JSON + "}",
    '{"@timestamp":"2023-11-14T22:13:20.250Z","log.level":"info","message":"login",'
    '"log":{"logger":"myproject.views","origin":{"file":{"name":"views.py","line":11},'
    '"function":"view"},"custom":1},'
    + FIXED_JSON
    + ',"password":"[REDACTED]","data":{"token":"[REDACTED]","k":[1,2.5,null]},"ratio":"nan"}',
    '{"@timestamp":"2023-11-14T22:13:20.250Z","log.level":"error","message":"boom",'
    '"log":{"logger":"django.request","origin":{"file":{"name":"base.py","line":12},'
    '"function":"get"}},'
    + FIXED_JSON
    + ',"error":{"stack_trace":"Traceback (most recent call last):\\nValueError: boom\\n'
    'Stack (most recent call last):\\n  here"}}',
]

GOLDEN_TEXT = [
    "INFO django_observability.access [rid-1] GET /api/v1/items/42/ 200",
    "WARNING myproject.views [-] caf\u00e9 \u2028",
    "INFO myproject.views [-] login",
    "ERROR django.request [-] boom\nTraceback (most recent call last):\nValueError: boom\n"
    "Stack (most recent call last):\n  here",
]


@pytest.mark.parametrize("json_lines", [True, False])
@override_settings(OBSERVABILITY_SERVICE_NAME="shop", OBSERVABILITY_ENVIRONMENT="prod")
def test_golden_lines(json_lines):
    names = {record.name for record in golden_records()}
    for _ in range(2):  # written the first time, then from what was kept
        stream = io.StringIO()
        config = logging_config(stream=stream, json=json_lines, mail_admins=False)
        with applied(config, names):
            for record in golden_records():
                logging.getLogger(record.name).handle(record)
        if json_lines:
            assert stream.getvalue().splitlines() == GOLDEN_JSON
        else:
            entries = re.split(
                r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,250 ", stream.getvalue(), flags=re.M
            )
            assert [entry.rstrip("\n") for entry in entries[1:]] == GOLDEN_TEXT
