"""django_observability.logging.server_access: ServerAccessFilter, on servers' records.

gunicorn's record: its access_log_format as the message and a dict of atoms
(gunicorn's own ``Logger.atoms`` and ``SafeAtoms``, from a WSGI environ) as
the arguments. uvicorn's: ``'%s - "%s %s HTTP/%s" %d'`` and the tuple (client,
method, path with query string, HTTP version, status). Django's development
server: ``'"%s" %s %s'`` and (request line, status, size).
"""

import datetime
import io
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger as GunicornLogger

from django_observability.logging import REDACTED, ServerAccessFilter, logging_config
from tests.logging_support import applied, strict_loads

TOKEN = "tok-4f1c9e"
PASSWORD = "pw-7d2a11"
QUERY = f"token={TOKEN}&password={PASSWORD}&page=2"
REFERER = f"https://shop.example/cart?api_key={TOKEN}&step=3"


def gunicorn_record(access_log_format: str | None = None) -> logging.LogRecord:
    """The record gunicorn's Logger.access() logs, from gunicorn's own atoms."""
    cfg = Config()
    if access_log_format is not None:
        cfg.set("access_log_format", access_log_format)
    glogger = GunicornLogger.__new__(GunicornLogger)
    glogger.cfg = cfg
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/x/?{QUERY}",
        "PATH_INFO": "/x/",
        "QUERY_STRING": QUERY,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": REFERER,
        "HTTP_USER_AGENT": "curl/8",
        "HTTP_COOKIE": f"sessionid={TOKEN}",
    }
    request = SimpleNamespace(
        headers=[("REFERER", REFERER), ("USER-AGENT", "curl/8"), ("COOKIE", f"sessionid={TOKEN}")]
    )
    response = SimpleNamespace(status="200 OK", sent=13, headers=[("Content-Type", "text/html")])
    atoms = glogger.atoms_wrapper_class(
        glogger.atoms(response, request, environ, datetime.timedelta(microseconds=1500))
    )
    return logging.LogRecord(
        "gunicorn.access", logging.INFO, "glogging.py", 391, cfg.access_log_format, (atoms,), None
    )


def uvicorn_record() -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "h11_impl.py",
        473,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:51234", "GET", f"/x/?{QUERY}", "1.1", 200),
        None,
    )


def test_gunicorn_default_format():
    record = gunicorn_record()
    assert TOKEN in record.getMessage()  # as gunicorn writes it
    assert ServerAccessFilter().filter(record) is True
    message = record.getMessage()
    assert f'"GET /x/?token={REDACTED}&password={REDACTED}&page=2 HTTP/1.1" 200 13' in message
    assert f'"https://shop.example/cart?api_key={REDACTED}&step=3"' in message
    assert TOKEN not in message
    assert PASSWORD not in message
    assert type(record.args).__name__ == "SafeAtoms"  # gunicorn's lookup rules kept
    assert record.args["nosuchatom"] == "-"


def test_gunicorn_atoms_in_a_custom_format():
    fmt = "%(r)s %(q)s %(U)s %(f)s %({cookie}i)s %({Referer}i)s %({raw_uri}e)s %({http_cookie}e)s"
    record = gunicorn_record(fmt)
    ServerAccessFilter().filter(record)
    message = record.getMessage()
    assert TOKEN not in message
    assert PASSWORD not in message
    parts = message.split(" ")
    assert parts[3] == f"token={REDACTED}&password={REDACTED}&page=2"  # %(q)s
    assert parts[4] == "/x/"
    assert parts[6] == parts[9] == REDACTED  # the Cookie header and variable, whole
    assert parts[5] == parts[7] == f"https://shop.example/cart?api_key={REDACTED}&step=3"
    assert parts[8] == f"/x/?token={REDACTED}&password={REDACTED}&page=2"


def test_uvicorn_record():
    record = uvicorn_record()
    ServerAccessFilter().filter(record)
    assert record.getMessage() == (
        f'127.0.0.1:51234 - "GET /x/?token={REDACTED}&password={REDACTED}&page=2 HTTP/1.1" 200'
    )


def test_django_development_server_record():
    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        "basehttp.py",
        212,
        '"%s" %s %s',
        (f"GET /x/?{QUERY} HTTP/1.1", "200", "13"),
        None,
    )
    ServerAccessFilter().filter(record)
    assert record.getMessage() == (
        f'"GET /x/?token={REDACTED}&password={REDACTED}&page=2 HTTP/1.1" 200 13'
    )


@pytest.mark.parametrize(
    "args",
    [(), ("/x/?page=2",), ({"r": "GET / HTTP/1.1"},), (object(),), ({1: object()},)],
)
def test_records_without_secrets_are_left_alone(args):
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "m %s", args, None)
    before = record.args
    assert ServerAccessFilter().filter(record) is True
    assert record.args == before


def test_a_message_logged_without_arguments():
    record = logging.LogRecord("gunicorn.access", logging.INFO, "", 0, f"GET /?{QUERY}", (), None)
    ServerAccessFilter().filter(record)
    assert record.getMessage() == f"GET /?token={REDACTED}&password={REDACTED}&page=2"


def test_logging_config_attaches_it_to_the_servers_access_loggers():
    stream = io.StringIO()
    config = logging_config(stream=stream, server_access_log=True, mail_admins=False)
    with applied(config):
        for record in (gunicorn_record(), uvicorn_record()):
            logging.getLogger(record.name).handle(record)
    lines = [strict_loads(line) for line in stream.getvalue().splitlines()]
    assert [line["log"]["logger"] for line in lines] == ["gunicorn.access", "uvicorn.access"]
    assert TOKEN not in stream.getvalue()
    assert PASSWORD not in stream.getvalue()
    assert all(f"token={REDACTED}" in line["message"] for line in lines)
