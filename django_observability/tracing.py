"""OpenTelemetry tracing from Django settings, fork-safe, and helpers.

:func:`setup` (called from ``AppConfig.ready()``) installs a TracerProvider
built from the ``OBSERVABILITY_TRACING_*`` settings, unless one is installed
already (the ``opentelemetry-instrument`` agent's, or the project's own), in
which case that one is used. It is idempotent.

Fork safety: the exporter (an HTTP session, a gRPC channel) is made in the
process that exports, on its first span, never inherited across ``fork()``.
So spans arrive from every gunicorn worker with or without ``--preload``.

The middleware and the database instrumentation use the OpenTelemetry *API*
only: they make real spans whenever any SDK provider is installed and cost
next to nothing when none is.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import mmap
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from django_observability.conf import DEFAULT_TRACING_EXIT_TIMEOUT, conf, valid_or_default
from django_observability.formats import hex_ids

logger = logging.getLogger("django_observability.tracing")

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the dependency is declared
    trace = None  # type: ignore[assignment]
    otel_context = None  # type: ignore[assignment]

INSTRUMENTATION_NAME = "django_observability"
SEMCONV_SCHEMA_URL = "https://opentelemetry.io/schemas/1.33.0"

EXPORTERS = ("none", "console", "otlp")
PROTOCOLS = ("http/protobuf", "grpc")

_lock = threading.Lock()
_installed_provider: Any = None


# --- settings, with the OTEL_* environment as fallback --------------------------------


_warned: set[str] = set()


def _warn_once(message: str, *args: Any) -> None:
    key = message % args
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true``: the SDK records nothing, so we install nothing."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def exporter_names() -> tuple[str, ...]:
    """Where spans go: ``()`` for nowhere, else ``"console"`` and/or ``"otlp"``.

    The setting names one exporter and wins. Unset, ``OTEL_TRACES_EXPORTER``
    applies, which may list several (``otlp,console``); names we do not
    support (``zipkin``...) are left out with a warning.
    """
    value = valid_or_default("TRACING_EXPORTER")
    if value is not None:
        value = value.lower()
        return () if value == "none" else (value,)
    names: list[str] = []
    for item in os.environ.get("OTEL_TRACES_EXPORTER", "").split(","):
        name = item.strip().lower()
        if not name or name == "none" or name in names:
            continue
        if name not in EXPORTERS:
            _warn_once(
                "OTEL_TRACES_EXPORTER names %r, which django-observability does not support "
                "(supported: console, otlp, none); left out",
                name,
            )
            continue
        names.append(name)
    return tuple(names)


def otlp_protocol() -> str:
    value = valid_or_default("TRACING_OTLP_PROTOCOL")
    if value is None:
        value = (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
    value = value.strip().lower()
    if value not in PROTOCOLS:
        _warn_once("OTLP protocol %r is not supported; using http/protobuf", value)
        return "http/protobuf"
    return value


def otlp_endpoint(protocol: str) -> str | None:
    """Where spans go: the setting (a base URL) wins over the environment.

    For OTLP/HTTP, ``/v1/traces`` is appended to a base URL, as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` specifies; ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    is used as it is. ``None`` lets the exporter pick its default.
    """
    base = valid_or_default("TRACING_OTLP_ENDPOINT")
    if base is None:
        full = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if full:
            return full
        base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not base:
            return None
    if protocol == "grpc":
        return base
    return base.rstrip("/") + "/v1/traces"


# Seconds, when neither the setting nor the environment says.
DEFAULT_EXPORT_TIMEOUT = 5.0
_TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


def export_timeout() -> float:
    """Seconds one export may take: the setting, else the OTLP timeout variables.

    ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` then ``OTEL_EXPORTER_OTLP_TIMEOUT``,
    read in seconds as opentelemetry-python's exporters read them. A value
    that is not a positive number is logged and replaced by the default.
    """
    value = valid_or_default("TRACING_EXPORT_TIMEOUT")
    if value is not None:
        return float(value)
    for name in _TIMEOUT_VARIABLES:
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if 0 < seconds < math.inf:
            return seconds
        _warn_once(
            "%s=%r is not a positive number of seconds; exports time out after %s s",
            name,
            raw,
            DEFAULT_EXPORT_TIMEOUT,
        )
        return DEFAULT_EXPORT_TIMEOUT
    return DEFAULT_EXPORT_TIMEOUT


_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
_OFF_SAMPLERS = ("always_off", "parentbased_always_off")
_ON_SAMPLERS = ("always_on", "parentbased_always_on")


def sample_ratio() -> float:
    """Share of new traces sampled (always parent-based: a sampled parent is followed).

    The setting wins. Unset, ``OTEL_TRACES_SAMPLER`` applies: the ratio
    samplers take ``OTEL_TRACES_SAMPLER_ARG`` (a number from 0 to 1, else 1.0
    with a warning), the ``always_off`` samplers give 0, anything else 1.
    """
    value = valid_or_default("TRACING_SAMPLE_RATIO")
    if value is not None:
        return float(value)
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler in _OFF_SAMPLERS:
        return 0.0
    if sampler in _RATIO_SAMPLERS:
        raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        if not raw:
            return 1.0
        try:
            ratio = float(raw)
        except ValueError:
            ratio = math.nan
        if 0.0 <= ratio <= 1.0:
            return ratio
        _warn_once("OTEL_TRACES_SAMPLER_ARG=%r is not a ratio from 0 to 1; sampling all", raw)
        return 1.0
    if sampler and sampler not in _ON_SAMPLERS:
        _warn_once("OTEL_TRACES_SAMPLER=%r is not supported; sampling all (parent-based)", sampler)
    return 1.0


# --- how exports end, shared by the processes of one server ---------------------------

OUTCOME_NONE, OUTCOME_OK, OUTCOME_FAILED = 0, 1, 2
# One record per kind of exporter: each kind sends to its own place.
_OUTCOME_SLOTS = {"console": 0, "otlp": 1}
_OTHER_SLOT = 2
# A failure older than this is forgotten: the next exit tries the collector
# again (within its bound). Workers that never live long enough to export on
# the batch processor's schedule would otherwise never find out it is back.
FAILURE_MEMORY = 10.0  # seconds


class _SharedOutcomes:
    """How, and when, the last finished export of each kind of exporter ended.

    The records live in an anonymous shared mapping made when this module is
    imported. gunicorn imports it in the master (``--preload``, or a
    ``gunicorn.conf.py`` that imports it), so every worker forked later reads
    and writes the same records: a worker replacing one that found the
    collector silent knows it at once, though its own first export would come
    seconds later. Otherwise each process knows its own exports only.

    A record is an outcome byte and a ``time.monotonic()`` reading (the same
    clock in every process of a machine), written without a lock across
    processes: a read that races a write can only change whether one exit
    waits, never for how long.
    """

    _RECORD = struct.Struct("<B7xd")  # outcome, padding, when

    def __init__(self, slots: int = 4) -> None:
        size = self._RECORD.size * slots
        self._bytes: mmap.mmap | bytearray
        try:
            self._bytes = mmap.mmap(-1, size)  # MAP_SHARED | MAP_ANONYMOUS on POSIX
        except (OSError, ValueError):  # pragma: no cover - no anonymous mappings here
            self._bytes = bytearray(size)

    def get(self, slot: int) -> tuple[int, float]:
        """(outcome, when) of the slot's last finished export."""
        outcome, when = self._RECORD.unpack_from(self._bytes, slot * self._RECORD.size)
        return outcome, when

    def set(self, slot: int, outcome: int) -> None:
        self._RECORD.pack_into(self._bytes, slot * self._RECORD.size, outcome, time.monotonic())

    def failed_recently(self, slot: int) -> bool:
        outcome, when = self.get(slot)
        return outcome == OUTCOME_FAILED and time.monotonic() - when < FAILURE_MEMORY

    def clear(self) -> None:
        self._bytes[:] = bytes(len(self._bytes))


_outcomes = _SharedOutcomes()


class _RecordingExporter:
    """The exporter a process made, remembering how each of its exports ended.

    A result other than ``SUCCESS`` (the OTLP exporters return ``FAILURE``
    once their timeout has passed) and an exception both count as failed.
    ``wake`` is set when an export fails, so that a flush at exit waiting
    for this exporter stops at once instead of waiting for the next batch.
    """

    def __init__(self, exporter: Any, slot: int) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.exporter = exporter
        self.slot = slot
        self.in_flight = 0  # spans in exports that have not returned yet
        self.failed_spans = 0  # spans of this process's exports that failed
        self.wake: threading.Event | None = None
        self._success = SpanExportResult.SUCCESS
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        count = len(spans)
        with self._lock:
            self.in_flight += count
        succeeded = False
        try:
            result = self.exporter.export(spans)
            succeeded = result == self._success
            return result
        finally:
            # The outcome first: once in_flight drops, the outcome is known.
            _outcomes.set(self.slot, OUTCOME_OK if succeeded else OUTCOME_FAILED)
            with self._lock:
                self.in_flight -= count
                if not succeeded:
                    self.failed_spans += count
            wake = self.wake
            if not succeeded and wake is not None:
                wake.set()

    def shutdown(self, timeout_millis: float | None = None) -> None:
        # The batch processor passes what is left of its own timeout to
        # exporters whose shutdown takes one (the gRPC exporter's does).
        if timeout_millis is not None and _accepts_timeout(self.exporter.shutdown):
            self.exporter.shutdown(timeout_millis=timeout_millis)
        else:
            self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))


def _accepts_timeout(method: Callable[..., Any]) -> bool:
    import inspect

    try:
        return "timeout_millis" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


# --- the provider ------------------------------------------------------------------


class PerProcessSpanProcessor:
    """A BatchSpanProcessor whose exporter is made in the process that exports.

    ``make_exporter`` runs on the first span a process ends; after a fork the
    child makes its own (the parent's HTTP connections and gRPC channels are
    not usable there). ``name`` (``"otlp"``, ``"console"``) says which shared
    record of export outcomes the process's exports update.
    """

    def __init__(
        self, make_exporter: Callable[[], Any], *, name: str = "", **batch_options: Any
    ) -> None:
        self._make_exporter = make_exporter
        self._batch_options = batch_options
        self._slot = _OUTCOME_SLOTS.get(name, _OTHER_SLOT)
        self._pid = 0
        self._processor: Any = None
        self._recorder: _RecordingExporter | None = None
        self._abandoned_in = 0  # pid of a process that gave up on this processor's spans
        self._lock = threading.Lock()

    def _current(self) -> Any:
        processor = self._processor
        if processor is not None and self._pid == os.getpid():
            return processor
        with self._lock:
            if self._processor is None or self._pid != os.getpid():
                from opentelemetry.sdk.trace.export import BatchSpanProcessor

                recorder = _RecordingExporter(self._make_exporter(), self._slot)
                self._processor = BatchSpanProcessor(recorder, **self._batch_options)
                self._recorder = recorder
                self._pid = os.getpid()
            return self._processor

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        try:
            self._current().on_end(span)
        except Exception:
            logger.exception("could not hand a span to the exporter")

    def shutdown(self) -> None:
        if self._abandoned_in == os.getpid():
            return  # flush_on_exit gave up on these spans: no export, no wait
        if self._processor is not None and self._pid == os.getpid():
            self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._processor is not None and self._pid == os.getpid():
            return bool(self._processor.force_flush(timeout_millis))
        return True

    # what flush_on_exit needs to know

    @property
    def active(self) -> bool:
        """Whether this process has handed this processor a span (and so made an exporter)."""
        return self._processor is not None and self._pid == os.getpid()

    @property
    def last_export_failed(self) -> bool:
        """Whether the last export that finished, in this process or a sibling, failed
        (less than :data:`FAILURE_MEMORY` seconds ago)."""
        return _outcomes.failed_recently(self._slot)

    def record_timeout(self) -> None:
        """A flush at exit ran out of time: for the next exits, a failed export."""
        _outcomes.set(self._slot, OUTCOME_FAILED)

    @property
    def recorder(self) -> _RecordingExporter | None:
        return self._recorder if self.active else None

    def abandon(self) -> None:
        """Make :meth:`shutdown` a no-op in this process: its spans are given up."""
        self._abandoned_in = os.getpid()

    def unexported(self) -> int:
        """Spans of this process not exported yet: queued, or in an export not finished."""
        recorder = self.recorder
        if recorder is None:
            return 0
        # The queue is the SDK's; read defensively, as its layout may change.
        queue = getattr(getattr(self._processor, "_batch_processor", None), "_queue", None)
        try:
            queued = len(queue) if queue is not None else 0
        except TypeError:
            queued = 0
        return queued + recorder.in_flight

    def shutdown_blocking(self, timeout: float) -> bool:
        """Shut down in the calling thread, joining the export thread ``timeout`` s at most.

        For where no thread can be started (``atexit`` on Python 3.12.0 and
        3.12.1): the SDK's batch processor takes a timeout there, though
        ``BatchSpanProcessor.shutdown()`` passes none (30 s). ``False`` when
        the SDK has no such method (nothing is done then).
        """
        if not self.active:
            return True
        inner = getattr(self._processor, "_batch_processor", None)
        shutdown = getattr(inner, "shutdown", None)
        if shutdown is None or not _accepts_timeout(shutdown):
            return False
        shutdown(timeout_millis=max(0.0, timeout) * 1000)
        return True


# build_provider() -> the processors it added, for flush_on_exit().
_our_processors: weakref.WeakKeyDictionary[Any, list[PerProcessSpanProcessor]] = (
    weakref.WeakKeyDictionary()
)


def _one_line(span: Any) -> str:
    return str(span.to_json(indent=None)) + "\n"


def _make_exporter(name: str) -> Callable[[], Any]:
    timeout = export_timeout()
    if name == "console":

        def console() -> Any:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            # One JSON object per line, like the logs it shares stdout with.
            return ConsoleSpanExporter(formatter=_one_line)

        return console
    protocol = otlp_protocol()
    endpoint = otlp_endpoint(protocol)
    if protocol == "grpc":

        def grpc() -> Any:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)

        return grpc

    def http() -> Any:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)

    return http


def build_provider(exporter: str | Sequence[str] | None = None) -> Any:
    """A TracerProvider from the settings (not installed anywhere).

    ``exporter`` (a name or several) overrides :func:`exporter_names`.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    # service.instance.id comes from the SDK's own detector, which makes it
    # again in each process after a fork (gunicorn --preload): one per worker.
    attributes = {"service.name": conf.SERVICE_NAME}
    if conf.SERVICE_VERSION:
        attributes["service.version"] = conf.SERVICE_VERSION
    if conf.ENVIRONMENT:
        attributes["deployment.environment.name"] = conf.ENVIRONMENT
    # Resource.create() merges OTEL_RESOURCE_ATTRIBUTES and the SDK's own
    # attributes; ours (from settings) win.
    resource = Resource.create(attributes)
    provider = TracerProvider(
        resource=resource,
        sampler=ParentBased(TraceIdRatioBased(sample_ratio())),
        shutdown_on_exit=False,  # we flush in our own atexit, once
    )
    if exporter is None:
        names: Sequence[str] = exporter_names()
    else:
        names = (exporter,) if isinstance(exporter, str) else exporter
    ours = _our_processors.setdefault(provider, [])
    for name in names:
        if name in ("console", "otlp"):
            # The batch processor's own options (queue size, batch size, delay)
            # come from the OTEL_BSP_* variables, or the SDK's defaults.
            processor = PerProcessSpanProcessor(_make_exporter(name), name=name)
            provider.add_span_processor(processor)
            ours.append(processor)
    return provider


def setup() -> Any:
    """Install a TracerProvider from the settings, once; returns the provider in use.

    Nothing is installed when the exporter is ``none`` (the default) and no
    provider exists: the API then stays a no-op and tracing costs nothing.
    A provider installed by someone else (the ``opentelemetry-instrument``
    agent, the project's own code) is used as it is.
    """
    global _installed_provider
    if trace is None:
        return None
    with _lock:
        current = trace.get_tracer_provider()
        if _installed_provider is not None or not isinstance(current, ProxyTracerProvider):
            return current
        names = exporter_names()
        if not names:
            return current
        if sdk_disabled():
            logger.info("tracing: OTEL_SDK_DISABLED is true; no spans are recorded")
            return current
        try:
            provider = build_provider(names)
            _set_propagators()
            trace.set_tracer_provider(provider)
        except Exception:
            logger.exception("tracing could not be set up; requests are served without it")
            return current
        _installed_provider = provider
        _cache.next_check = 0.0
        # Bounded like gunicorn's worker_exit hook; whichever runs first flushes.
        atexit.register(flush_on_exit)
        logger.info("tracing: exporting spans with %s", ", ".join(names))
        return provider


def _set_propagators() -> None:
    # W3C trace context and baggage, unless OTEL_PROPAGATORS says otherwise
    # (the API reads it itself when it is set).
    if os.environ.get("OTEL_PROPAGATORS"):
        return
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )


# --- the flush at exit -------------------------------------------------------------

_exit_lock = threading.Lock()
_exit_pid = 0  # the process that has flushed (a child forked from it has not)
_exit_result = True


def _new_exit_lock() -> None:
    # A fork while another thread held the lock would leave the child's copy held.
    global _exit_lock
    _exit_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_exit_lock)


def exit_timeout() -> float:
    """Seconds the flush at exit may wait in all: ``OBSERVABILITY_TRACING_EXIT_TIMEOUT``."""
    try:
        return float(valid_or_default("TRACING_EXIT_TIMEOUT"))
    except Exception:  # settings not configured (a process that never set Django up)
        return DEFAULT_TRACING_EXIT_TIMEOUT


def flush_on_exit(timeout: float | None = None) -> bool:
    """Export this process's last spans as it exits, waiting ``timeout`` seconds at most.

    For the provider :func:`setup` installed: its span processors are flushed
    and shut down, all of them within ``timeout`` seconds in total (default
    ``OBSERVABILITY_TRACING_EXIT_TIMEOUT``, 1 s; 0 waits for nothing).

    It does not wait at all for an exporter whose last finished export failed
    less than :data:`FAILURE_MEMORY` (10) seconds ago, in this process or in
    another worker forked from the same gunicorn master: its queued spans are
    dropped at once. A failed export is one that returned anything but
    ``SUCCESS`` (the OTLP exporters give up after their export timeout) or
    raised, and also a flush at exit that ran out of time: so under a silent
    collector one exiting worker waits the full time, and the workers exiting
    after it, its own replacement first, do not. An export that fails while
    it waits ends the wait. What is dropped, and why, is logged once, as a
    warning (no endpoint, no headers).

    gunicorn's ``worker_exit`` hook (``django_observability.gunicorn``) calls
    it; so does ``atexit``. Only the first call in a process does anything;
    later ones return its result. Never raises. Returns ``True`` when no span
    was lost (also when there was nothing to export), else ``False``.

    Why a bound: the SDK's own shutdown waits for the export in progress and
    then exports what is queued, one batch after another, each up to the
    export timeout (``BatchSpanProcessor.shutdown()`` joins its thread for up
    to 30 s). With a collector that accepts connections and never answers,
    that held every exiting gunicorn worker for twice the export timeout or
    more, and gunicorn does not replace a worker before it is gone. The
    shutdown runs in a daemon thread; once the time is up it is left behind,
    and it cannot keep the process alive.
    """
    global _exit_pid, _exit_result
    try:
        with _exit_lock:
            pid = os.getpid()
            if _exit_pid == pid:
                return _exit_result
            _exit_pid, _exit_result = pid, False
            _exit_result = _flush_within(timeout)
            return _exit_result
    except Exception:
        with contextlib.suppress(Exception):
            logger.exception("tracing: the flush at exit failed; unexported spans are dropped")
        return False


def _budget(timeout: float | None) -> float:
    if timeout is None:
        return exit_timeout()
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        seconds = math.nan
    if math.isnan(seconds) or seconds == math.inf:
        _warn_once(
            "flush_on_exit(timeout=%r) is not a number of seconds; using the setting", timeout
        )
        return exit_timeout()
    return max(0.0, seconds)


class _Flush:
    """One flush at exit: the shutdown thread, and what woke the caller up."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.wake = threading.Event()  # the shutdown finished, or an export failed
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            self.provider.shutdown()
        except Exception:
            logger.exception("tracing: shutting the span processors down failed")
        finally:
            self.finished.set()
            self.wake.set()

    def start(self) -> bool:
        """Start the shutdown in a daemon thread; ``False`` where no thread can start."""
        thread = threading.Thread(
            target=self.run, name="django-observability-exit-flush", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            # Python 3.12.0 and 3.12.1 refuse new threads once the interpreter
            # is shutting down, which includes atexit callbacks.
            return False
        return True


def _flush_within(timeout: float | None) -> bool:
    provider = _installed_provider
    if provider is None:
        return True  # nothing of ours in this process
    budget = _budget(timeout)
    started = time.monotonic()
    ours = [p for p in _our_processors.get(provider, ()) if p.active]
    given_up: list[PerProcessSpanProcessor] = []
    waiting: list[PerProcessSpanProcessor] = []
    for processor in ours:  # each outcome read once: a sibling may write it meanwhile
        (given_up if processor.last_export_failed else waiting).append(processor)
    reasons: list[str] = []
    dropped = 0
    if given_up:
        reasons.append("the last export failed")
    if waiting and budget <= 0:
        reasons.append("no time to wait (timeout 0)")
        given_up, waiting = ours, []
    for processor in given_up:
        dropped += processor.unexported()
        processor.abandon()

    recorders = [p.recorder for p in waiting if p.recorder is not None]
    failed_before = sum(r.failed_spans for r in recorders)
    flush = _Flush(provider)
    for recorder in recorders:
        recorder.wake = flush.wake
    # Not at all when every exporter of ours has failed; processors the project
    # added to our provider itself get the time when there is nothing of ours.
    wait = budget if waiting or not given_up else 0.0
    if flush.start():
        flush.wake.wait(wait)
        finished = flush.finished.is_set()
    else:
        finished = _flush_in_this_thread(waiting, started + wait)
    failed = sum(r.failed_spans for r in recorders) - failed_before
    if failed:
        reasons.append("an export failed at exit")
        dropped += failed
    if not finished and waiting:
        if not failed:
            reasons.append(f"the collector did not answer within {wait:g} s")
        for processor in waiting:
            unexported = processor.unexported()
            if unexported and not failed:
                # The export at exit timed out: the next workers to exit, this
                # one's replacement first, do not wait for it again.
                processor.record_timeout()
            dropped += unexported
            processor.abandon()
    for recorder in recorders:
        recorder.wake = None
    if dropped:
        logger.warning(
            "tracing: %s; %d spans dropped at exit (waited %.2f s of at most %g s, "
            "OBSERVABILITY_TRACING_EXIT_TIMEOUT)",
            " and ".join(reasons),
            dropped,
            time.monotonic() - started,
            budget,
        )
    return dropped == 0 and (finished or not waiting)


def _flush_in_this_thread(waiting: Sequence[PerProcessSpanProcessor], deadline: float) -> bool:
    """The bounded shutdown of our processors, for where no thread can start."""
    finished = True
    for processor in waiting:
        if not processor.shutdown_blocking(deadline - time.monotonic()):
            processor.abandon()
        if processor.unexported():
            finished = False
    return finished


# --- what the middleware and the helpers use -------------------------------------------


class _TracerCache:
    """The tracer of the provider in use, looked up again when the provider changes."""

    provider: Any = None
    tracer: Any = None
    override: Any = None
    next_check: float = 0.0


_cache = _TracerCache()


def use_tracer_provider(provider: Any) -> None:
    """Make the app's spans with ``provider`` instead of the global one (``None``: global).

    OpenTelemetry's global provider can be set only once per process; tests,
    and projects that keep a provider of their own, hand it in here.
    """
    _cache.override = provider
    _cache.provider = _cache.tracer = None
    _cache.next_check = 0.0


# How often the request path looks again for a provider installed later (by
# the project's own code or an agent) while it has none or the same one.
_RECHECK_SECONDS = 1.0


def get_tracer() -> Any:
    """Our tracer, or ``None`` while no SDK provider is installed (tracing off)."""
    if trace is None:
        return None
    now = time.monotonic()
    if now < _cache.next_check:
        return _cache.tracer
    _cache.next_check = now + _RECHECK_SECONDS
    provider = _cache.override or trace.get_tracer_provider()
    if provider is _cache.provider:
        return _cache.tracer
    tracer = None
    if not isinstance(provider, ProxyTracerProvider) and type(provider).__name__ != (
        "NoOpTracerProvider"
    ):
        from django_observability import __version__

        tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__, SEMCONV_SCHEMA_URL)
        if type(tracer).__name__ == "NoOpTracer":
            tracer = None  # an SDK provider under OTEL_SDK_DISABLED=true
    _cache.provider, _cache.tracer = provider, tracer
    return tracer


# OpenTelemetry's "suppress_instrumentation" context key: instrumentations make no
# span while it is set (the SDK's batch processor sets it while it exports, and
# opentelemetry-instrumentation's suppress_instrumentation() sets it).
_SUPPRESS_KEY: Any = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)


def spans_suppressed() -> bool:
    """Whether the current context asks instrumentation to make no spans.

    Set for requests that make no span (the app's own endpoints,
    ``OBSERVABILITY_EXCLUDE_PATHS``, ``@observability_exempt`` views) and for
    health checks, so their database queries and :func:`trace_operation`
    blocks do not start traces of their own.
    """
    if _SUPPRESS_KEY is None:
        return False
    return bool(otel_context.get_value(_SUPPRESS_KEY))


def suppress_spans() -> Any:
    """Set the suppression key in the current context; the token to ``detach``, or ``None``."""
    if _SUPPRESS_KEY is None:
        return None
    return otel_context.attach(otel_context.set_value(_SUPPRESS_KEY, True))


def end_suppression(token: Any) -> None:
    """Undo :func:`suppress_spans`."""
    if token is not None:
        otel_context.detach(token)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span as hex, if it is valid."""
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return hex_ids(context)


@contextlib.contextmanager
def trace_operation(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around a block of code; exceptions are recorded and re-raised.

    ``with trace_operation("charge card", **{"payment.provider": "acme"}):``
    Without a tracer provider it does nothing (and yields ``None``); nor in
    requests that make no span (excluded paths, ``@observability_exempt``
    views) or in health checks.
    """
    tracer = get_tracer()
    if tracer is None or spans_suppressed():
        yield None
        return
    with tracer.start_as_current_span(
        name, kind=SpanKind.INTERNAL, attributes=attributes, record_exception=True
    ) as span:
        yield span


_F = TypeVar("_F", bound=Callable[..., Any])


def traced(name: str | None = None, **attributes: Any) -> Callable[[_F], _F]:
    """Decorator: each call of the (sync or async) function runs in a span.

    ``@traced()`` names the span after the function's qualified name.
    """

    def decorate(func: _F) -> _F:
        span_name = name or f"{func.__module__}.{func.__qualname__}"
        import inspect

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with trace_operation(span_name, **attributes):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with trace_operation(span_name, **attributes):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def set_error(span: Any, exc: BaseException | None, error_type: str) -> None:
    """Mark a span failed, the semantic-convention way."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR))
    if exc is not None:
        span.record_exception(exc)


__all__ = [
    "flush_on_exit",
    "get_tracer",
    "setup",
    "trace_operation",
    "traced",
    "use_tracer_provider",
]
