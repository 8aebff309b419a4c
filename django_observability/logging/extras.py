"""A record's extras: which attributes count, what is redacted, how dotted keys nest.

Attributes passed with ``extra=`` (and a formatter's static fields) are added
to the line; a dotted key such as ``"http.response.status_code"`` is nested
(``{"http": {"response": {...}}}``). Values under keys that look secret are
replaced by :data:`REDACTED`, at any depth.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django_observability.logging.context import ID_ATTRS
from django_observability.logging.values import MAX_DEPTH, SCALARS, TRUNCATED, put, safe_str

__all__ = ["DEFAULT_REDACT_KEYS", "NOT_EXTRAS", "REDACTED", "Extras", "KeyInfo"]

REDACTED = "[REDACTED]"

# Key fragments whose values never reach a log line (matched case-insensitively,
# anywhere in the key).
DEFAULT_REDACT_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "session",
    "api_key",
    "apikey",
    "api-key",
    "csrf",
    "credential",
)

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
    """The extras rules of one formatter: redaction fragments and skipped attributes.

    ``redact_keys`` are the key fragments to redact; ``reserved`` are record
    attributes that are never extras (besides :data:`NOT_EXTRAS` and names
    starting with ``_``). Verdicts per key are remembered (bounded).
    """

    def __init__(self, redact_keys: Iterable[str], reserved: Iterable[str]) -> None:
        fragments = sorted({fragment.lower() for fragment in redact_keys if fragment})
        self._pattern = (
            re.compile("|".join(map(re.escape, fragments)), re.IGNORECASE) if fragments else None
        )
        self._verdicts: dict[Any, bool] = {}
        # Per key seen: where it goes, or None to skip it (bounded cache).
        self.known: dict[Any, KeyInfo | None] = dict.fromkeys(frozenset(reserved) | NOT_EXTRAS)

    def is_sensitive(self, key: Any) -> bool:
        """Whether values under ``key`` are redacted."""
        verdict = self._verdicts.get(key)
        if verdict is None:
            pattern = self._pattern
            verdict = pattern is not None and pattern.search(safe_str(key)) is not None
            if len(self._verdicts) < CACHE_SIZE:
                self._verdicts[key] = verdict
        return verdict

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
        if type(value) in SCALARS:
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
                new = self.clean(item, depth + 1)
                if new is not item:
                    if items is None:
                        items = list(value)
                    items[index] = new
            return value if items is None else items
        return value

    def add(self, out: dict[str, Any], sources: Iterable[Mapping[Any, Any]]) -> None:
        """Add the extras of ``sources`` (in order) to ``out``: redacted, dotted keys nested."""
        known = self.known
        clean = self.clean
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
