"""Text forms shared by metrics, spans and logs (``formats.py``)."""

from types import SimpleNamespace

from django_observability.formats import exception_name, hex_ids


def test_hex_ids_are_zero_padded_lowercase():
    context = SimpleNamespace(trace_id=0xABC, span_id=0x1F)
    assert hex_ids(context) == ("0" * 29 + "abc", "0" * 14 + "1f")


class Outer:
    class InnerError(Exception):
        pass


def test_exception_names():
    assert exception_name(ValueError("x")) == "ValueError"
    assert exception_name(KeyError) == "KeyError"
    assert exception_name(Outer.InnerError()) == "tests.test_formats.Outer.InnerError"
