"""Redis used directly: our command metric, and OpenTelemetry's Redis instrumentation's spans.

Whatever sends the commands (your code with redis-py, django-redis, Django's
``RedisCache``), they go through redis-py's client classes, and that is where
both are attached, once the project imports ``redis``:

* **The metric** ``redis_command_duration_seconds{operation, server_address,
  result}``: :func:`wrap_redis` times ``Redis.execute_command``,
  ``Pipeline.execute`` and ``Pipeline.immediate_execute_command`` (a
  transaction's ``WATCH`` and reads), sync and async (``redis.asyncio``). ``operation`` is
  the command's name (``GET``, ``HSET``; a pipeline or transaction is one
  ``PIPELINE``), capped like other labels that come from code we do not own;
  ``server_address`` is the host of the client's connection pool (``unix``
  for a socket), capped with the outgoing HTTP hosts; ``result`` is ``ok`` or
  ``error`` (the command raised: a connection refused, a timeout, a
  ``WRONGTYPE`` reply), or ``cancelled`` when the caller gave up on it (an
  ``asyncio`` task cancelled, ``wait_for`` timing out, gevent's ``Timeout``):
  not the server's failure. A transaction aborted by ``WATCH`` is ``ok``, as
  the instrumentation has it: the server answered. The instrumentation has no
  metric, and its response hook is not called for a command that raised, so
  the app times the calls itself (as it does httpx's transports). Off with
  ``OBSERVABILITY_REDIS_METRICS = False``.
* **The spans** are ``opentelemetry-instrumentation-redis``'s (the ``redis``
  extra): one ``CLIENT`` span per command or pipeline, named by the command,
  with the command's name and ``?`` for each argument as its text (never the
  keys or values). The app enables it when tracing is on, unless
  ``OBSERVABILITY_TRACING_REDIS_SPANS = False`` or someone enabled it before
  (the ``opentelemetry-instrument`` agent: then its spans are used as they
  are). Our timing is inside its span. As for cache operations, a command
  sent outside any recorded span (a management command, Kombu's bookkeeping
  in a Celery worker) starts no trace of its own: the instrumentation gets a
  tracer provider of ours, :class:`ChildSpansOnly`, whose tracers make no
  span then, nor for ``FT.SEARCH`` (it would carry the query and the
  documents found).
  Under a cache operation on ``RedisCache`` or django-redis, the command
  spans are children of the cache span (``cache.py``), whose metrics count
  the cache's view: hits and misses.

Redis Cluster clients (``RedisCluster``) are not timed: their commands go
through a different class; the instrumentation traces them.

The wrappers never raise on their own account: a fault in our timing is
logged once and the command's result or exception is the caller's, as it
would be without us.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace

from django_observability.conf import valid_or_default
from django_observability.faults import fault
from django_observability.imports import after_import
from django_observability.metrics import get_metrics

__all__ = ["ChildSpansOnly", "enable", "server_address", "spans_enabled", "wrap_redis"]

logger = logging.getLogger("django_observability")

PIPELINE = "PIPELINE"
_perf_counter = time.perf_counter

# (class, method name) -> (the function our wrapper replaced, our wrapper).
_originals: dict[tuple[type, str], tuple[Any, Any]] = {}
_spans_enabled = False


def server_address(client: Any) -> str:
    """The host a redis-py client (or pipeline) talks to, from its connection pool."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return "unknown"
    host = kwargs.get("host")
    if isinstance(host, str) and host:
        return host
    if kwargs.get("path"):
        return "unix"
    return "unknown"


def _operation(args: tuple[Any, ...]) -> str:
    name = args[0] if args else None
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    if not isinstance(name, str) or not name:
        return "unknown"
    return name.partition(" ")[0].upper()


def _record(client: Any, operation: str, result: str, seconds: float) -> None:
    try:
        metrics = get_metrics()
        if metrics is not None:
            metrics.record_redis_command(operation, server_address(client), result, seconds)
    except Exception:
        fault("redis_client.metrics")


def _watch_error() -> type[BaseException]:
    from redis.exceptions import WatchError

    return WatchError


def _sends_nothing(client: Any, pipeline: bool) -> bool:
    """An empty pipeline's ``execute()``: no round trip, nothing to time."""
    return pipeline and not getattr(client, "command_stack", True)


def _timed(original: Any, pipeline: bool = False) -> Any:
    """``original`` (a command's or a pipeline's method) timed for the metric.

    A pipeline is one ``PIPELINE``; a transaction it ran that ``WATCH``
    aborted is ``ok`` (the server answered).
    """
    answered: tuple[type[BaseException], ...] = (_watch_error(),) if pipeline else ()

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _sends_nothing(self, pipeline):
            return original(self, *args, **kwargs)
        result = "error"
        start = _perf_counter()
        try:
            response = original(self, *args, **kwargs)
            result = "ok"
            return response
        except answered:
            result = "ok"
            raise
        except Exception:
            raise
        except BaseException:  # gevent's Timeout: the caller gave up
            result = "cancelled"
            raise
        finally:
            seconds = _perf_counter() - start
            _record(self, PIPELINE if pipeline else _operation(args), result, seconds)

    return timed


def _timed_async(original: Any, pipeline: bool = False) -> Any:
    """:func:`_timed` for ``redis.asyncio``'s coroutine methods."""
    answered: tuple[type[BaseException], ...] = (_watch_error(),) if pipeline else ()

    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _sends_nothing(self, pipeline):
            return await original(self, *args, **kwargs)
        result = "error"
        start = _perf_counter()
        try:
            response = await original(self, *args, **kwargs)
            result = "ok"
            return response
        except answered:
            result = "ok"
            raise
        except Exception:
            raise
        except BaseException:  # asyncio's CancelledError: the caller gave up
            result = "cancelled"
            raise
        finally:
            seconds = _perf_counter() - start
            _record(self, PIPELINE if pipeline else _operation(args), result, seconds)

    return timed


def _targets() -> list[tuple[type, str, Any]]:
    """(class, method name, our timing wrapper) for each method a command goes through.

    A pipeline sends its commands in ``execute()``, but the ``WATCH`` of a
    transaction and the reads between it and ``MULTI`` go at once, through
    ``immediate_execute_command()``.
    """
    import redis.client

    targets: list[tuple[type, str, Any]] = [
        (redis.client.Redis, "execute_command", _timed),
        (redis.client.Pipeline, "execute", functools.partial(_timed, pipeline=True)),
        (redis.client.Pipeline, "immediate_execute_command", _timed),
    ]
    try:
        import redis.asyncio.client as aio
    except ImportError:  # pragma: no cover - redis-py without asyncio support
        return targets
    targets += [
        (aio.Redis, "execute_command", _timed_async),
        (aio.Pipeline, "execute", functools.partial(_timed_async, pipeline=True)),
        (aio.Pipeline, "immediate_execute_command", _timed_async),
    ]
    return [target for target in targets if hasattr(target[0], target[1])]


def wrap_redis() -> None:
    """Time redis-py's commands and pipelines (sync and async) for our metric, once."""
    for cls, name, wrap in _targets():
        if (cls, name) in _originals:
            continue
        original = getattr(cls, name)  # the instrumentation's wrapper, if it came first
        wrapper = wrap(original)
        _originals[(cls, name)] = (cls.__dict__.get(name), wrapper)
        setattr(cls, name, wrapper)


def unwrap_redis() -> None:
    """Undo :func:`wrap_redis` where our wrapper is still the method (for tests)."""
    for (cls, name), (original, wrapper) in list(_originals.items()):
        if cls.__dict__.get(name) is wrapper:
            if original is None:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
        del _originals[(cls, name)]


class ChildSpansOnly(trace.TracerProvider):
    """The tracer provider the app gives the Redis instrumentation: spans inside a trace only.

    Its tracers start a span only when a recorded span is current (or given as
    the parent); otherwise they hand back the invalid span, which records
    nothing and which the instrumentation then leaves alone. So a command sent
    outside any trace (a management command, a thread of your own, Kombu's
    bookkeeping in a Celery worker) starts no trace of its own, as for cache
    operations. ``FT.SEARCH`` gets no span at all: the instrumentation puts
    the query and the documents found on it.
    """

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _ChildTracer(self.provider.get_tracer(*args, **kwargs))


# Span names (the instrumentation's) that never get a span: RediSearch's search.
_UNTRACED = frozenset({"redis.search"})


class _ChildTracer(trace.Tracer):
    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    @staticmethod
    def _wanted(name: str, context: Any) -> bool:
        return name not in _UNTRACED and trace.get_current_span(context).is_recording()

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not self._wanted(name, context):
            return trace.INVALID_SPAN
        return self.tracer.start_span(name, context, *args, **kwargs)

    @contextlib.contextmanager  # type: ignore[override]
    def start_as_current_span(
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> Iterator[Any]:
        if not self._wanted(name, context):
            yield trace.INVALID_SPAN
            return
        with self.tracer.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span


def _instrument_spans() -> None:
    global _spans_enabled
    from django_observability.tracing.api import get_tracer, provider_override

    if get_tracer() is None:
        return  # tracing is off: the instrumentation would make spans that go nowhere
    try:
        from opentelemetry.instrumentation.redis import RedisInstrumentor
    except ImportError:
        logger.debug(
            "django_observability: opentelemetry-instrumentation-redis is not installed; "
            "Redis commands are not traced"
        )
        return
    try:
        instrumentor = RedisInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            return  # enabled before us (the agent): its spans are used as they are
        provider = provider_override() or trace.get_tracer_provider()
        instrumentor.instrument(tracer_provider=ChildSpansOnly(provider))
        _spans_enabled = True
    except Exception:
        fault("redis_client.spans")


def _on_import() -> None:
    if valid_or_default("REDIS_METRICS"):
        try:
            wrap_redis()  # before the instrumentation: its span is around our timing
        except Exception:
            fault("redis_client.wrap")
    if valid_or_default("TRACING_REDIS_SPANS"):
        _instrument_spans()


def enable() -> None:
    """Time redis-py's commands and trace them, once ``redis`` is imported (from ``ready()``).

    After tracing is set up; imports nothing.
    """
    after_import("redis", _on_import)


def spans_enabled() -> bool:
    """Whether this process enabled the Redis instrumentation."""
    return _spans_enabled


def disable() -> None:
    """Undo :func:`enable` (for tests)."""
    global _spans_enabled
    if _spans_enabled:  # first: its wrappers are around ours
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor().uninstrument()
        _spans_enabled = False
    unwrap_redis()
