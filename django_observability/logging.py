"""Structured JSON log lines with ECS field names, and a ready-made ``LOGGING`` dict.

The quickest way in, in ``settings.py``::

    from django_observability.logging import logging_config

    LOGGING = logging_config()  # JSON lines on stdout, root at INFO, access log on

Or use the pieces in a ``LOGGING`` dict of your own::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "django_observability.logging.JsonFormatter"}},
        "filters": {"context": {"()": "django_observability.logging.ContextFilter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["context"],  # ids stamped when the record is made
            },
        },
        "root": {"handlers": ["console"], "level": "INFO"},
    }

Each record becomes one line holding one JSON object, nested the way Elastic's
own ECS loggers write it::

    {"@timestamp": "2025-01-01T12:00:00.123Z", "log.level": "info", "message": "...",
     "log": {"logger": "...", "origin": {"file": {"name": "...", "line": 1}, "function": "..."}},
     "service": {"name": "...", "environment": "..."},
     "process": {"pid": 1, "thread": {"name": "MainThread"}},
     "trace": {"id": "..."}, "span": {"id": "..."}, "http": {"request": {"id": "..."}},
     "error": {"type": "...", "message": "...", "stack_trace": "..."}}

Attributes passed with ``extra=`` are added; a dotted key such as
``"http.response.status_code"`` is nested (``{"http": {"response": {...}}}``).
Values under keys that look secret (password, token, cookie, session, ...) are
replaced by ``"[REDACTED]"``, at any depth.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import IO, Any

from django.conf import settings
from django.core.signals import setting_changed
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from django_observability.conf import _otel_resource_attribute, conf, env_service_name
from django_observability.request_id import _current as _current_request_id

try:
    from opentelemetry.trace import get_current_span as _get_current_span
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    _get_current_span = None

__all__ = [
    "REDACTED",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "logging_config",
]

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

# Record attributes that carry the correlation ids (set by ContextFilter, or
# passed explicitly with extra=). They become trace.id, span.id, http.request.id.
_ID_ATTRS = ("request_id", "trace_id", "span_id")

# Attributes that are not the user's extras: everything a bare LogRecord has
# (read from a real one, so attributes added by future Pythons are covered),
# the formatter's own ones, and what common integrations stamp on records
# (OpenTelemetry's logging instrumentation, uvicorn's colored message).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_NOT_EXTRAS = frozenset(
    {
        *_RECORD_ATTRS,
        *_ID_ATTRS,
        "message",
        "asctime",
        "otelTraceID",
        "otelSpanID",
        "otelTraceSampled",
        "otelServiceName",
        "color_message",
    }
)

_MAX_DEPTH = 16  # nesting levels of an extra value we walk; deeper is cut
_CACHE_SIZE = 4096  # distinct extra keys whose handling we remember
_PLAN_CACHE_SIZE = 256  # distinct shapes of record (sets of attribute names) with a template
_MISSING: Any = object()


# --------------------------------------------------------------------------
# Correlation ids
# --------------------------------------------------------------------------


def _otel_ids() -> tuple[str | None, str | None]:
    """Trace and span ids of the current OpenTelemetry span, as lowercase hex."""
    if _get_current_span is None:
        return None, None
    context = _get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _request_ids(record: logging.LogRecord) -> tuple[Any, Any, Any]:
    """(request id, trace id, span id) of the request a record names in ``extra``.

    Django logs a 4xx or 5xx response (``django.request``) with the request in
    ``extra={"request": ...}`` after the middleware has returned, when the
    request's context is gone: the ids then come from the request itself.
    """
    request = record.__dict__.get("request")
    if request is None:
        return None, None, None
    state = getattr(request, "__dict__", None)
    if not isinstance(state, dict):
        return None, None, None
    request_id = state.get("request_id")
    if type(request_id) is not str:
        request_id = None
    trace_id = span_id = None
    span_ids = getattr(state.get("_observability"), "span_ids", None)  # the middleware's
    try:
        ids = span_ids() if callable(span_ids) else None
    except Exception:
        ids = None
    if type(ids) is tuple and len(ids) == 3:
        trace_id, span_id = ids[0], ids[1]
    return request_id, trace_id, span_id


def _record_ids(record: logging.LogRecord) -> tuple[Any, Any, Any]:
    """(request id, trace id, span id): stamped on the record, else from the context."""
    state = record.__dict__
    request_id = state.get("request_id", _MISSING)
    if request_id is _MISSING:
        request_id = _current_request_id.get()
    trace_id = state.get("trace_id", _MISSING)
    span_id = state.get("span_id", _MISSING)
    if trace_id is _MISSING or span_id is _MISSING:
        current_trace, current_span = _otel_ids()
        if trace_id is _MISSING:
            trace_id = current_trace
        if span_id is _MISSING:
            span_id = current_span
    if request_id is None and "request" in state:
        request_id, request_trace, request_span = _request_ids(record)
        if trace_id is None and span_id is None:
            trace_id, span_id = request_trace, request_span
    return request_id, trace_id, span_id


class ContextFilter(logging.Filter):
    """Stamp ``request_id``, ``trace_id`` and ``span_id`` on each record at log time.

    Attach it to the handler (or logger) that first sees the record. Formatting
    that happens later or elsewhere (a ``QueueHandler`` and its listener thread,
    an async handler) then still reports the request and span that logged it.
    Values passed explicitly with ``extra=`` are kept. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            state = record.__dict__
            if "request_id" not in state:
                state["request_id"] = _current_request_id.get()
            if "trace_id" not in state or "span_id" not in state:
                trace_id, span_id = _otel_ids()
                state.setdefault("trace_id", trace_id)
                state.setdefault("span_id", span_id)
            if state["request_id"] is None and "request" in state:
                # Logged about a request after its context ended (django.request).
                request_id, trace_id, span_id = _request_ids(record)
                state["request_id"] = request_id
                if state["trace_id"] is None and state["span_id"] is None:
                    state["trace_id"], state["span_id"] = trace_id, span_id
        except Exception:  # noqa: S110 - a filter must never stop a record
            pass
        return True


# --------------------------------------------------------------------------
# service.* from the settings, cached until an OBSERVABILITY_ setting changes
# --------------------------------------------------------------------------

_service_cache: dict[str, str] | None = None


def _read_service() -> dict[str, str]:
    if settings.configured:
        name, environment = conf.SERVICE_NAME, conf.ENVIRONMENT
    else:
        # Logging before Django has loaded its settings (a server's own start-up
        # lines): don't import the settings module from inside a log call.
        module = os.environ.get("DJANGO_SETTINGS_MODULE") or "django"
        name = env_service_name() or module.split(".", 1)[0]
        environment = (
            _otel_resource_attribute("deployment.environment.name")
            or _otel_resource_attribute("deployment.environment")
            or ""
        )
    service = {"name": name}
    if environment:
        service["environment"] = environment
    return service


def _service() -> dict[str, str]:
    global _service_cache
    cached = _service_cache
    if cached is None:
        try:
            cached = _read_service()
        except Exception:  # broken settings must not cost us the log line
            return {"name": "django"}
        if settings.configured:
            _service_cache = cached
    return cached


def _clear_service_cache(*, setting: str, **kwargs: Any) -> None:
    global _service_cache
    if setting.startswith("OBSERVABILITY_"):
        _service_cache = None


setting_changed.connect(_clear_service_cache, dispatch_uid="django_observability.logging")


# --------------------------------------------------------------------------
# JSON values
# --------------------------------------------------------------------------


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _json_default(value: Any) -> Any:
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
    return _safe_str(value)


def _plain(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that ``json`` is sure to encode (second attempt only)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if value - value == 0 else str(value)  # NaN and infinities as text
    if depth >= _MAX_DEPTH:
        return "[TRUNCATED]"
    if isinstance(value, Mapping):
        return {_safe_str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    return _plain(_json_default(value), depth + 1)


def _type_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    if not module or module == "builtins":
        return name
    return f"{module}.{name}"


def _merge(target: dict[Any, Any], source: dict[Any, Any]) -> None:
    """Merge ``source`` into ``target``, nested dicts merged key by key."""
    for key, value in source.items():
        existing = target.get(key)
        if type(existing) is dict and type(value) is dict:
            _merge(existing, value)
        else:
            target[key] = value


def _put(out: dict[str, Any], key: str, parts: tuple[str, ...] | None, value: Any) -> None:
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
            _merge(existing, value)
            return
    node[last] = value


_SCALARS = frozenset({str, int, float, bool, type(None)})
# Top-level names JsonFormatter writes on every record.
_FIXED_NAMES = frozenset({"@timestamp", "log.level", "message", "log", "service", "process"})


def _make_encoder(default: Any, ensure_ascii: bool) -> Any:
    """A compact, one-shot JSON encoder: ``json``'s C encoder, built once.

    ``json.dumps`` builds a new encoder for every call; on CPython that costs
    about a tenth of formatting a record. Where the C encoder is missing, the
    pure-Python ``json.JSONEncoder`` with the same options does the same job.
    """
    options = {
        "separators": (",", ":"),
        "ensure_ascii": ensure_ascii,
        "allow_nan": False,  # NaN is not JSON: such values take the slow, safe path
        # Our dicts are trees (copied, depth-limited); a cycle elsewhere (a list
        # holding itself) fails with RecursionError and takes the safe path too.
        "check_circular": False,
        "default": default,
    }
    try:
        from json.encoder import c_make_encoder  # type: ignore[attr-defined]

        if c_make_encoder is None:
            raise ImportError("no C encoder")
        c_encode = c_make_encoder(
            None,
            default,
            encode_basestring_ascii if ensure_ascii else encode_basestring,
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
        encode = json.JSONEncoder(**options).encode
    return encode


# Where _put_ids writes the request, trace and span ids (in _record_ids' order).
_ID_PATHS = (("http", "request", "id"), ("trace", "id"), ("span", "id"))

# A line's template: texts around the holes, what fills each hole, the closing
# text, and the extras that other dotted extras nest under.
_Plan = tuple[tuple[str, ...], tuple[tuple[bool, Any], ...], str, frozenset[Any]]


def _plain_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is made of dicts, lists and plain scalars only."""
    kind = type(value)
    if kind in _SCALARS:
        return kind is not float or value - value == 0
    if depth >= _MAX_DEPTH:
        return False
    if kind is dict:
        return all(type(key) is str and _plain_json(item, depth + 1) for key, item in value.items())
    if kind in (list, tuple):
        return all(_plain_json(item, depth + 1) for item in value)
    return False


def _put_ids(out: dict[str, Any], request_id: Any, trace_id: Any, span_id: Any) -> None:
    if trace_id:
        out["trace"] = {"id": trace_id}
    if span_id:
        out["span"] = {"id": span_id}
    if request_id:
        out["http"] = {"request": {"id": request_id}}


class _Hole:
    """Stands in for a value while a line's template is worked out."""

    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number


# A hole as a template's JSON text has it (control characters are always
# escaped), with a random mark so that no logged text can pass for one.
_HOLE_MARK = secrets.token_hex(8)
_HOLE_PATTERN = re.compile(rf'"\\u0000{_HOLE_MARK}:(\d+)\\u0000"')


def _hole_default(value: Any) -> Any:
    if type(value) is _Hole:
        return f"\x00{_HOLE_MARK}:{value.number}\x00"
    return _json_default(value)


# --------------------------------------------------------------------------
# The formatters
# --------------------------------------------------------------------------

# How JsonFormatter handles one key of the record: its name, whether its value
# is redacted and, for a dotted key, (parent names, last name). None: not an extra.
_KeyInfo = tuple[str, bool, tuple[tuple[str, ...], str] | None]
_SKIP = None


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line, with ECS field names (see the module docstring).

    Use it from a ``LOGGING`` dict as
    ``{"()": "django_observability.logging.JsonFormatter"}``; keyword arguments
    go alongside, e.g. ``"redact_keys": ["ssn", "iban"]``.

    Arguments, all optional and keyword-only:

    ``redact_keys``
        More key fragments to redact, added to :attr:`redact_keys` (the class
        attribute, which a subclass may replace to change the defaults).
    ``static_fields``
        Fields added to every record (dotted keys nested, like extras).
    ``prefix``, ``reserved_attrs``, ``json_ensure_ascii``
        As in python-json-logger. Its other arguments (``fmt``, ``rename_fields``,
        ``timestamp``, ``defaults``, ``json_indent``, ``json_default``,
        ``json_encoder``, ``json_serializer``) are accepted and ignored: the
        fields are fixed by ECS, and the output is always one compact line.

    Formatting never raises: a value ``json`` cannot encode is written as text,
    and if a record cannot be formatted at all a minimal line is written with
    its message and an ``error`` saying why.
    """

    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS

    def __init__(self, *args: Any, redact_keys: Iterable[str] = (), **kwargs: Any) -> None:
        kwargs.pop("json_indent", None)  # one object per line, always
        super().__init__(*args, **kwargs)
        self.redact_keys = (*type(self).redact_keys, *redact_keys)
        fragments = sorted({fragment.lower() for fragment in self.redact_keys if fragment})
        self._redact_pattern = (
            re.compile("|".join(map(re.escape, fragments)), re.IGNORECASE) if fragments else None
        )
        # Per key seen: redaction verdict and where the key goes (bounded cache).
        self._verdicts: dict[Any, bool] = {}
        self._keys: dict[Any, _KeyInfo | None] = dict.fromkeys(
            frozenset(self.reserved_attrs) | _NOT_EXTRAS, _SKIP
        )
        self._second = (0, "")  # (whole seconds, their ISO 8601 text)
        self._encode = _make_encoder(_json_default, self.json_ensure_ascii)
        self._encode_string = (
            encode_basestring_ascii if self.json_ensure_ascii else encode_basestring
        )
        self._heads: dict[Any, tuple[str, str, dict[str, str]]] = {}
        self._plans: dict[Any, _Plan | None] = {}
        self._encode_holes = json.JSONEncoder(
            separators=(",", ":"),
            ensure_ascii=self.json_ensure_ascii,
            allow_nan=False,  # NaN is not JSON: no template, the general path writes it as text
            default=_hole_default,
        ).encode
        # Templates have the static fields written in: they are made again when
        # static_fields changes, and not made at all for values that are not
        # plain JSON (a lazy object's text may change from one record to the next).
        self._static_seen: Any = _MISSING
        self._encode_plain = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=self.json_ensure_ascii, default=_safe_str
        ).encode

    # Redaction ------------------------------------------------------------

    def is_sensitive(self, key: Any) -> bool:
        """Whether values under ``key`` are redacted."""
        verdict = self._verdicts.get(key)
        if verdict is None:
            pattern = self._redact_pattern
            verdict = pattern is not None and pattern.search(_safe_str(key)) is not None
            if len(self._verdicts) < _CACHE_SIZE:
                self._verdicts[key] = verdict
        return verdict

    def _key(self, key: Any) -> _KeyInfo | None:
        """(name, sensitive, (parents, last) if dotted) for an extra's key; None: skip it."""
        info = self._keys.get(key, False)
        if info is not False:
            return info  # type: ignore[return-value]
        name = key if type(key) is str else _safe_str(key)
        if name[:1] == "_":
            info = _SKIP
        else:
            split = name.split(".")
            # "a..b", ".a", "a.": kept as they are
            parts = (tuple(split[:-1]), split[-1]) if len(split) > 1 and "" not in split else None
            info = (name, self.is_sensitive(name), parts)
        if len(self._keys) < _CACHE_SIZE:
            self._keys[key] = info
        return info

    def _clean(self, value: Any, depth: int) -> Any:
        """``value`` with secrets redacted. Dicts and mappings come back as new dicts."""
        if type(value) in _SCALARS:
            return value
        if depth >= _MAX_DEPTH:
            return "[TRUNCATED]"
        if isinstance(value, Mapping):  # dicts, and request.headers: never through str()
            sensitive = self.is_sensitive
            clean = self._clean
            return {
                key: REDACTED if sensitive(key) else clean(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            items: list[Any] | None = None
            for index, item in enumerate(value):
                new = self._clean(item, depth + 1)
                if new is not item:
                    if items is None:
                        items = list(value)
                    items[index] = new
            return value if items is None else items
        return value

    # Formatting -----------------------------------------------------------

    def format(self, record: logging.LogRecord) -> str:
        try:
            try:
                text = self._planned(record)
            except Exception:  # an unusual record: the general path copes, or says why
                text = None
            if text is None:
                fields = self._fields(record)
                try:
                    text = self._fast(record, fields)
                except Exception:
                    data = self._merged(record, fields)
                    try:
                        text = self._encode(data)
                    except Exception:
                        text = self._encode_plain(_plain(data))
            return self.prefix + text if self.prefix else text
        except Exception as exc:
            return self._fallback(record, exc)

    def _head(self, record: logging.LogRecord) -> str:
        """The fixed fields, written as text, without the closing brace.

        Everything but the time and the message is the same for every record
        of one logging call site in one thread, so it is written once per
        call site and reused (bounded cache).
        """
        state = record.__dict__
        service = _service()
        try:
            key = (
                state["name"],
                state["levelname"],
                state["filename"],
                state["lineno"],
                type(state["lineno"]),
                state["funcName"],
                state["process"],
                type(state["process"]),
                state["threadName"],
            )
            middle = self._heads.get(key)
        except (KeyError, TypeError):  # an odd record: a field missing or unhashable
            key = middle = None
        if middle is None or middle[2] is not service:
            middle = self._head_middle(record, service)
            if key is not None and len(self._heads) < _CACHE_SIZE:
                self._heads[key] = middle
        return (
            f'{{"@timestamp":"{self._timestamp(record)}",'
            f'"log.level":{middle[0]},'
            f'"message":{self._encode_string(record.message)},{middle[1]}'
        )

    def _head_middle(
        self, record: logging.LogRecord, service: dict[str, str]
    ) -> tuple[str, str, dict[str, str]]:
        string = self._encode_string
        pid = record.process
        lineno = record.lineno
        level = string(record.levelname.lower())
        rest = (
            f'"log":{{"logger":{string(record.name)},'
            f'"origin":{{"file":{{"name":{string(record.filename)},'
            f'"line":{lineno if type(lineno) is int else self._encode(lineno)}}},'
            f'"function":{string(record.funcName)}}}}},'
            f'"service":{self._encode(service)},'
            f'"process":{{"pid":{pid if type(pid) is int else self._encode(pid)},'
            f'"thread":{{"name":{string(record.threadName)}}}}}'
        )
        return level, rest, service

    def _fast(self, record: logging.LogRecord, fields: dict[str, Any]) -> str:
        """The line, with the fixed fields written directly (the common case).

        The fields every record has (time, level, message, ``log``, ``service``,
        ``process``) always have the same shape, so they are written as text
        with ``json``'s own string escaping; only ``fields`` goes through the
        encoder. Raises when an extra uses one of those names (then
        :meth:`_merged` nests it properly) or a fixed field has an unusual type.
        """
        if not _FIXED_NAMES.isdisjoint(fields):
            raise LookupError("an extra shares a name with a fixed field")
        head = self._head(record)
        if not fields:
            return head + "}"
        return f"{head},{self._encode(fields)[1:]}"

    # Planned lines ----------------------------------------------------------

    def _planned(self, record: logging.LogRecord) -> str | None:
        """The line from a template, for records whose extras are all plain values.

        Records made at one call site have the same attributes every time, so
        how their extras nest is the same every time: the layout is worked out
        once per set of attribute names (by :meth:`_fields`' own rules, on
        stand-ins) and kept as text with holes for the values. Each value is
        then written on its own (``json``'s string escaping, ``repr`` of
        numbers), which skips the walk over the record and the encoding of
        nested dicts. ``None`` when a template does not fit this record (an
        error, a dict message, a value that is not a plain str, int, float,
        bool or ``None``): the general path formats it.
        """
        msg = record.msg
        if isinstance(msg, dict) or record.exc_info or record.exc_text or record.stack_info:
            return None
        static = self.static_fields
        if static != self._static_seen:
            if not _plain_json(static):
                return None
            self._plans.clear()
            self._static_seen = copy.deepcopy(static)
        state = record.__dict__
        record.message = record.getMessage()
        ids = _record_ids(record)
        try:
            key = (tuple(state), not ids[0], not ids[1], not ids[2])
            plan = self._plans.get(key, _MISSING)
        except TypeError:  # an unhashable attribute name
            return None
        if plan is _MISSING:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                return None  # more shapes of record than templates kept: the general path
            plan = self._make_plan(state, ids)
            self._plans[key] = plan
        if plan is None:
            return None
        literals, slots, tail, parents = plan
        string = self._encode_string
        parts = [self._head(record)]
        append = parts.append
        for literal, (is_id, ref) in zip(literals, slots, strict=True):
            value = ids[ref] if is_id else state[ref]
            kind = type(value)
            if kind is str:
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

    def _make_plan(self, state: dict[str, Any], ids: tuple[Any, Any, Any]) -> _Plan | None:
        """(texts before each hole, what fills each hole, text after the last, parents).

        A hole is filled from ``(True, n)``: the n-th id, or ``(False, key)``:
        the record's attribute ``key``. ``parents`` are the keys of extras that
        other dotted keys nest under: when one is ``None`` the general path
        nests differently, so it formats that record.
        """
        slots: list[tuple[bool, Any]] = []
        paths: dict[Any, tuple[Any, ...]] = {}

        def stand_in(is_id: bool, ref: Any) -> _Hole:
            slots.append((is_id, ref))
            return _Hole(len(slots) - 1)

        out: dict[str, Any] = {}
        _put_ids(out, *(stand_in(True, n) if value else None for n, value in enumerate(ids)))
        every = [path for path, value in zip(_ID_PATHS, ids, strict=True) if value]
        holes = {}
        for key in state:
            info = self._keys.get(key, False)
            if info is False:
                info = self._key(key)
            if info is not None and not info[1]:  # an extra, not redacted
                holes[key] = stand_in(False, key)
                paths[key] = (info[0],) if info[2] is None else (*info[2][0], info[2][1])
        every.extend(paths.values())
        for key in self.static_fields or ():
            info = self._key(key)
            if info is not None:
                every.append((info[0],) if info[2] is None else (*info[2][0], info[2][1]))
        parents = frozenset(
            key
            for key, path in paths.items()
            if any(len(other) > len(path) and other[: len(path)] == path for other in every)
        )
        sources: list[Any] = [{**state, **holes}]
        if self.static_fields:
            sources.insert(0, self.static_fields)
        self._extras_into(out, sources)
        if not _FIXED_NAMES.isdisjoint(out):
            return None
        if not out:
            return (), (), "}", parents
        try:
            text = self._encode_holes(out)
        except Exception:
            return None
        pieces = _HOLE_PATTERN.split(text)
        # pieces: text, hole number, text, hole number, ..., text
        # A hole can be missing: a later extra replaced its parent ("a.b", then "a").
        order = [int(number) for number in pieces[1::2]]
        if len(set(order)) != len(order):
            return None  # a static value that passes for a hole: no template
        literals = pieces[0::2]
        literals[0] = "," + literals[0][1:]
        return tuple(literals[:-1]), tuple(slots[n] for n in order), literals[-1], parents

    def _fixed(self, record: logging.LogRecord) -> dict[str, Any]:
        """The fields every record has, as a dict (what :meth:`_fast` writes as text)."""
        return {
            "@timestamp": self._timestamp(record),
            "log.level": record.levelname.lower(),
            "message": record.message,
            "log": {
                "logger": record.name,
                "origin": {
                    "file": {"name": record.filename, "line": record.lineno},
                    "function": record.funcName,
                },
            },
            "service": dict(_service()),
            "process": {"pid": record.process, "thread": {"name": record.threadName}},
        }

    def _merged(self, record: logging.LogRecord, fields: dict[str, Any]) -> dict[str, Any]:
        """The fixed fields with ``fields`` merged in: the whole record as one dict."""
        data = self._fixed(record)
        for key, value in fields.items():
            _put(data, key, None, value)
        return data

    def _timestamp(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        cached = self._second
        if cached[0] != seconds or not cached[1]:
            cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
            self._second = cached
        return f"{cached[1]}.{int(record.msecs):03d}Z"

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """Everything but the fixed fields: ids, error and extras, redacted and nested."""
        msg = record.msg
        if isinstance(msg, dict):  # python-json-logger's logger.info({...}) form
            record.message = _safe_str(msg["message"]) if "message" in msg else ""
        else:
            record.message = record.getMessage()
        out: dict[str, Any] = {}
        _put_ids(out, *_record_ids(record))
        if record.exc_info or record.exc_text or record.stack_info:
            error = self._error(record)
            if error:
                out["error"] = error
        sources: list[Any] = [record.__dict__]
        if isinstance(msg, dict):
            sources.insert(0, msg)
        if self.static_fields:
            sources.insert(0, self.static_fields)
        self._extras_into(out, sources)
        return out

    def _extras_into(self, out: dict[str, Any], sources: list[Any]) -> None:
        """Add the extras of ``sources`` to ``out``: redacted, dotted keys nested."""
        known = self._keys
        clean = self._clean
        for source in sources:
            for key, value in source.items():
                info = known.get(key, False)
                if info is False:
                    info = self._key(key)
                if info is None:
                    continue
                name, sensitive, parts = info
                if sensitive:
                    value = REDACTED
                elif type(value) not in _SCALARS:
                    value = clean(value, 0)
                if parts is None:
                    if type(value) is dict:
                        _put(out, name, None, value)
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
                _put(out, name, (*parts[0], parts[1]), value)

    def _error(self, record: logging.LogRecord) -> dict[str, Any]:
        exc_info = record.exc_info
        error: dict[str, Any] = {}
        if exc_info and exc_info[0] is not None:
            error["type"] = _type_name(exc_info[0])
            error["message"] = _safe_str(exc_info[1]) if exc_info[1] is not None else ""
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
            message = _safe_str(getattr(record, "msg", ""))
        try:
            timestamp = self._timestamp(record)
        except Exception:
            timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        data = {
            "@timestamp": timestamp,
            "log.level": _safe_str(getattr(record, "levelname", "error")).lower(),
            "message": message,
            "log": {"logger": _safe_str(getattr(record, "name", ""))},
            "error": {
                "type": _type_name(type(problem)),
                "message": f"log record could not be formatted: {_safe_str(problem)}",
            },
        }
        try:
            return self._encode_plain(_plain(data))
        except Exception:
            return '{"message":"log record could not be formatted","log.level":"error"}'


class _Values:
    """Something with a ``__dict__``, which is all that logging's format styles read."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__ = values


class TextFormatter(logging.Formatter):
    """Human-readable lines that still carry the request id (``-`` outside a request).

    The format may use ``%(request_id)s``, ``%(trace_id)s`` and ``%(span_id)s``
    besides the usual record attributes.
    """

    default_format = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Any = "%",
        validate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(fmt or self.default_format, datefmt, style, validate, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        values = dict(record.__dict__)
        ids = _record_ids(record)
        for name, value in zip(_ID_ATTRS, ids, strict=True):
            values[name] = value or "-"
        return self._style.format(_Values(values))  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# A ready LOGGING dict
# --------------------------------------------------------------------------


def logging_config(
    level: str | int = "INFO",
    *,
    json: bool = True,
    access_log: bool = True,
    stream: str | IO[str] = "ext://sys.stdout",
    mail_admins: bool = True,
) -> dict[str, Any]:
    """A complete ``LOGGING`` dict: every record as one JSON line on stdout.

    In ``settings.py``::

        from django_observability.logging import logging_config

        LOGGING = logging_config()                        # INFO, JSON
        LOGGING = logging_config("DEBUG", json=not DEBUG)  # text lines while developing

    One handler (``"console"``, on the root logger) writes everything, once:
    Django's loggers (``django``, ``django.request``, ``django.server``,
    ``django.security``), this app's (``django_observability``, its ``.access``
    and ``.audit`` records) and the servers' (``gunicorn.error``,
    ``gunicorn.access``, ``uvicorn``, ``uvicorn.error``, ``uvicorn.access``)
    lose the handlers Django, gunicorn or uvicorn gave them and propagate to
    it. Django's ``mail_admins`` handler on ``django`` is kept as Django sets
    it (errors, only when ``DEBUG`` is off and ``ADMINS`` is set).

    ``level``
        Level of the root logger and of ``django``, ``django_observability``,
        ``gunicorn.error`` and ``uvicorn``. Access and audit records are
        logged at INFO whatever this is.
    ``json``
        ``False`` writes :class:`TextFormatter` lines instead (for a terminal).
    ``access_log``
        ``False`` drops this app's per-request access records. The servers'
        own access lines (``gunicorn.access``, ``uvicorn.access``) are kept;
        to drop them set ``LOGGING["loggers"]["gunicorn.access"]["level"] =
        "WARNING"``.
    ``stream``
        Where lines go: an ``ext://`` name as ``dictConfig`` understands it, or
        a file object.
    ``mail_admins``
        ``False`` leaves out Django's ``mail_admins`` handler, which reads the
        settings when it is made: for gunicorn's ``logconfig_dict``, applied by
        the master before Django is loaded (see the README, gunicorn).

    Django applies ``LOGGING`` when it starts, so under gunicorn or uvicorn
    the server's own lines written before the application is loaded (the
    master's start-up lines) keep the server's format, unless the server gets
    the same dict, made with ``mail_admins=False``: ``logconfig_dict`` in
    ``gunicorn.conf.py``, or saved as JSON for ``uvicorn --log-config``.

    The result is a plain dict: change it before Django applies it.
    """
    if isinstance(level, str):
        level = level.upper()
    inherit = "NOTSET"

    def propagating(logger_level: str | int) -> dict[str, Any]:
        return {"level": logger_level, "handlers": [], "propagate": True}

    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "django_observability.logging.JsonFormatter"},
            "text": {"()": "django_observability.logging.TextFormatter"},
        },
        "filters": {
            "context": {"()": "django_observability.logging.ContextFilter"},
            "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if json else "text",
                "filters": ["context"],
                "stream": stream,
            },
            "mail_admins": {
                "level": "ERROR",
                "filters": ["require_debug_false"],
                "class": "django.utils.log.AdminEmailHandler",
            },
        },
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "django": {"level": level, "handlers": ["mail_admins"], "propagate": True},
            "django.request": propagating(inherit),
            "django.server": propagating(inherit),
            "django.security": propagating(inherit),
            "django_observability": propagating(level),
            "django_observability.access": propagating("INFO" if access_log else "WARNING"),
            "django_observability.audit": propagating("INFO"),
            "gunicorn.error": propagating(level),
            "gunicorn.access": propagating("INFO"),
            "uvicorn": propagating(level),
            "uvicorn.error": propagating(inherit),
            "uvicorn.access": propagating("INFO"),
        },
    }
    if not mail_admins:
        del config["handlers"]["mail_admins"], config["filters"]["require_debug_false"]
        config["loggers"]["django"]["handlers"] = []
    return config
