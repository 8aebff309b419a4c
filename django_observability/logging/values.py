"""Turning logged values into JSON: never an exception, always compact, one line.

Helpers shared by the formatter's modules. ``json`` can encode the plain
values (dicts with text keys, lists, text, numbers, booleans, ``None``); the
rest is written as text by :func:`json_default`, and :func:`plain` makes a
copy that is sure to encode when a first attempt failed.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

MAX_DEPTH = 16  # nesting levels of an extra value we walk; deeper is cut
TRUNCATED = "[TRUNCATED]"

# Types whose values json writes as they are (floats only when finite).
SCALARS = frozenset({str, int, float, bool, type(None)})


def safe_str(value: Any) -> str:
    """``str(value)``, or a placeholder naming its type when ``__str__`` raises."""
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def json_default(value: Any) -> Any:
    """What ``json`` cannot encode: text, never an exception."""
    from django.http import HttpRequest

    if isinstance(value, HttpRequest):
        # str(request) shows the query string, where tokens sometimes travel.
        return f"<{type(value).__name__}: {value.method} {value.path!r}>"
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    return safe_str(value)


def plain(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that ``json`` is sure to encode (second attempt only)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if value - value == 0 else str(value)  # NaN and infinities as text
    if depth >= MAX_DEPTH:
        return TRUNCATED
    if isinstance(value, Mapping):
        return {safe_str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    return plain(json_default(value), depth + 1)


def is_plain_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is made of dicts, lists and plain scalars only."""
    kind = type(value)
    if kind in SCALARS:
        return kind is not float or value - value == 0
    if depth >= MAX_DEPTH:
        return False
    if kind is dict:
        return all(
            type(key) is str and is_plain_json(item, depth + 1) for key, item in value.items()
        )
    if kind in (list, tuple):
        return all(is_plain_json(item, depth + 1) for item in value)
    return False


def merge(target: dict[Any, Any], source: dict[Any, Any]) -> None:
    """Merge ``source`` into ``target``, nested dicts merged key by key."""
    for key, value in source.items():
        existing = target.get(key)
        if type(existing) is dict and type(value) is dict:
            merge(existing, value)
        else:
            target[key] = value


def put(out: dict[str, Any], key: str, parts: tuple[str, ...] | None, value: Any) -> None:
    """Add one field: ``"a.b.c": v`` (``parts`` ``("a", "b", "c")``) as ``{"a": {"b": {"c": v}}}``.

    Every dict in ``out`` belongs to the record being formatted (the formatter
    made it, or copied it from an extra while redacting), so merging into one
    never touches the caller's objects.
    """
    node = out
    if parts is None:
        last = key
    else:
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                node[part] = child = {}
            elif type(child) is not dict:
                # "a.b" after a plain "a": 1 has nowhere to go but the top level.
                out[key] = value
                return
            node = child
        last = parts[-1]
    if type(value) is dict:
        existing = node.get(last)
        if type(existing) is dict:
            merge(existing, value)
            return
    node[last] = value


def string_encoder(ensure_ascii: bool) -> Callable[[str], str]:
    """``json``'s own escaping of one string, quotes included."""
    return encode_basestring_ascii if ensure_ascii else encode_basestring


def make_encoder(default: Callable[[Any], Any], ensure_ascii: bool) -> Callable[[Any], str]:
    """A compact, one-shot JSON encoder: ``json``'s C encoder, built once.

    ``json.dumps`` builds a new encoder for every call; on CPython that costs
    about a tenth of formatting a record. Where the C encoder is missing, the
    pure-Python ``json.JSONEncoder`` with the same options does the same job.
    NaN and infinities raise (they are not JSON): such values take the slow,
    safe path through :func:`plain`.
    """
    try:
        from json.encoder import c_make_encoder  # type: ignore[attr-defined]

        if c_make_encoder is None:
            raise ImportError("no C encoder")
        c_encode = c_make_encoder(
            None,
            default,
            string_encoder(ensure_ascii),
            None,
            ":",
            ",",
            False,  # sort_keys
            False,  # skipkeys
            False,  # allow_nan
        )
        join = "".join

        def encode(value: Any) -> str:
            return join(c_encode(value, 0))

        encode({"check": [1, 0.5, "\u00e9", None, True]})
    except Exception:
        encode = python_encoder(default, ensure_ascii)
    return encode


def python_encoder(default: Callable[[Any], Any], ensure_ascii: bool) -> Callable[[Any], str]:
    """The pure-Python compact encoder (NaN refused, no check for cycles).

    Our dicts are trees (copied, depth-limited); a cycle elsewhere (a list
    holding itself) fails with RecursionError and takes the safe path too.
    """
    return json.JSONEncoder(
        separators=(",", ":"),
        ensure_ascii=ensure_ascii,
        allow_nan=False,
        check_circular=False,
        default=default,
    ).encode
