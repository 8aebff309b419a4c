"""django_observability.logging.values: values json cannot encode."""

import datetime
import decimal

from tests.logging_support import (
    in_request,
    log_json,
    log_line,
    strict_loads,
)

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
