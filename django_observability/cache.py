"""Metrics and spans for every cache alias in ``CACHES``, without changing ``BACKEND``.

What is recorded, per operation of Django's cache API (sync and async):

* ``cache_operations_total{alias, operation, result}``: ``result`` is ``hit``
  or ``miss`` for reads (``get``, ``get_many``, ``get_or_set``, ``has_key``),
  ``ok`` for the other operations, ``error`` for any operation the backend
  raised from. ``get_many`` counts one hit or miss per distinct key asked for.
* ``cache_operation_duration_seconds{alias, operation}``: one observation per
  operation (one per ``get_many`` call, whatever its number of keys).
* the request's hits and misses, added to its state (``context.count_cache``)
  for its access line and server span.
* a CLIENT span per operation when tracing is on and a recorded span is
  current (a request's server span, a task's span, a ``trace_operation``).

How, and why so:

* **No backend swap.** django-prometheus asks the user to replace ``BACKEND``
  with its subclasses (one per Django backend, none for third-party ones). We
  leave the settings alone: :func:`install` (from ``AppConfig.ready()``) wraps
  ``create_connection`` of Django's ``caches`` handler, the one place where a
  backend instance is made for an alias (once per alias and thread), and wraps
  the operation methods of each instance made there **on the instance**. The
  class, ``isinstance`` and the backend's own attributes stay the user's; any
  backend works, Django's or not; the alias (a key of ``CACHES``, so bounded)
  is known in the wrappers' closure. A backend class with ``__slots__`` and no
  ``__dict__`` is left as it is (logged once).
* **Each user-visible operation is counted once.** Django's ``BaseCache``
  implements ``get_many``, ``get_or_set``, ``incr``... by calling
  ``self.get``/``self.set``, and its async methods (``aget``...) call the sync
  ones through ``sync_to_async``. A context variable marks the operation in
  progress on an instance: a wrapper called while its own instance's operation
  runs (in the same task, or in the thread ``sync_to_async`` runs it in, which
  gets a copy of the context) only calls through. An operation of *another*
  alias made from inside one (a two-tier backend) is counted: it happened.
* **Hits and misses without guessing.** ``get`` asks the backend with a
  private sentinel as the default, so a stored ``None`` (or a stored value equal
  to the caller's default) is a hit; the caller still gets its own default.
  ``get_or_set`` hands the backend a callable default that notes a miss when
  the backend calls it (Django calls the default only for a missing key).
* **Errors pass through unchanged.** An exception from the backend is counted
  (``result="error"``, the span marked failed) and re-raised as it is; a fault in
  our own recording is logged and swallowed, never raised to the caller.
* **Cost.** The metric path per operation is two ``perf_counter()`` calls, a
  context-variable guard, a counter increment and a histogram observation on
  children resolved once per (instance, operation), and the per-request count.
  Durations use their own buckets, 100 µs to 1 s: an in-process cache answers in
  microseconds (the first bucket, so the histogram's bucket walk stops at once),
  a network cache in tenths of a millisecond. ``benchmarks/cache.py`` measures it
  against django-prometheus's cache backend.
* **Spans only under a recorded parent.** A cache operation outside any trace
  (a management command, a thread of the project's own, a health probe) starts
  no trace of its own: one single-span trace per cache operation would flood
  the exporter (cache operations are the most frequent calls an application
  makes) with traces that say nothing without their context. An unsampled
  parent makes no child spans either, as a parent-based sampler would drop them.
  Inside a request the span is a child of the server span, and it is current
  while the backend works, so a ``DatabaseCache``'s queries and a Redis
  client's command spans are its children.
* **Span attributes** (database semantic conventions; there are none for
  caches): ``db.system.name`` (``redis``, ``memcached``, the database's system
  for ``DatabaseCache``, ``django.locmem``/``django.filebased``/``django.dummy``
  for Django's in-process backends, which no well-known value describes,
  ``other`` for a backend we cannot tell), ``db.operation.name`` (the API
  method, ``get``), ``server.address``/``server.port`` when ``LOCATION`` names
  one server, ``django_observability.cache.alias``, and for reads
  ``django_observability.cache.hit`` (``get_many``: ``.hits``/``.misses``).
  The span is named ``<operation> <alias>`` (``get default``), after the
  conventions' ``{db.operation.name} {target}``. Never a key or a value: keys
  often hold user ids, e-mail addresses or session ids.

Switches (read lazily, so ``override_settings`` works):
``OBSERVABILITY_CACHE_METRICS`` (the two metrics and the per-request counts)
and ``OBSERVABILITY_TRACING_CACHE_SPANS``; with both off an operation costs one
flag test more than the backend's own.

Not covered: methods a backend adds beyond Django's API (django-redis's
``keys``, ``lock``...), and backend instances made outside ``caches[...]``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from django.core.signals import setting_changed

from django_observability.conf import PREFIX, valid_or_default
from django_observability.context import count_cache
from django_observability.formats import exception_name
from django_observability.metrics import get_metrics
from django_observability.tracing import get_tracer, set_error, spans_suppressed

__all__ = [
    "OPERATIONS",
    "READS",
    "install",
    "instrument",
    "is_instrumented",
    "uninstall",
    "uninstrument",
]

logger = logging.getLogger("django_observability")

#: The ``operation`` label: Django's cache API, sync names (``aget`` is ``get``).
OPERATIONS = (
    "get",
    "get_many",
    "get_or_set",
    "has_key",
    "set",
    "set_many",
    "add",
    "touch",
    "delete",
    "delete_many",
    "incr",
    "decr",
    "incr_version",
    "decr_version",
    "clear",
)
#: Operations whose result is ``hit``/``miss`` rather than ``ok``.
READS = frozenset({"get", "get_many", "get_or_set", "has_key"})

HIT, MISS, OK, ERROR = "hit", "miss", "ok", "error"

# The backend instance whose operation is running in this context (None: none).
_running: ContextVar[Any] = ContextVar("django_observability_cache_operation", default=None)
_get_running = _running.get
_set_running = _running.set
_reset_running = _running.reset
_perf_counter = time.perf_counter
_get_tracer = get_tracer

# A default no caller passes: what get() asks the backend for, to tell a miss.
_MISSING = object()

# Where an instrumented instance keeps its observer (in its __dict__).
_OBSERVER = "_observability_cache"

# Class paths of Django's backends (and name fragments of others) -> db.system.name.
_SYSTEM_BY_CLASS = {
    "django.core.cache.backends.redis.RedisCache": "redis",
    "django.core.cache.backends.memcached.BaseMemcachedCache": "memcached",
    "django.core.cache.backends.locmem.LocMemCache": "django.locmem",
    "django.core.cache.backends.filebased.FileBasedCache": "django.filebased",
    "django.core.cache.backends.dummy.DummyCache": "django.dummy",
}
_DATABASE_CACHE = "django.core.cache.backends.db.DatabaseCache"


# --- switches -------------------------------------------------------------------------

# (metrics, spans, either), read once and again after an OBSERVABILITY_ setting changes.
_flags: tuple[bool, bool, bool] | None = None


def _load_flags() -> tuple[bool, bool, bool]:
    global _flags
    metrics = bool(valid_or_default("CACHE_METRICS"))
    spans = bool(valid_or_default("TRACING_CACHE_SPANS"))
    flags = _flags = (metrics, spans, metrics or spans)
    return flags


def reset() -> None:
    """Read the switches again (an ``OBSERVABILITY_`` setting changed)."""
    global _flags
    _flags = None


def _setting_changed(setting: str, **kwargs: Any) -> None:
    if setting.startswith(PREFIX):
        reset()


# --- what one instance's wrappers share -----------------------------------------------


class _Series:
    """The metric children of one (alias, operation), for one set of instruments.

    Made on the first operation: a read's ``hit`` and ``miss`` series, another
    operation's ``ok`` series (a zero is a true count); ``error`` on the first error.
    """

    __slots__ = ("alias", "duration", "error", "hit", "metrics", "miss", "ok", "operation")

    def __init__(self, metrics: Any, alias: str, operation: str) -> None:
        self.metrics = metrics
        self.alias = alias
        self.operation = operation
        self.duration = metrics.cache_duration_child(alias, operation)
        child = metrics.cache_operations_child
        read = operation in READS
        self.hit = child(alias, operation, HIT) if read else None
        self.miss = child(alias, operation, MISS) if read else None
        self.ok = None if read else child(alias, operation, OK)
        self.error: Any = None

    def count_error(self) -> None:
        if self.error is None:
            self.error = self.metrics.cache_operations_child(self.alias, self.operation, ERROR)
        self.error.inc()


class CacheObserver:
    """What the wrappers of one backend instance share: its alias, series and span facts."""

    def __init__(self, alias: str, backend: Any, location: Any) -> None:
        self.alias = alias
        self.backend = backend
        self._location = location
        self._series: dict[str, _Series] = {}
        self._span_attributes: dict[str, Any] | None = None

    # metrics

    def series(self, operation: str, metrics: Any) -> _Series | None:
        """The series of ``operation`` for ``metrics`` (``None``: metrics are off)."""
        if metrics is None:
            return None
        series = self._series.get(operation)
        if series is None or series.metrics is not metrics:
            series = self._series[operation] = _Series(metrics, self.alias, operation)
        return series

    def record_get(self, cell: list[Any], seconds: float, found: bool) -> None:
        """One ``get`` that found its key or not (the hot path, kept short).

        ``cell`` holds the wrapper's series, checked against the current
        instruments (they are made again when a metrics setting changes).
        """
        try:
            metrics = get_metrics()
            series = cell[0]
            if series is None or series.metrics is not metrics:
                series = cell[0] = self.series("get", metrics)
            if found:
                count_cache(1, 0)
                if series is not None:
                    series.duration.observe(seconds)
                    series.hit.inc()
            else:
                count_cache(0, 1)
                if series is not None:
                    series.duration.observe(seconds)
                    series.miss.inc()
        except Exception:
            logger.exception("django_observability: could not record a cache operation")

    def record(
        self,
        operation: str,
        seconds: float,
        result: str,
        hits: int,
        misses: int,
        span: Any,
        exc: BaseException | None = None,
    ) -> None:
        """Count one finished operation (``hits``/``misses``: of a read) and end its span."""
        if span is not None:
            self.end_span(span, operation, hits, misses, exc)
        flags = _flags or _load_flags()
        if not flags[0]:
            return
        try:
            if hits or misses:
                count_cache(hits, misses)
            series = self.series(operation, get_metrics())
            if series is not None:
                series.duration.observe(seconds)
                if result is ERROR:
                    series.count_error()
                elif result is OK:
                    series.ok.inc()
                else:
                    # get_many: one per key; a single read: hits + misses == 1.
                    if hits:
                        series.hit.inc(hits)
                    if misses:
                        series.miss.inc(misses)
        except Exception:
            logger.exception("django_observability: could not record a cache operation")

    # spans

    def start_span(self, operation: str) -> tuple[Any, Any] | None:
        """(span, context token) of a CLIENT span made current, or ``None``.

        Only under a recorded span: see the module's docstring.
        """
        try:
            tracer = get_tracer()
            if tracer is None or spans_suppressed():
                return None
            otel = _otel or _load_otel()
            parent = otel.get_current_span()
            if not parent.is_recording():
                return None
            attributes = self._span_attributes
            if attributes is None:
                attributes = self._span_attributes = self._attributes()
            span = tracer.start_span(
                f"{operation} {self.alias}",
                kind=otel.CLIENT,
                attributes={**attributes, "db.operation.name": operation},
            )
            return span, otel.attach(otel.set_span_in_context(span))
        except Exception:
            logger.exception("django_observability: could not start a cache span")
            return None

    def end_span(
        self,
        scope: tuple[Any, Any],
        operation: str,
        hits: int,
        misses: int,
        exc: BaseException | None,
    ) -> None:
        span, token = scope
        try:
            (_otel or _load_otel()).detach(token)
            if span.is_recording():
                if exc is not None:
                    set_error(span, exc, exception_name(exc))
                elif operation == "get_many":
                    span.set_attributes(
                        {
                            "django_observability.cache.hits": hits,
                            "django_observability.cache.misses": misses,
                        }
                    )
                elif operation in READS:
                    span.set_attribute("django_observability.cache.hit", hits > 0)
            span.end()
        except Exception:
            logger.exception("django_observability: could not end a cache span")

    def _attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "db.system.name": backend_system(self.backend),
            "django_observability.cache.alias": self.alias,
        }
        server = single_server(self._location)
        if server is not None:
            host, port = server
            attributes["server.address"] = host
            if port is not None:
                attributes["server.port"] = port
        return attributes


class _Otel:
    """The OpenTelemetry functions a cache span needs, looked up once."""

    def __init__(self) -> None:
        from opentelemetry import context
        from opentelemetry.trace import SpanKind, get_current_span, set_span_in_context

        self.attach = context.attach
        self.detach = context.detach
        self.get_current_span = get_current_span
        self.set_span_in_context = set_span_in_context
        self.CLIENT = SpanKind.CLIENT


_otel: _Otel | None = None


def _load_otel() -> _Otel:
    global _otel
    _otel = _Otel()
    return _otel


def backend_system(backend: Any) -> str:
    """``db.system.name`` for a cache backend instance (see the module's docstring)."""
    for klass in type(backend).__mro__:
        path = f"{klass.__module__}.{klass.__qualname__}"
        system = _SYSTEM_BY_CLASS.get(path)
        if system is not None:
            return system
        if path == _DATABASE_CACHE:
            return _database_system(backend)
    name = f"{type(backend).__module__}.{type(backend).__qualname__}".lower()
    if "redis" in name:
        return "redis"
    if "memcache" in name:
        return "memcached"
    return "other"


def _database_system(backend: Any) -> str:
    from django.db import connections, router

    # db.py's vendor -> db.system.name table, so a cache table's spans and its
    # queries' spans name the same system.
    from django_observability.db import system_name

    try:
        vendor = connections[router.db_for_write(backend.cache_model_class)].vendor
        return system_name(vendor)
    except Exception:
        return "other_sql"


def single_server(location: Any) -> tuple[str, int | None] | None:
    """(host, port) when ``LOCATION`` names exactly one network server, else ``None``.

    ``redis://host:6379/0``, ``host:11211``, ``[::1]:11211``; a Unix socket, a
    path (file-based cache), a table name or a list of servers give ``None``.
    """
    if isinstance(location, str):
        servers = [s for s in re.split("[;,]", location) if s.strip()]
    elif isinstance(location, (list, tuple)):
        servers = [s for s in location if isinstance(s, str)]
    else:
        return None
    if len(servers) != 1:
        return None
    server = servers[0].strip()
    if "://" in server:
        try:
            parts = urlsplit(server)
            host, port = parts.hostname, parts.port
        except ValueError:
            return None
        if parts.scheme.startswith("unix") or not host:
            return None
        return host, port
    if server.startswith(("unix:", "/")):
        return None
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


# --- the wrappers ---------------------------------------------------------------------


def _sync(observer: CacheObserver, operation: str, inner: Callable[..., Any]) -> Any:
    backend = observer.backend
    record = observer.record
    record_get = observer.record_get
    cell: list[Any] = [None]  # this operation's series (record_get)

    if operation == "get":

        def get(key: Any, default: Any = None, *args: Any, **kwargs: Any) -> Any:
            flags = _flags or _load_flags()
            if not flags[2] or _get_running() is backend:
                return inner(key, default, *args, **kwargs)
            token = _set_running(backend)
            span = observer.start_span("get") if flags[1] and _get_tracer() is not None else None
            start = _perf_counter()
            try:
                value = inner(key, _MISSING, *args, **kwargs)
            except BaseException as exc:
                record("get", _perf_counter() - start, ERROR, 0, 0, span, exc)
                raise
            finally:
                _reset_running(token)
            seconds = _perf_counter() - start
            found = value is not _MISSING
            if span is not None:
                observer.end_span(span, "get", found, not found, None)
            if flags[0]:
                record_get(cell, seconds, found)
            return value if found else default

        return get

    def operate(*args: Any, **kwargs: Any) -> Any:
        flags = _flags or _load_flags()
        if not flags[2] or _get_running() is backend:
            return inner(*args, **kwargs)
        token = _set_running(backend)
        span = observer.start_span(operation) if flags[1] else None
        start = _perf_counter()
        try:
            args, kwargs, outcome = _prepare(operation, args, kwargs)
            value = inner(*args, **kwargs)
        except BaseException as exc:
            record(operation, _perf_counter() - start, ERROR, 0, 0, span, exc)
            raise
        finally:
            _reset_running(token)
        _finish(record, operation, _perf_counter() - start, value, outcome, span)
        return value

    operate.__name__ = operate.__qualname__ = operation
    return operate


def _async(observer: CacheObserver, operation: str, inner: Callable[..., Any]) -> Any:
    backend = observer.backend
    record = observer.record

    async def operate(*args: Any, **kwargs: Any) -> Any:
        flags = _flags or _load_flags()
        if not flags[2] or _get_running() is backend:
            return await inner(*args, **kwargs)
        token = _set_running(backend)
        span = observer.start_span(operation) if flags[1] else None
        start = _perf_counter()
        try:
            args, kwargs, outcome = _prepare(operation, args, kwargs)
            value = await inner(*args, **kwargs)
        except BaseException as exc:
            record(operation, _perf_counter() - start, ERROR, 0, 0, span, exc)
            raise
        finally:
            _reset_running(token)
        _finish(record, operation, _perf_counter() - start, value, outcome, span)
        return value

    operate.__name__ = operate.__qualname__ = "a" + operation
    return operate


class _Outcome:
    """What a read's arguments tell about its result: the distinct keys asked for, a miss."""

    __slots__ = ("keys", "missed")

    def __init__(self) -> None:
        self.keys: int = 0
        self.missed = False


def _prepare(
    operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], _Outcome | None]:
    """The arguments to call the backend with, and what to read its result against."""
    if operation == "get_many":
        keys = args[0] if args else kwargs.get("keys", ())
        if not hasattr(keys, "__len__"):
            keys = list(keys)  # an iterator: read once, here
            if args:
                args = (keys, *args[1:])
            else:
                kwargs = {**kwargs, "keys": keys}
        outcome = _Outcome()
        try:
            outcome.keys = len(set(keys))
        except TypeError:
            outcome.keys = len(keys)
        return args, kwargs, outcome
    if operation == "get_or_set":
        outcome = _Outcome()
        if len(args) > 1:
            default = args[1]
            args = (args[0], _miss_noting(default, outcome), *args[2:])
        elif "default" in kwargs:
            kwargs = {**kwargs, "default": _miss_noting(kwargs["default"], outcome)}
        return args, kwargs, outcome
    return args, kwargs, None


def _miss_noting(default: Any, outcome: _Outcome) -> Callable[[], Any]:
    def default_for_a_missing_key() -> Any:
        outcome.missed = True
        return default() if callable(default) else default

    return default_for_a_missing_key


def _finish(
    record: Callable[..., None],
    operation: str,
    seconds: float,
    value: Any,
    outcome: _Outcome | None,
    span: Any,
) -> None:
    if operation == "get_many":
        assert outcome is not None
        hits = len(value) if isinstance(value, dict) else 0
        record(operation, seconds, HIT, hits, max(outcome.keys - hits, 0), span)
    elif operation == "get_or_set":
        missed = outcome is not None and outcome.missed
        record(operation, seconds, MISS if missed else HIT, int(not missed), int(missed), span)
    elif operation == "has_key":
        found = bool(value)
        record(operation, seconds, HIT if found else MISS, int(found), int(not found), span)
    else:
        record(operation, seconds, OK, 0, 0, span)


# --- instances ------------------------------------------------------------------------


def instrument(backend: Any, alias: str, location: Any = None) -> bool:
    """Wrap the operation methods of ``backend`` (made for ``alias``) on the instance.

    Idempotent; returns whether the instance is instrumented. ``location`` is
    the alias's ``LOCATION`` (for ``server.address``).
    """
    own = getattr(backend, "__dict__", None)
    if not isinstance(own, dict):
        _log_once(type(backend), "has no __dict__ to hold the wrappers")
        return False
    if _OBSERVER in own:
        return True
    observer = CacheObserver(alias, backend, location)
    wrappers: dict[str, Any] = {}
    for operation in OPERATIONS:
        inner = getattr(backend, operation, None)
        if callable(inner):
            wrappers[operation] = _sync(observer, operation, inner)
        ainner = getattr(backend, "a" + operation, None)
        if callable(ainner):
            wrappers["a" + operation] = (
                _async_get(observer, ainner)
                if operation == "get"
                else _async(observer, operation, ainner)
            )
    for operation, wrapper in wrappers.items():
        # What a bound method has: Django 6.1's BaseCache.aget_many (aget_or_set,
        # ahas_key...) reads self.get_many.__func__ to tell whether a backend
        # overrides get_many; it must see the class's function, as without us.
        inner = getattr(backend, operation)
        wrapper.__func__ = getattr(inner, "__func__", inner)
        wrapper.__self__ = backend
        wrapper.__wrapped__ = inner
    own.update(wrappers)
    own[_OBSERVER] = observer
    return True


def _async_get(observer: CacheObserver, inner: Callable[..., Any]) -> Any:
    backend = observer.backend
    record = observer.record
    record_get = observer.record_get
    cell: list[Any] = [None]

    async def aget(key: Any, default: Any = None, *args: Any, **kwargs: Any) -> Any:
        flags = _flags or _load_flags()
        if not flags[2] or _get_running() is backend:
            return await inner(key, default, *args, **kwargs)
        token = _set_running(backend)
        span = observer.start_span("get") if flags[1] and _get_tracer() is not None else None
        start = _perf_counter()
        try:
            value = await inner(key, _MISSING, *args, **kwargs)
        except BaseException as exc:
            record("get", _perf_counter() - start, ERROR, 0, 0, span, exc)
            raise
        finally:
            _reset_running(token)
        seconds = _perf_counter() - start
        found = value is not _MISSING
        if span is not None:
            observer.end_span(span, "get", found, not found, None)
        if flags[0]:
            record_get(cell, seconds, found)
        return value if found else default

    return aget


def is_instrumented(backend: Any) -> bool:
    """Whether ``backend``'s operations are wrapped by :func:`instrument`."""
    own = getattr(backend, "__dict__", None)
    return isinstance(own, dict) and _OBSERVER in own


def uninstrument(backend: Any) -> None:
    """Remove the wrappers :func:`instrument` put on ``backend``."""
    own = getattr(backend, "__dict__", None)
    if not isinstance(own, dict) or own.pop(_OBSERVER, None) is None:
        return
    for operation in OPERATIONS:
        own.pop(operation, None)
        own.pop("a" + operation, None)


_logged: set[type] = set()


def _log_once(klass: type, problem: str) -> None:
    if klass not in _logged:
        _logged.add(klass)
        logger.error(
            "django_observability: the cache backend %s.%s %s; its operations are not measured",
            klass.__module__,
            klass.__qualname__,
            problem,
        )


# --- the handler ----------------------------------------------------------------------

# The handler's own create_connection, while ours is installed on it.
_original: Callable[[str], Any] | None = None


def install() -> None:
    """Instrument every cache backend instance ``django.core.cache.caches`` makes (idempotent)."""
    global _original
    from django.core.cache import caches

    setting_changed.connect(_setting_changed, dispatch_uid="django_observability.cache.reset")
    if _original is not None:
        return
    original = caches.create_connection

    def create_connection(alias: str) -> Any:
        backend = original(alias)
        try:
            instrument(backend, alias, caches.settings[alias].get("LOCATION"))
        except Exception:
            logger.exception("django_observability: could not instrument cache %r", alias)
        return backend

    caches.create_connection = create_connection  # type: ignore[method-assign]
    _original = original
    # Backends this thread made before ready() (a settings module or an app that used a cache).
    try:
        made = caches._connections
        for alias in caches:
            backend = getattr(made, alias, None)
            if backend is not None:
                instrument(backend, alias, caches.settings[alias].get("LOCATION"))
    except Exception:
        logger.exception("django_observability: could not instrument the caches made already")


def uninstall() -> None:
    """Undo :func:`install`: backends made from now on are the user's, unwrapped.

    Instances made before keep their wrappers (:func:`uninstrument` removes them).
    """
    global _original
    from django.core.cache import caches

    if _original is None:
        return
    caches.__dict__.pop("create_connection", None)
    _original = None
