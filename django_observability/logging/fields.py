"""The fields every line has, defined once in :data:`FIXED_FIELDS`, and the ids' fields.

The table drives everything that writes or recognises the fixed fields: the
dict the general path merges extras into (:meth:`FixedFields.as_dict`), the
text the fast paths start each line with (:meth:`FixedFields.head`), the
record attributes a call site's cached text depends on, and the names an
extra must not take for the fast paths to apply (:data:`FIXED_NAMES`).
Adding a field is one entry in the table.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from django_observability.logging import service
from django_observability.logging.values import json_default, string_encoder

__all__ = [
    "FIXED_FIELDS",
    "FIXED_NAMES",
    "ID_PATHS",
    "LEVEL",
    "MESSAGE",
    "SERVICE",
    "TIMESTAMP",
    "FixedFields",
    "Hole",
    "Number",
    "hole_encoder",
    "put_ids",
]


class Number(str):
    """In :data:`FIXED_FIELDS`: the record attribute of this name, a number."""

    __slots__ = ()


class _Computed:
    """In :data:`FIXED_FIELDS`: a value worked out by the formatter, not read as is."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


TIMESTAMP = _Computed("TIMESTAMP")  # the record's time, ISO 8601 UTC, milliseconds
LEVEL = _Computed("LEVEL")  # the level's name in lowercase
MESSAGE = _Computed("MESSAGE")  # the message with its arguments
SERVICE = _Computed("SERVICE")  # service.current()

# Every line starts with these, in this order, nested as ECS's own loggers
# write them. A leaf is a record attribute's name (text), a Number (a record
# attribute that is a number), or one of the computed values above.
FIXED_FIELDS: dict[str, Any] = {
    "@timestamp": TIMESTAMP,
    "log.level": LEVEL,
    "message": MESSAGE,
    "log": {
        "logger": "name",
        "origin": {"file": {"name": "filename", "line": Number("lineno")}, "function": "funcName"},
    },
    "service": SERVICE,
    "process": {"pid": Number("process"), "thread": {"name": "threadName"}},
}

# Top-level names of the fixed fields: an extra under one of them is merged
# into the fixed field (the general path), never written twice.
FIXED_NAMES = frozenset(FIXED_FIELDS)

# Where put_ids writes the request, trace and span ids, and the running task's
# id and name (in record_ids' order).
ID_PATHS = (
    ("http", "request", "id"),
    ("trace", "id"),
    ("span", "id"),
    ("task", "id"),
    ("task", "name"),
)


def put_ids(
    out: dict[str, Any],
    request_id: Any,
    trace_id: Any,
    span_id: Any,
    task_id: Any = None,
    task_name: Any = None,
) -> None:
    """Write the correlation ids that are set (trace, span, the request's, then the task's)."""
    if trace_id:
        out["trace"] = {"id": trace_id}
    if span_id:
        out["span"] = {"id": span_id}
    if request_id:
        out["http"] = {"request": {"id": request_id}}
    if task_id or task_name:
        task = out["task"] = {}
        if task_id:
            task["id"] = task_id
        if task_name:
            task["name"] = task_name


def _leaves(spec: dict[str, Any]) -> list[Any]:
    found: list[Any] = []
    for leaf in spec.values():
        if type(leaf) is dict:
            found.extend(_leaves(leaf))
        else:
            found.append(leaf)
    return found


_LEAVES = _leaves(FIXED_FIELDS)
# What is the same for every record of one call site (logger, level, file,
# line, function) in one process and thread: those records share one text.
_SITE_ATTRS = ("levelname", *(str(leaf) for leaf in _LEAVES if isinstance(leaf, str)))
_NUMBER_ATTRS = frozenset(str(leaf) for leaf in _LEAVES if type(leaf) is Number)
# Each line fills these two holes of its call site's text, in this order.
if [leaf for leaf in _LEAVES if leaf is TIMESTAMP or leaf is MESSAGE] != [TIMESTAMP, MESSAGE]:
    raise RuntimeError("FIXED_FIELDS must hold TIMESTAMP, then MESSAGE, once each")


def _make_site_key() -> Any:
    """``record.__dict__`` -> the key of its call site's text: the values, and numbers' types.

    Numbers need their type in the key (1, 1.0 and True are one dict key but
    three texts). Written out as one expression from the table, as
    ``collections.namedtuple`` does, because it runs for every line: a loop
    or ``map`` over the attributes costs twice as much.
    """
    items = []
    for name in _SITE_ATTRS:
        if not name.isidentifier():
            raise RuntimeError(f"not an attribute name: {name!r}")
        items.append(f"s[{name!r}]")
        if name in _NUMBER_ATTRS:
            items.append(f"type(s[{name!r}])")
    return eval(f"lambda s: ({', '.join(items)})", {"type": type})  # noqa: S307


_site_key = _make_site_key()

_current_service = service.current  # bound once: it runs for every line

CACHE_SIZE = 4096  # call sites whose text is kept


class Hole:
    """Stands in for a value while a template's text is worked out."""

    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number


# A hole as a template's JSON text has it (control characters are always
# escaped), with a random mark so that no logged text can pass for one.
HOLE_MARK = secrets.token_hex(8)
HOLE_PATTERN = re.compile(rf'"\\u0000{HOLE_MARK}:(\d+)\\u0000"')


def _hole_default(value: Any) -> Any:
    if type(value) is Hole:
        return f"\x00{HOLE_MARK}:{value.number}\x00"
    return json_default(value)


def hole_encoder(ensure_ascii: bool) -> Any:
    """A compact encoder that writes each :class:`Hole` as a mark :data:`HOLE_PATTERN` finds."""
    return json.JSONEncoder(
        separators=(",", ":"),
        ensure_ascii=ensure_ascii,
        allow_nan=False,  # NaN is not JSON: no template, the general path writes it as text
        default=_hole_default,
    ).encode


def _build(spec: dict[str, Any], record: logging.LogRecord, computed: dict[Any, Any]) -> Any:
    out: dict[str, Any] = {}
    for name, leaf in spec.items():
        if type(leaf) is dict:
            out[name] = _build(leaf, record, computed)
        elif type(leaf) is _Computed:
            out[name] = computed[leaf]
        else:
            out[name] = getattr(record, leaf)
    return out


class FixedFields:
    """Writes one formatter's fixed fields, as a dict or as the start of a line.

    Keeps the text of the current second and, per call site, the text of
    the fields that do not change from one record to the next (bounded).
    """

    def __init__(self, ensure_ascii: bool) -> None:
        self._string = string_encoder(ensure_ascii)
        self._encode_holes = hole_encoder(ensure_ascii)
        self._second = (0, "")  # (whole seconds, their ISO 8601 text)
        self._sites: dict[Any, tuple[str, str, str, dict[str, str]]] = {}

    def timestamp(self, record: logging.LogRecord) -> str:
        """The record's time as ``2025-01-01T12:00:00.123Z`` (UTC)."""
        seconds = int(record.created)
        cached = self._second
        if cached[0] != seconds or not cached[1]:
            cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
            self._second = cached
        return f"{cached[1]}.{int(record.msecs):03d}Z"

    def as_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        """The fixed fields of ``record`` (``record.message`` set) as a new dict."""
        return _build(FIXED_FIELDS, record, self._computed(record, record.message))

    def _computed(self, record: logging.LogRecord, message: Any) -> dict[Any, Any]:
        return {
            TIMESTAMP: self.timestamp(record),
            LEVEL: record.levelname.lower(),
            MESSAGE: message,
            SERVICE: dict(service.current()),
        }

    def head(self, record: logging.LogRecord) -> str:
        """The fixed fields as JSON text without the closing brace (``record.message`` set).

        Equal to :meth:`as_dict` encoded. Everything but the time and the
        message is the same for every record of one call site, so that text
        is worked out once per call site and reused. Raises for a record
        whose fixed fields have unusual types (the general path copes).
        """
        state = record.__dict__
        current = _current_service()
        try:
            key = _site_key(state)
            site = self._sites.get(key)
        except (KeyError, TypeError):  # an odd record: a field missing or unhashable
            key = site = None
        if site is None or site[3] is not current:
            site = self._site(record, current)
            if key is not None and len(self._sites) < CACHE_SIZE:
                self._sites[key] = site
        before, between, after, _ = site
        return f'{before}"{self.timestamp(record)}"{between}{self._string(record.message)}{after}'

    def _site(
        self, record: logging.LogRecord, current: dict[str, str]
    ) -> tuple[str, str, str, dict[str, str]]:
        """(text before the time, between time and message, after the message, service)."""
        computed = {
            TIMESTAMP: Hole(0),
            LEVEL: record.levelname.lower(),
            MESSAGE: Hole(1),
            SERVICE: current,
        }
        for name in _SITE_ATTRS:
            if name not in _NUMBER_ATTRS and type(getattr(record, name)) is not str:
                # Only text and numbers are keyed safely; the general path writes the rest.
                raise TypeError(f"record.{name} is not text")
        text = self._encode_holes(_build(FIXED_FIELDS, record, computed))
        before, first, between, second, after = HOLE_PATTERN.split(text)
        if (first, second) != ("0", "1"):
            raise ValueError("a fixed field passes for a hole")
        return before, between, after[:-1], current
