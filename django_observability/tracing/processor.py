"""The span processor made for gunicorn: one batch processor and exporter per process.

The exporter (an HTTP session, a gRPC channel) is made in the process that
exports, on its first span, never inherited across ``fork()``; each export's
outcome goes to the shared record of :mod:`~django_observability.tracing.outcomes`.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from django_observability.tracing import outcomes
from django_observability.tracing.outcomes import OUTCOME_FAILED, OUTCOME_OK

logger = logging.getLogger("django_observability.tracing")

__all__ = ["PerProcessSpanProcessor", "accepts_timeout", "adopt", "processors_of"]


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
            outcomes.record(self.slot, OUTCOME_OK if succeeded else OUTCOME_FAILED)
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
        if timeout_millis is not None and accepts_timeout(self.exporter.shutdown):
            self.exporter.shutdown(timeout_millis=timeout_millis)
        else:
            self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))


def accepts_timeout(method: Callable[..., Any]) -> bool:
    """Whether ``method`` takes a ``timeout_millis`` argument."""
    import inspect

    try:
        return "timeout_millis" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


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
        self._slot = outcomes.slot_for(name)
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
        return outcomes.failed_recently(self._slot)

    def record_timeout(self) -> None:
        """A flush at exit ran out of time: for the next exits, a failed export."""
        outcomes.record(self._slot, OUTCOME_FAILED)

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
        if shutdown is None or not accepts_timeout(shutdown):
            return False
        shutdown(timeout_millis=max(0.0, timeout) * 1000)
        return True


# provider -> the processors build_provider() added to it, for flush_on_exit().
_our_processors: weakref.WeakKeyDictionary[Any, list[PerProcessSpanProcessor]] = (
    weakref.WeakKeyDictionary()
)


def adopt(provider: Any, processor: PerProcessSpanProcessor) -> None:
    """Remember ``processor`` as one of ours on ``provider`` (for the flush at exit)."""
    _our_processors.setdefault(provider, []).append(processor)


def processors_of(provider: Any) -> list[PerProcessSpanProcessor]:
    """The processors of ours on ``provider``, in the order they were added."""
    return list(_our_processors.get(provider, ()))
