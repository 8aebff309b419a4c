"""Spans for Celery tasks: OpenTelemetry's Celery instrumentation, enabled when tracing is on.

``opentelemetry-instrumentation-celery`` makes a producer span where a task
is enqueued (``apply_async/<task>``), injects the W3C trace context into the
message headers, and makes the worker's consumer span (``run/<task>``) a
child of it; the task's database queries (``db.py``) are children of the
consumer span since it is the current span while the task runs. We add what
it lacks through Celery's signals (``tasks/celery.py``: the request id, the
metrics and the log fields), never a second span.

:func:`instrument` enables it once, when a TracerProvider is in use (ours
from the settings, or one installed by the project) and nobody enabled it
before (the ``opentelemetry-instrument`` agent does it itself). It also makes
each prefork child export its last spans when it exits: billiard ends a
child with ``os._exit()``, so the ``atexit`` flush never runs there
(``--max-tasks-per-child`` replaces children all the time).
"""

from __future__ import annotations

import logging
from typing import Any

from django_observability.faults import fault
from django_observability.tracing.api import provider_override
from django_observability.tracing.exit_flush import flush_on_exit

logger = logging.getLogger("django_observability.tracing")

__all__ = ["instrument", "instrumented"]

_instrumented_here = False


def _provider() -> Any:
    """The provider in use, or ``None`` when tracing is off (the API's no-op proxy)."""
    override = provider_override()
    if override is not None:
        return override
    from opentelemetry import trace
    from opentelemetry.trace import ProxyTracerProvider

    current = trace.get_tracer_provider()
    return None if isinstance(current, ProxyTracerProvider) else current


def instrument() -> bool:
    """Enable the Celery instrumentation if tracing is on; whether it is enabled now.

    ``False`` without Celery or its instrumentation package, or when tracing
    is off (no provider: the instrumentation would cost time for spans that
    go nowhere).
    """
    global _instrumented_here
    try:
        from celery import signals
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
    except ImportError:
        return False
    try:
        instrumentor = CeleryInstrumentor()  # one instance per process (a singleton)
        if instrumentor.is_instrumented_by_opentelemetry:
            return True
        provider = _provider()
        if provider is None:
            return False
        instrumentor.instrument(tracer_provider=provider)
        signals.worker_process_shutdown.connect(
            _flush_child, weak=False, dispatch_uid="django_observability.tracing.celery"
        )
        _instrumented_here = True
        logger.debug("tracing: Celery tasks traced")
        return True
    except Exception:
        fault("tracing.celery")
        return False


def instrumented() -> bool:
    """Whether :func:`instrument` enabled the instrumentation in this process."""
    return _instrumented_here


def uninstrument() -> None:
    """Undo :func:`instrument` (for tests)."""
    global _instrumented_here
    if not _instrumented_here:
        return
    from celery import signals
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().uninstrument()
    signals.worker_process_shutdown.disconnect(
        _flush_child, dispatch_uid="django_observability.tracing.celery"
    )
    _instrumented_here = False


def _flush_child(**kwargs: Any) -> None:
    """``worker_process_shutdown``: a prefork child exports its last spans before it goes."""
    try:
        flush_on_exit()
    except Exception:
        fault("tracing.celery.flush")
