"""Redis used directly: our command metric, and OpenTelemetry's Redis instrumentation's spans.

Whatever sends the commands (your code with redis-py, django-redis, Django's
``RedisCache``), they go through redis-py's client classes, and that is where
both are attached, once the project imports ``redis``:

* **The metric** ``redis_command_duration_seconds{operation, server_address,
  result}``: :func:`wrap_redis` times ``Redis.execute_command`` and
  ``Pipeline.execute``, sync and async (``redis.asyncio``). ``operation`` is
  the command's name (``GET``, ``HSET``; a pipeline or transaction is one
  ``PIPELINE``), capped like other labels that come from code we do not own;
  ``server_address`` is the host of the client's connection pool (``unix``
  for a socket), capped with the outgoing HTTP hosts; ``result`` is ``ok`` or
  ``error`` (the command raised: a connection refused, a timeout, a
  ``WRONGTYPE`` reply). A transaction aborted by ``WATCH`` is ``ok``, as the
  instrumentation has it: the server answered. The instrumentation has no
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
  in a Celery worker) starts no trace of its own: :func:`gate_redis` puts a
  gate around the instrumentation's wrappers that suppresses the span then.
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

import logging
import time
from typing import Any

from django_observability.conf import valid_or_default
from django_observability.faults import fault
from django_observability.imports import after_import
from django_observability.metrics import get_metrics

__all__ = ["enable", "gate_redis", "server_address", "spans_enabled", "wrap_redis"]

logger = logging.getLogger("django_observability")

PIPELINE = "PIPELINE"
_perf_counter = time.perf_counter

# (class, method name) -> (the function our wrapper replaced, our wrapper).
_originals: dict[tuple[type, str], tuple[Any, Any]] = {}
_gates: dict[tuple[type, str], tuple[Any, Any]] = {}
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


def _timed_command(original: Any) -> Any:
    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        result = "error"
        start = _perf_counter()
        try:
            response = original(self, *args, **options)
            result = "ok"
            return response
        finally:
            _record(self, _operation(args), result, _perf_counter() - start)

    return execute_command


def _timed_async_command(original: Any) -> Any:
    async def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        result = "error"
        start = _perf_counter()
        try:
            response = await original(self, *args, **options)
            result = "ok"
            return response
        finally:
            _record(self, _operation(args), result, _perf_counter() - start)

    return execute_command


def _timed_pipeline(original: Any) -> Any:
    watch_error = _watch_error()

    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self, "command_stack", True):
            return original(self, *args, **kwargs)  # nothing to send: no round trip
        result = "error"
        start = _perf_counter()
        try:
            response = original(self, *args, **kwargs)
            result = "ok"
            return response
        except watch_error:
            result = "ok"
            raise
        finally:
            _record(self, PIPELINE, result, _perf_counter() - start)

    return execute


def _timed_async_pipeline(original: Any) -> Any:
    watch_error = _watch_error()

    async def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self, "command_stack", True):
            return await original(self, *args, **kwargs)
        result = "error"
        start = _perf_counter()
        try:
            response = await original(self, *args, **kwargs)
            result = "ok"
            return response
        except watch_error:
            result = "ok"
            raise
        finally:
            _record(self, PIPELINE, result, _perf_counter() - start)

    return execute


def _in_a_trace() -> bool:
    """Whether a recorded span is current (the command's span would be its child)."""
    from opentelemetry import trace

    return trace.get_current_span().is_recording()


def _gated(original: Any) -> Any:
    from django_observability.tracing.api import end_suppression, suppress_spans

    def gate(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _in_a_trace():
            return original(self, *args, **kwargs)
        token = suppress_spans()
        try:
            return original(self, *args, **kwargs)
        finally:
            end_suppression(token)

    return gate


def _gated_async(original: Any) -> Any:
    from django_observability.tracing.api import end_suppression, suppress_spans

    async def gate(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _in_a_trace():
            return await original(self, *args, **kwargs)
        token = suppress_spans()
        try:
            return await original(self, *args, **kwargs)
        finally:
            end_suppression(token)

    return gate


def _targets() -> list[tuple[type, str, Any, Any]]:
    """(class, method name, our timing wrapper, our gate) for each method a command goes through."""
    import redis.client

    targets: list[tuple[type, str, Any, Any]] = [
        (redis.client.Redis, "execute_command", _timed_command, _gated),
        (redis.client.Pipeline, "execute", _timed_pipeline, _gated),
    ]
    try:
        import redis.asyncio.client as aio
    except ImportError:  # pragma: no cover - redis-py without asyncio support
        return targets
    targets += [
        (aio.Redis, "execute_command", _timed_async_command, _gated_async),
        (aio.Pipeline, "execute", _timed_async_pipeline, _gated_async),
    ]
    return targets


def wrap_redis() -> None:
    """Time redis-py's commands and pipelines (sync and async) for our metric, once."""
    for cls, name, wrap, _gate in _targets():
        if (cls, name) in _originals:
            continue
        original = getattr(cls, name)  # the instrumentation's wrapper, if it came first
        wrapper = wrap(original)
        _originals[(cls, name)] = (cls.__dict__.get(name), wrapper)
        setattr(cls, name, wrapper)


def gate_redis() -> None:
    """No command span outside a recorded span: a gate around the instrumentation's wrappers."""
    for cls, name, _timing, gated in _targets():
        if (cls, name) in _gates:
            continue
        gate = gated(getattr(cls, name))
        _gates[(cls, name)] = (cls.__dict__.get(name), gate)
        setattr(cls, name, gate)


def _ungate_redis() -> None:
    for (cls, name), (original, gate) in list(_gates.items()):
        if cls.__dict__.get(name) is gate:
            setattr(cls, name, original)
        del _gates[(cls, name)]


def unwrap_redis() -> None:
    """Undo :func:`wrap_redis` where our wrapper is still the method (for tests)."""
    for (cls, name), (original, wrapper) in list(_originals.items()):
        if cls.__dict__.get(name) is wrapper:
            if original is None:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
        del _originals[(cls, name)]


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
        instrumentor.instrument(tracer_provider=provider_override())
        _spans_enabled = True
        gate_redis()  # after it: around its wrappers
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
    _ungate_redis()  # first: the gates are around its wrappers, which are around ours
    if _spans_enabled:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor().uninstrument()
        _spans_enabled = False
    unwrap_redis()
