"""``JsonFormatter``: one JSON object per line, with ECS field names.

A line is the fixed fields (:mod:`.fields`), the correlation ids
(:mod:`.context`), the error, and the extras (:mod:`.extras`). Most lines are
written from their call site's template (:mod:`.template`); the rest take the
general path here: a dict of the fields, then one encoding.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from django_observability.formats import exception_name
from django_observability.logging.context import record_ids
from django_observability.logging.extras import Extras
from django_observability.logging.fields import FIXED_NAMES, FixedFields, put_ids
from django_observability.logging.redaction import DEFAULT_REDACT_KEYS
from django_observability.logging.template import Templates
from django_observability.logging.values import (
    json_default,
    make_encoder,
    plain,
    put,
    safe_str,
)

__all__ = ["JsonFormatter"]


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line, with ECS field names (see :mod:`django_observability.logging`).

    Use it from a ``LOGGING`` dict as
    ``{"()": "django_observability.logging.JsonFormatter"}``; keyword arguments
    go alongside, e.g. ``"redact_keys": ["ssn", "iban"]``.

    Arguments, all optional and keyword-only:

    ``redact_keys``
        More key names to redact, added to :attr:`redact_keys` (the class
        attribute, which a subclass may replace to change the defaults) and
        to the project's ``OBSERVABILITY_LOG_REDACT_KEYS``. How names match:
        :mod:`.redaction`.
    ``static_fields``
        Fields added to every record (dotted keys nested, like extras).
    ``templates``
        ``False`` writes every line through the general path instead of the
        call sites' templates: the same text, slower (to compare the two).
    ``prefix``, ``reserved_attrs``, ``json_ensure_ascii``
        As in python-json-logger. Its other arguments (``fmt``, ``rename_fields``,
        ``timestamp``, ``defaults``, ``json_indent``, ``json_default``,
        ``json_encoder``, ``json_serializer``) are accepted and ignored: the
        fields are fixed by ECS, and the output is always one compact line.

    Formatting never raises: a value ``json`` cannot encode is written as text,
    and if a record cannot be formatted at all a minimal line is written with
    its message and an ``error`` saying why.

    Its parts, one per module: ``extras`` (:class:`.extras.Extras`: what is an
    extra, what is redacted), ``fixed`` (:class:`.fields.FixedFields`: the
    fields every line has) and ``templates`` (:class:`.template.Templates`:
    the fast path, ``None`` when turned off).
    """

    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS

    def __init__(
        self,
        *args: Any,
        redact_keys: Iterable[str] = (),
        templates: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("json_indent", None)  # one object per line, always
        super().__init__(*args, **kwargs)
        self.redact_keys = (*type(self).redact_keys, *redact_keys)
        ensure_ascii = self.json_ensure_ascii
        self.extras = Extras(self.redact_keys, self.reserved_attrs)
        self.fixed = FixedFields(ensure_ascii)
        #: The call sites' templates (the fast path), or ``None`` when turned off.
        self.templates = (
            Templates(self.extras, self.fixed.head, ensure_ascii) if templates else None
        )
        self._encode = make_encoder(json_default, ensure_ascii)
        self._encode_plain = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=ensure_ascii, default=safe_str
        ).encode

    def is_sensitive(self, key: Any) -> bool:
        """Whether values under ``key`` are redacted."""
        return self.extras.is_sensitive(key)

    def format(self, record: logging.LogRecord) -> str:
        try:
            text = None
            templates = self.templates
            if templates is not None:
                try:
                    text = templates.line(record, self.static_fields)
                except Exception:  # an unusual record: the general path copes, or says why
                    text = None
            if text is None:
                text = self._general(record)
            return self.prefix + text if self.prefix else text
        except Exception as exc:
            return self._fallback(record, exc)

    # The general path ------------------------------------------------------

    def _general(self, record: logging.LogRecord) -> str:
        fields = self._fields(record)
        try:
            if not FIXED_NAMES.isdisjoint(fields):
                raise LookupError("an extra shares a name with a fixed field")
            # The fixed fields as text (their shape never changes), the rest encoded.
            head = self.fixed.head(record)
            return f"{head},{self._encode(fields)[1:]}" if fields else head + "}"
        except Exception:
            data = self.fixed.as_dict(record)
            for key, value in fields.items():
                put(data, key, None, value)
            try:
                return self._encode(data)
            except Exception:
                return self._encode_plain(plain(data))

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """Everything but the fixed fields: ids, error and extras, redacted and nested."""
        msg = record.msg
        if isinstance(msg, dict):  # python-json-logger's logger.info({...}) form
            record.message = safe_str(msg["message"]) if "message" in msg else ""
        else:
            record.message = record.getMessage()
        out: dict[str, Any] = {}
        put_ids(out, *record_ids(record))
        if record.exc_info or record.exc_text or record.stack_info:
            error = self._error(record)
            if error:
                out["error"] = error
        sources: list[Any] = [record.__dict__]
        if isinstance(msg, dict):
            sources.insert(0, msg)
        if self.static_fields:
            sources.insert(0, self.static_fields)
        self.extras.add(out, sources)
        return out

    def _error(self, record: logging.LogRecord) -> dict[str, Any]:
        exc_info = record.exc_info
        error: dict[str, Any] = {}
        if exc_info and exc_info[0] is not None:
            error["type"] = exception_name(exc_info[0])
            error["message"] = safe_str(exc_info[1]) if exc_info[1] is not None else ""
            if not record.exc_text:
                # Cached on the record, as logging.Formatter does, for other handlers.
                record.exc_text = logging.Formatter.formatException(self, exc_info)
        trace = record.exc_text or ""
        if record.stack_info:
            stack = logging.Formatter.formatStack(self, record.stack_info)
            trace = f"{trace}\n{stack}" if trace else stack
        if trace:
            error["stack_trace"] = trace
        return error

    def _fallback(self, record: Any, problem: Exception) -> str:
        """A line for a record that could not be formatted: message and the reason."""
        try:
            message = record.getMessage()
        except Exception:
            message = safe_str(getattr(record, "msg", ""))
        try:
            timestamp = self.fixed.timestamp(record)
        except Exception:
            timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        data = {
            "@timestamp": timestamp,
            "log.level": safe_str(getattr(record, "levelname", "error")).lower(),
            "message": message,
            "log": {"logger": safe_str(getattr(record, "name", ""))},
            "error": {
                "type": exception_name(problem),
                "message": f"log record could not be formatted: {safe_str(problem)}",
            },
        }
        try:
            return self._encode_plain(plain(data))
        except Exception:
            return '{"message":"log record could not be formatted","log.level":"error"}'
