"""django_observability.logging.extras: extras nested, redaction."""

import json

from django.test import RequestFactory

from django_observability.logging import (
    DEFAULT_REDACT_KEYS,
    REDACTED,
    JsonFormatter,
)
from tests.logging_support import (
    LOGGER,
    SECRET,
    in_request,
    log_json,
    log_line,
    strict_loads,
)

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
    assert JsonFormatter.redact_keys == DEFAULT_REDACT_KEYS


def test_lists_of_name_value_pairs_are_redacted_by_name():
    extra = {
        "headers": [("Authorization", f"Bearer {SECRET}"), ("page", "2")],
        "params": [["token", SECRET], ["sort", "name"]],
        "jar": (("sessionid", SECRET),),
        "words": ["token", "plain"],  # a list of words is not a pair
    }
    line = log_line(extra=extra)
    assert SECRET not in line
    data = strict_loads(line)
    assert data["headers"] == [["Authorization", REDACTED], ["page", "2"]]
    assert data["params"] == [["token", REDACTED], ["sort", "name"]]
    assert data["jar"] == [["sessionid", REDACTED]]
    assert data["words"] == ["token", "plain"]


def test_urls_in_text_values_lose_their_secrets():
    extra = {
        "next": f"https://shop.example/cb?code=1&access_token={SECRET}",
        "database": f"postgres://app:{SECRET}@db/shop",
        "nested": {"links": [f"/reset?password={SECRET}&page=2"]},
        "http.request.referrer": f"https://ref.example/?api_key={SECRET}",
        "plain": "a=b and ann@example.com",
    }
    for templates in (True, False):
        line = log_line(formatter=JsonFormatter(templates=templates), extra=extra)
        assert SECRET not in line
        data = strict_loads(line)
        assert data["next"] == f"https://shop.example/cb?code=1&access_token={REDACTED}"
        assert data["database"] == f"postgres://app:{REDACTED}@db/shop"
        assert data["nested"] == {"links": [f"/reset?password={REDACTED}&page=2"]}
        assert data["http"]["request"]["referrer"] == f"https://ref.example/?api_key={REDACTED}"
        assert data["plain"] == "a=b and ann@example.com"
