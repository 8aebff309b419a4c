"""A record's extras: which attributes count, what is redacted, how dotted keys nest.

Attributes passed with ``extra=`` (and a formatter's static fields) are added
to the line; a dotted key such as ``"http.response.status_code"`` is nested
(``{"http": {"response": {...}}}``). Values under keys that look secret
(:mod:`.redaction`) are replaced by :data:`REDACTED`, at any depth: in dicts,
and in lists of (name, value) pairs such as headers. In text values, sensitive
query parameters and URL passwords are masked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django_observability.logging import redaction
from django_observability.logging.context import ID_ATTRS
from django_observability.logging.redaction import DEFAULT_REDACT_KEYS, REDACTED, Redactor
from django_observability.logging.values import MAX_DEPTH, SCALARS, TRUNCATED, put, safe_str

__all__ = ["DEFAULT_REDACT_KEYS", "NOT_EXTRAS", "REDACTED", "Extras", "KeyInfo"]

# Attributes that are not the user's extras: everything a bare LogRecord has
# (read from a real one, so attributes added by future Pythons are covered),
# the correlation ids, the formatter's own ones, and what common integrations
# stamp on records (OpenTelemetry's logging instrumentation, uvicorn's colored
# message).
NOT_EXTRAS = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", (), None)),
        *ID_ATTRS,
        "message",
        "asctime",
        "otelTraceID",
        "otelSpanID",
        "otelTraceSampled",
        "otelServiceName",
        "color_message",
    }
)

CACHE_SIZE = 4096  # distinct extra keys whose handling we remember

# How one key of a record is handled: its name, whether its value is redacted
# and, for a dotted key, (parent names, last name). None: not an extra.
KeyInfo = tuple[str, bool, tuple[tuple[str, ...], str] | None]


class Extras:
    """The extras rules of one formatter: redaction words and skipped attributes.

    ``redact_keys`` are the redaction words (:mod:`.redaction`, with the
    project's ``OBSERVABILITY_LOG_REDACT_KEYS`` added); ``reserved`` are record
    attributes that are never extras (besides :data:`NOT_EXTRAS` and names
    starting with ``_``). Verdicts per key are remembered (bounded), and
    forgotten when the project's words change: :attr:`version` then grows.
    """

    def __init__(self, redact_keys: Iterable[str], reserved: Iterable[str]) -> None:
        self.redactor = Redactor(redact_keys)
        self._reserved = frozenset(reserved) | NOT_EXTRAS
        self.known: dict[Any, KeyInfo | None] = dict.fromkeys(self._reserved)
        #: Changes when the rules change; the templates compare it.
        self.version = -1
        self.mask_text = self.redactor.mask_text

    def refresh(self) -> int:
        """Pick up a change of the project's words; the current :attr:`version`."""
        redactor = self.redactor
        if redactor.generation == redaction.generation:
            return self.version  # nothing changed: the common case, two lookups
        redactor.refresh()
        if redactor.version != self.version:
            self.known = dict.fromkeys(self._reserved)
            self.version = redactor.version
        return self.version

    def is_sensitive(self, key: Any) -> bool:
        """Whether values under ``key`` are redacted."""
        return self.redactor.is_sensitive(key)

    def info(self, key: Any) -> KeyInfo | None:
        """(name, sensitive, (parents, last) if dotted) for an attribute; None: not an extra."""
        info = self.known.get(key, False)
        if info is not False:
            return info  # type: ignore[return-value]
        name = key if type(key) is str else safe_str(key)
        if name[:1] == "_":
            info = None
        else:
            split = name.split(".")
            # "a..b", ".a", "a.": kept as they are
            parts = (tuple(split[:-1]), split[-1]) if len(split) > 1 and "" not in split else None
            info = (name, self.is_sensitive(name), parts)
        if len(self.known) < CACHE_SIZE:
            self.known[key] = info
        return info

    def clean(self, value: Any, depth: int = 0) -> Any:
        """``value`` with secrets redacted. Dicts and mappings come back as new dicts."""
        kind = type(value)
        if kind is str:
            return self.mask_text(value) if "=" in value or "@" in value else value
        if kind in SCALARS:
            return value
        if depth >= MAX_DEPTH:
            return TRUNCATED
        if isinstance(value, Mapping):  # dicts, and request.headers: never through str()
            sensitive = self.is_sensitive
            clean = self.clean
            return {
                key: REDACTED if sensitive(key) else clean(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            items: list[Any] | None = None
            for index, item in enumerate(value):
                new = self._pair(item)
                if new is None:
                    new = self.clean(item, depth + 1)
                if new is not item:
                    if items is None:
                        items = list(value)
                    items[index] = new
            return value if items is None else items
        return value

    def _pair(self, item: Any) -> Any:
        """A (name, value) pair under a sensitive name, value redacted; else None."""
        kind = type(item)
        if (kind is tuple or kind is list) and len(item) == 2:
            name = item[0]
            if type(name) is str and self.is_sensitive(name):
                return [name, REDACTED]
        return None

    def add(self, out: dict[str, Any], sources: Iterable[Mapping[Any, Any]]) -> None:
        """Add the extras of ``sources`` (in order) to ``out``: redacted, dotted keys nested."""
        self.refresh()
        known = self.known
        clean = self.clean
        mask_text = self.mask_text
        for source in sources:
            for key, value in source.items():
                info = known.get(key, False)
                if info is False:
                    info = self.info(key)
                if info is None:
                    continue
                name, sensitive, parts = info
                if sensitive:
                    value = REDACTED
                elif type(value) is str:
                    if "=" in value or "@" in value:
                        value = mask_text(value)
                elif type(value) not in SCALARS:
                    value = clean(value, 0)
                if parts is None:
                    if type(value) is dict:
                        put(out, name, None, value)
                    else:
                        out[name] = value
                    continue
                # The common case inline: a dotted key, a scalar, no conflict.
                node = out
                for part in parts[0]:
                    child = node.get(part)
                    if child is None:
                        node[part] = node = {}
                    elif type(child) is dict:
                        node = child
                    else:
                        break
                else:
                    if type(value) is not dict:
                        node[parts[1]] = value
                        continue
                put(out, name, (*parts[0], parts[1]), value)
