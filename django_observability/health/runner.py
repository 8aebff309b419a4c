"""Run health checks so that no check can hang a probe.

* Every check runs on one long-lived, bounded thread pool (made per process,
  again after a fork), never on the request's thread nor on Django's
  thread-sensitive executor, so a hung check blocks nobody else.
* All checks of one evaluation start together; each has its own timeout and
  the evaluation a deadline. A check past its timeout is reported ``fail``
  ("timed out") and the answer goes out on time.
* A check still running from an earlier call is not started again: later
  callers wait for the same run (or, once it is past its timeout, are told at
  once that it timed out). Threads and database connections stay bounded.
* A finished result is reused for ``OBSERVABILITY_HEALTH_CACHE_SECONDS``, so a
  storm of probes runs each check at most once per period.
* Database connections a check opens in a pool thread are closed after it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections

from django_observability.conf import valid_or_default
from django_observability.health.base import (
    FAIL,
    PASS,
    WARN,
    CheckResult,
    Component,
    HealthCheck,
    HealthError,
    HealthWarning,
    failure_output,
    is_async,
    to_components,
)
from django_observability.metrics import get_metrics
from django_observability.tracing import end_suppression, suppress_spans

logger = logging.getLogger("django_observability.health")


@dataclass
class CheckSpec:
    """A configured check: its name, the check object and its timeout."""

    name: str
    check: HealthCheck
    timeout: float


class _Run:
    __slots__ = ("future", "spec", "started")

    def __init__(self, spec: CheckSpec, future: concurrent.futures.Future[CheckResult]) -> None:
        self.spec = spec
        self.future = future
        self.started = time.monotonic()


def timed_out(spec: CheckSpec) -> CheckResult:
    return CheckResult(
        spec.name,
        [
            Component(
                status=FAIL,
                component_type=spec.check.component_type,
                output=f"timed out after {spec.timeout:g} s",
            )
        ],
        spec.timeout,
    )


def run_check(spec: CheckSpec) -> CheckResult:
    """Run one check in the calling (pool) thread and turn the outcome into a result."""
    check = spec.check
    error: BaseException | None = None
    start = time.perf_counter()
    # A check's queries and calls make no spans: a probe every few seconds
    # would otherwise start a trace of its own each time.
    no_spans = suppress_spans()
    try:
        if is_async(check):
            returned = asyncio.run(asyncio.wait_for(check.run(), spec.timeout))
        else:
            returned = check.run()
        components = to_components(check, returned)
    except HealthWarning as exc:
        components = [
            Component(status=WARN, component_type=check.component_type, output=str(exc) or None)
        ]
    except HealthError as exc:
        components = [
            Component(status=FAIL, component_type=check.component_type, output=str(exc) or None)
        ]
    except TimeoutError:
        components = timed_out(spec).components
    except Exception as exc:
        error = exc
        components = [
            Component(status=FAIL, component_type=check.component_type, output=failure_output(exc))
        ]
    finally:
        # Connections opened in this pool thread belong to nobody else: close
        # them rather than leave one per thread open.
        try:
            connections.close_all()
        except Exception:
            logger.debug("closing database connections after a check failed", exc_info=True)
        end_suppression(no_spans)
    duration = time.perf_counter() - start
    if duration > spec.timeout:
        return CheckResult(spec.name, timed_out(spec).components, duration)
    return CheckResult(spec.name, components, duration, error)


class DaemonPool:
    """A bounded pool of daemon threads, handing out ``concurrent.futures.Future``.

    Not ``ThreadPoolExecutor``: Python waits for its threads at exit, so one
    hung check would hold up a worker's shutdown (and ``manage.py health``)
    until the check returned. These threads die with the process.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn, args))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if len(self._threads) < self._max:
                    thread = threading.Thread(
                        target=self._work,
                        name=f"{self._name}_{len(self._threads)}",
                        daemon=True,
                    )
                    self._threads.append(thread)
                    thread.start()
        return future

    def _work(self) -> None:
        while True:
            future, fn, args = self._queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            del future, fn, args
            self._idle.release()


class Runner:
    """The per-process state: pool, runs in flight and recent results."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._executor: DaemonPool | None = None
        self._running: dict[str, _Run] = {}
        self._results: dict[str, tuple[float, CheckResult]] = {}

    def _pool(self) -> DaemonPool:
        if self._pid != os.getpid():
            # Forked: the parent's threads did not come along.
            self._pid = os.getpid()
            self._executor = None
            self._running.clear()
        if self._executor is None:
            self._executor = DaemonPool(
                valid_or_default("HEALTH_MAX_THREADS"), "observability-health"
            )
        return self._executor

    def _start(self, specs: Sequence[CheckSpec]) -> tuple[dict[str, CheckResult], list[_Run]]:
        """Results available now, and the runs to wait for (started if need be)."""
        now = time.monotonic()
        ready: dict[str, CheckResult] = {}
        waiting: list[_Run] = []
        started: list[_Run] = []
        with self._lock:
            pool = self._pool()
            for spec in specs:
                cached = self._results.get(spec.name)
                if cached is not None and cached[0] > now:
                    ready[spec.name] = cached[1]
                    continue
                run = self._running.get(spec.name)
                if run is None:
                    run = _Run(spec, pool.submit(run_check, spec))
                    self._running[spec.name] = run
                    started.append(run)
                elif now - run.started >= spec.timeout:
                    # Still running from an earlier call, and already late.
                    ready[spec.name] = timed_out(spec)
                    continue
                waiting.append(run)
        # Outside the lock: a run that already finished calls back at once.
        for run in started:
            run.future.add_done_callback(lambda _, run=run: self._finished(run))
        return ready, waiting

    def _finished(self, run: _Run) -> None:
        try:
            result = run.future.result()
        except BaseException as exc:  # run_check catches everything; belt and braces
            result = CheckResult(
                run.spec.name, [Component(status=FAIL, output=failure_output(exc))], 0.0
            )
        ttl = valid_or_default("HEALTH_CACHE_SECONDS")
        with self._lock:
            if self._running.get(run.spec.name) is run:
                del self._running[run.spec.name]
            self._results[run.spec.name] = (time.monotonic() + ttl, result)
        _record(result)

    def _collect(
        self, ready: dict[str, CheckResult], waiting: list[_Run]
    ) -> dict[str, CheckResult]:
        for run in waiting:
            if run.future.done():
                ready[run.spec.name] = run.future.result()
            else:
                result = timed_out(run.spec)
                ready[run.spec.name] = result
                _record(result)
        return ready

    def _wait_seconds(self, waiting: list[_Run], started: float) -> float:
        deadline = started + valid_or_default("HEALTH_DEADLINE")
        cutoff = max((run.started + run.spec.timeout for run in waiting), default=started)
        return max(0.0, min(cutoff, deadline) - time.monotonic())

    def evaluate(self, specs: Sequence[CheckSpec]) -> list[CheckResult]:
        """Run (or reuse) the checks; blocks at most until the deadline."""
        started = time.monotonic()
        ready, waiting = self._start(specs)
        if waiting:
            concurrent.futures.wait(
                [run.future for run in waiting], timeout=self._wait_seconds(waiting, started)
            )
        results = self._collect(ready, waiting)
        return [results[spec.name] for spec in specs]

    async def aevaluate(self, specs: Sequence[CheckSpec]) -> list[CheckResult]:
        """As :meth:`evaluate`, without blocking the event loop."""
        started = time.monotonic()
        ready, waiting = self._start(specs)
        if waiting:
            await _wait_all([run.future for run in waiting], self._wait_seconds(waiting, started))
        results = self._collect(ready, waiting)
        return [results[spec.name] for spec in specs]

    def clear(self) -> None:
        """Forget cached results (runs in flight go on)."""
        with self._lock:
            self._results.clear()


async def _wait_all(futures: list[concurrent.futures.Future[CheckResult]], timeout: float) -> None:
    """Wait for pool futures from a coroutine, at most ``timeout`` seconds.

    Not asyncio.wrap_future: a run that outlives the wait would later call
    back into this event loop, which under WSGI (async_to_sync) is closed by
    then. Here a late callback finds the loop closed and does nothing.
    """
    loop = asyncio.get_running_loop()
    all_done = asyncio.Event()
    lock = threading.Lock()
    remaining = [len(futures)]

    def one_done(_: object) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed in the meantime
                loop.call_soon_threadsafe(all_done.set)

    for future in futures:
        future.add_done_callback(one_done)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), timeout)


_last_status: dict[str, str] = {}


def _record(result: CheckResult) -> None:
    """Update the check's gauges; log when its status changes (not on every probe)."""
    status = result.status
    previous = _last_status.get(result.name)
    if status != previous:
        _last_status[result.name] = status
        if status == PASS:
            if previous is not None:
                logger.info("health check %r passes again", result.name)
        else:
            outputs = "; ".join(c.output for c in result.components if c.output)
            logger.warning(
                "health check %r: %s%s",
                result.name,
                status,
                f" ({outputs})" if outputs else "",
                exc_info=result.error,
            )
    try:
        metrics = get_metrics()
        if metrics is not None:
            metrics.record_health(result.name, result.status, result.duration)
    except Exception:
        logger.exception("could not record the health check metrics")


runner = Runner()


def reset() -> None:
    """Forget the cached results, so the next evaluation runs the checks afresh.

    This module's reset path, called when an ``OBSERVABILITY_HEALTH_*`` setting
    changes (the checks, their timeouts or the cache time may differ now).
    """
    runner.clear()
