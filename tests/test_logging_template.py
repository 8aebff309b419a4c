"""django_observability.logging.template: lines written from a template."""

import datetime
import decimal
import logging
import logging.config
import sys

import pytest

from django_observability.logging import (
    REDACTED,
    JsonFormatter,
    template,
)
from django_observability.logging.fields import HOLE_MARK
from tests.logging_support import (
    LOGGER,
    SECRET,
    general_line,
    make_record,
    planned_line,
    strict_loads,
)

# Lines written from a template (the fast path) --------------------------------


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
    {"next": "https://u:pw@h/p?token=t&page=2", "query": "a=b", "email": "a@b.c"},
]


@pytest.mark.parametrize("extra", TEMPLATED)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_templated_lines_match_the_general_path(extra, ascii_only):
    formatter = JsonFormatter(json_ensure_ascii=ascii_only)
    for value in ("first", "second"):  # the template is made, then reused
        record = make_record(args=(value,), **extra)
        planned = planned_line(formatter, record)
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
        planned = planned_line(formatter, record)
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
    assert planned_line(formatter, record) is None
    line = formatter.format(record)
    strict_loads(line)


def test_a_template_is_not_used_for_a_value_of_another_kind():
    formatter = JsonFormatter()
    assert planned_line(formatter, make_record(data="text")) is not None
    record = make_record(data={"password": SECRET, "k": 1})
    assert planned_line(formatter, record) is None
    data = strict_loads(formatter.format(record))
    assert data["data"] == {"password": REDACTED, "k": 1}


def test_values_that_look_like_holes_are_plain_text():
    lookalike = f"\x00{HOLE_MARK}:0\x00"
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
    assert planned_line(formatter, record) is None
    assert strict_loads(formatter.format(record))["error"]["type"] == "ValueError"
    record = make_record(msg={"message": "hi", "k": 1}, args=())
    assert planned_line(formatter, record) is None
    assert strict_loads(formatter.format(record))["k"] == 1


def test_templates_are_bounded(monkeypatch):
    monkeypatch.setattr(template, "CACHE_SIZE", 3)
    formatter = JsonFormatter()
    for n in range(10):  # a new shape of record each time
        record = make_record(**{f"key{n}": n})
        line = formatter.format(record)
        assert strict_loads(line)[f"key{n}"] == n
        assert line == general_line(formatter, record)
    assert len(formatter.templates) == 3


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
