"""The fast path: a line written from its call site's template.

Records made at one call site have the same attributes every time, so how
their extras nest is the same every time: the layout is worked out once per
set of attribute names (by the general path's own rules, on stand-ins) and
kept as text with holes for the values. Each value is then written on its
own (``json``'s string escaping, ``repr`` of numbers), which skips the walk
over the record and the encoding of nested dicts.

:meth:`Templates.line` is the one entry point; it answers ``None`` for any
record a template does not fit, which the general path then formats.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django_observability.logging.context import record_ids
from django_observability.logging.extras import Extras
from django_observability.logging.fields import (
    FIXED_NAMES,
    HOLE_PATTERN,
    ID_PATHS,
    Hole,
    hole_encoder,
    put_ids,
)
from django_observability.logging.values import is_plain_json, string_encoder

__all__ = ["CACHE_SIZE", "Templates"]

CACHE_SIZE = 256  # distinct shapes of record (sets of attribute names) with a template

_MISSING: Any = object()

# A template: texts before each hole, what fills each hole, the closing text,
# and the extras that other dotted extras nest under.
_Template = tuple[tuple[str, ...], tuple[tuple[bool, Any], ...], str, frozenset[Any]]


class Templates:
    """One formatter's templates, made on first use and kept (at most :data:`CACHE_SIZE`).

    ``extras`` are the formatter's rules for extras, ``head`` writes the fixed
    fields of a record as text without the closing brace, and ``ensure_ascii``
    is the formatter's ``json_ensure_ascii``.
    """

    def __init__(
        self, extras: Extras, head: Callable[[logging.LogRecord], str], ensure_ascii: bool
    ) -> None:
        self._extras = extras
        self._head = head
        self._string = string_encoder(ensure_ascii)
        self._encode_holes = hole_encoder(ensure_ascii)
        self._templates: dict[Any, _Template | None] = {}
        # Templates have the static fields written in: they are made again when
        # static_fields changes, and not made at all for values that are not
        # plain JSON (a lazy object's text may change from one record to the next).
        self._static_seen: Any = _MISSING
        self._version = extras.version

    def __len__(self) -> int:
        """How many shapes of record have been seen (with or without a template)."""
        return len(self._templates)

    def line(self, record: logging.LogRecord, static_fields: Mapping[str, Any]) -> str | None:
        """The record's line from its template, or ``None`` when no template fits.

        ``None`` for an error, a dict message, a value that is not a plain str,
        int, float, bool or ``None``, static fields that are not plain JSON, or
        a record of a new shape once :data:`CACHE_SIZE` templates are kept.
        Sets ``record.message``, as formatting does. May raise on a record the
        general path has to look at.
        """
        msg = record.msg
        if isinstance(msg, dict) or record.exc_info or record.exc_text or record.stack_info:
            return None
        version = self._extras.refresh()
        if version != self._version:  # the redaction words changed: decisions too
            self._templates.clear()
            self._version = version
        if static_fields != self._static_seen:
            if not is_plain_json(static_fields):
                return None
            self._templates.clear()
            self._static_seen = copy.deepcopy(static_fields)
        state = record.__dict__
        record.message = record.getMessage()
        ids = record_ids(record)
        try:
            key = (tuple(state), not ids[0], not ids[1], not ids[2])
            template = self._templates.get(key, _MISSING)
        except TypeError:  # an unhashable attribute name
            return None
        if template is _MISSING:
            if len(self._templates) >= CACHE_SIZE:
                return None  # more shapes of record than templates kept: the general path
            template = self._make(state, ids, static_fields)
            self._templates[key] = template
        if template is None:
            return None
        literals, slots, tail, parents = template
        string = self._string
        mask_text = self._extras.mask_text
        parts = [self._head(record)]
        append = parts.append
        for literal, (is_id, ref) in zip(literals, slots, strict=True):
            value = ids[ref] if is_id else state[ref]
            kind = type(value)
            if kind is str:
                if "=" in value or "@" in value:  # a URL's secrets, masked (ids have neither)
                    value = mask_text(value)
                text = string(value)
            elif kind is int:
                text = int.__repr__(value)
            elif value is None:
                if ref in parents and not is_id:
                    return None  # a None parent of a dotted extra is nested over: general path
                text = "null"
            elif kind is bool:
                text = "true" if value else "false"
            elif kind is float and value - value == 0:
                text = float.__repr__(value)
            else:
                return None  # a container or an object: the general path
            append(literal)
            append(text)
        append(tail)
        return "".join(parts)

    def _make(
        self, state: dict[str, Any], ids: tuple[Any, Any, Any], static_fields: Mapping[str, Any]
    ) -> _Template | None:
        """(texts before each hole, what fills each hole, text after the last, parents).

        A hole is filled from ``(True, n)``: the n-th id, or ``(False, key)``:
        the record's attribute ``key``. ``parents`` are the keys of extras that
        other dotted keys nest under: when one is ``None`` the general path
        nests differently, so it formats that record.
        """
        extras = self._extras
        slots: list[tuple[bool, Any]] = []
        paths: dict[Any, tuple[Any, ...]] = {}

        def stand_in(is_id: bool, ref: Any) -> Hole:
            slots.append((is_id, ref))
            return Hole(len(slots) - 1)

        out: dict[str, Any] = {}
        put_ids(out, *(stand_in(True, n) if value else None for n, value in enumerate(ids)))
        every = [path for path, value in zip(ID_PATHS, ids, strict=True) if value]
        holes = {}
        for key in state:
            info = extras.info(key)
            if info is not None and not info[1]:  # an extra, not redacted
                holes[key] = stand_in(False, key)
                paths[key] = (info[0],) if info[2] is None else (*info[2][0], info[2][1])
        every.extend(paths.values())
        for key in static_fields or ():
            info = extras.info(key)
            if info is not None:
                every.append((info[0],) if info[2] is None else (*info[2][0], info[2][1]))
        parents = frozenset(
            key
            for key, path in paths.items()
            if any(len(other) > len(path) and other[: len(path)] == path for other in every)
        )
        sources: list[Any] = [{**state, **holes}]
        if static_fields:
            sources.insert(0, static_fields)
        extras.add(out, sources)
        if not FIXED_NAMES.isdisjoint(out):
            return None
        if not out:
            return (), (), "}", parents
        try:
            text = self._encode_holes(out)
        except Exception:
            return None
        pieces = HOLE_PATTERN.split(text)
        # pieces: text, hole number, text, hole number, ..., text
        # A hole can be missing: a later extra replaced its parent ("a.b", then "a").
        order = [int(number) for number in pieces[1::2]]
        if len(set(order)) != len(order):
            return None  # a static value that passes for a hole: no template
        literals = pieces[0::2]
        literals[0] = "," + literals[0][1:]
        return tuple(literals[:-1]), tuple(slots[n] for n in order), literals[-1], parents
