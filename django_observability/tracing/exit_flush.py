"""The bounded flush at exit: a process's last spans, exported within a time limit.

:func:`flush_on_exit` flushes the provider :func:`watch` was handed (the one
:func:`~django_observability.tracing.provider.setup` installed).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from django_observability.tracing.environment import exit_timeout, warn_once
from django_observability.tracing.processor import PerProcessSpanProcessor, processors_of

logger = logging.getLogger("django_observability.tracing")

__all__ = ["flush_on_exit", "reset", "watch", "watched"]

_provider: Any = None  # the provider to flush: the one setup() installed
_exit_lock = threading.Lock()
_exit_pid = 0  # the process that has flushed (a child forked from it has not)
_exit_result = True


def _new_exit_lock() -> None:
    # A fork while another thread held the lock would leave the child's copy held.
    global _exit_lock
    _exit_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_exit_lock)


def watch(provider: Any) -> None:
    """Make ``provider`` the one :func:`flush_on_exit` flushes."""
    global _provider
    _provider = provider


def watched() -> Any:
    """The provider :func:`flush_on_exit` flushes, or ``None``."""
    return _provider


def reset() -> None:
    """Forget the provider and that this process flushed: the next flush runs again (tests)."""
    global _provider, _exit_pid, _exit_result
    _provider, _exit_pid, _exit_result = None, 0, True


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
        warn_once(
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
    provider = _provider
    if provider is None:
        return True  # nothing of ours in this process
    budget = _budget(timeout)
    started = time.monotonic()
    ours = [p for p in processors_of(provider) if p.active]
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
