"""Exemplars in Prometheus multiprocess mode.

prometheus_client keeps no exemplars in multiprocess mode: its per-process
``.db`` files hold numbers only. So each process that serves requests keeps
the latest exemplar of each bucket of each request-duration series itself, and
a daemon thread of that process writes them, at most once per
:data:`WRITE_INTERVAL` and only when something changed, to a small file of its
own beside prometheus_client's (``exemplars_<pid>.json`` in
``PROMETHEUS_MULTIPROC_DIR``). The request path only stores the exemplar in a
dict. ``/metrics``, when it answers in OpenMetrics (the only format that
carries exemplars), reads every process's file and puts the newest exemplar of
each bucket on the aggregated buckets, so a scrape of a gunicorn master's
workers carries trace ids as a single process's does.

Exemplars older than :data:`MAX_AGE` seconds are dropped (Prometheus has long
scraped them). A file older than that is skipped, and removed once its process
is gone, so the directory does not fill up as workers are replaced. Files in
the directory are read defensively: only regular files of a bounded size, only
well-formed rows, ids checked against their hex formats.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import re
import stat
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar

from django_observability.metrics_store import StoreCollector, alive

logger = logging.getLogger("django_observability.metrics")

# Seconds between two writes of one process's file.
WRITE_INTERVAL = 1.0
# Exemplars older than this are not written, and files older than this not read.
MAX_AGE = 300.0
# A file larger than this is not read.
MAX_FILE_BYTES = 4 * 1024 * 1024
PREFIX = "exemplars_"
SUFFIX = ".json"

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_FILE_NAME = re.compile(r"exemplars_([0-9]{1,10})\.json(\.tmp)?")

# (method, route, status, le) -> (trace id, span id, value, unix time)
_Entries = dict[tuple[str, str, str, str], tuple[str, str, float, float]]


class SharedExemplars:
    """This process's latest exemplar per bucket of each series, written by a thread."""

    def __init__(self, directory: str, metric: str) -> None:
        self.directory = directory
        self.metric = metric
        self._reset()
        this = weakref.WeakMethod(self._reset)

        def after_fork_in_child() -> None:
            method = this()
            if method is not None:
                method()

        # A forked child starts empty, with fresh locks and no writer thread:
        # what the parent kept is the parent's to write.
        os.register_at_fork(after_in_child=after_fork_in_child)
        # What arrived since the last write is written when the process exits.
        atexit.register(self.write)

    def _reset(self) -> None:
        self._entries: _Entries = {}
        self._lock = threading.Lock()  # the entries
        self._write_lock = threading.Lock()  # one write at a time
        self._pid = os.getpid()
        self._writer: threading.Thread | None = None
        self._warned = False
        self.dirty = False

    def record(
        self, key: tuple[str, str, str], le: str, trace_id: str, span_id: str, value: float
    ) -> None:
        """Keep an exemplar (the request path: a dict store, no I/O)."""
        with self._lock:
            self._entries[(*key, le)] = (trace_id, span_id, value, time.time())
            self.dirty = True
            if self._writer is None:
                self._writer = threading.Thread(
                    target=_write_every_interval,
                    args=(weakref.ref(self), self._pid),
                    name="django-observability-exemplars",
                    daemon=True,
                )
                self._writer.start()

    def write(self) -> None:
        """Write the file if anything changed (atomically: readers see old or new)."""
        with self._write_lock:
            with self._lock:
                if not self.dirty or os.getpid() != self._pid:
                    return
                oldest = time.time() - MAX_AGE
                self._entries = {k: v for k, v in self._entries.items() if v[3] >= oldest}
                rows = [[*key, *value] for key, value in self._entries.items()]
                self.dirty = False
            path = os.path.join(self.directory, f"{PREFIX}{self._pid}{SUFFIX}")
            temporary = path + ".tmp"
            text = json.dumps({"metric": self.metric, "exemplars": rows}, separators=(",", ":"))
            try:
                with open(temporary, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(temporary, path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                with self._lock:
                    self.dirty = True  # try again next time
                if not self._warned:
                    self._warned = True
                    logger.warning(
                        "django_observability: could not write exemplars to %s", path, exc_info=True
                    )


def _write_every_interval(ref: weakref.ref[SharedExemplars], pid: int) -> None:
    while True:
        time.sleep(WRITE_INTERVAL)
        store = ref()
        if store is None or os.getpid() != pid:
            return
        try:
            store.write()
        except Exception:
            logger.exception("django_observability: exemplar writer failed; it stops")
            return
        del store


def _load(path: str, pid: int, now: float) -> Any:
    """The parsed file, or ``None`` (too old, not a regular file, too large)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with open(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        if now - info.st_mtime > MAX_AGE:
            if not alive(pid):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            return None
        return json.loads(fh.read(MAX_FILE_BYTES + 1))


def _row(row: Any, now: float) -> tuple[tuple[str, str, str, str], tuple[str, str, float, float]]:
    """A valid row as (key, entry); raises ``ValueError`` otherwise."""
    if type(row) is not list or len(row) != 8:
        raise ValueError("not a row")
    method, route, status, le, trace_id, span_id, value, when = row
    if not all(type(part) is str for part in (method, route, status, le, trace_id, span_id)):
        raise ValueError("not strings")
    if _TRACE_ID.fullmatch(trace_id) is None or _SPAN_ID.fullmatch(span_id) is None:
        raise ValueError("not trace and span ids")
    if type(value) not in (int, float) or type(when) not in (int, float):
        raise ValueError("not numbers")
    value, when = float(value), float(when)  # OverflowError for huge ints: a ValueError too
    if not math.isfinite(value) or not now - MAX_AGE <= when <= now + 60:
        raise ValueError("out of range")
    return (method, route, status, le), (trace_id, span_id, value, when)


def read(directory: str, metric: str, now: float | None = None) -> _Entries:
    """The newest exemplar of each bucket of ``metric`` over every process's file."""
    now = time.time() if now is None else now
    merged: _Entries = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return merged
    for name in names:
        match = _FILE_NAME.fullmatch(name)
        if match is None:
            continue
        path = os.path.join(directory, name)
        pid = int(match.group(1))
        if match.group(2):  # a write that never finished (its process was killed)
            with contextlib.suppress(OSError):
                if now - os.lstat(path).st_mtime > MAX_AGE and not alive(pid):
                    os.unlink(path)
            continue
        try:
            data = _load(path, pid, now)
        except Exception:  # removed meanwhile, unreadable, not JSON...
            logger.debug("django_observability: skipped %s", path, exc_info=True)
            continue
        if type(data) is not dict or data.get("metric") != metric:
            continue
        rows = data.get("exemplars")
        if type(rows) is not list:
            continue
        for row in rows:
            try:
                key, entry = _row(row, now)
            except (ValueError, OverflowError):
                continue
            held = merged.get(key)
            if held is None or entry[3] > held[3]:
                merged[key] = entry
    return merged


def attach(families: Iterable[Metric], metric: str, entries: _Entries) -> list[Metric]:
    """``families`` with the exemplars of ``entries`` on ``metric``'s buckets."""
    out = []
    bucket = metric + "_bucket"
    for family in families:
        if entries and family.name == metric and family.type == "histogram":
            samples = []
            for sample in family.samples:
                if sample.name == bucket and sample.exemplar is None:
                    labels = sample.labels
                    entry = entries.get(
                        (
                            labels.get("method", ""),
                            labels.get("route", ""),
                            labels.get("status", ""),
                            labels.get("le", ""),
                        )
                    )
                    if entry is not None:
                        exemplar = Exemplar(
                            {"trace_id": entry[0], "span_id": entry[1]}, entry[2], entry[3]
                        )
                        sample = sample._replace(exemplar=exemplar)
                samples.append(sample)
            family.samples = samples
        out.append(family)
    return out


class MultiProcessWithExemplars:
    """A collector: the store's totals (``metrics_store.StoreCollector``) plus our exemplars."""

    def __init__(self, directory: str, metric: str) -> None:
        self._inner = StoreCollector(directory)
        self._directory = directory
        self._metric = metric

    def collect(self) -> list[Metric]:
        families = self._inner.collect()
        try:
            entries = read(self._directory, self._metric)
            return attach(families, self._metric, entries)
        except Exception:
            logger.exception("django_observability: could not read the workers' exemplars")
            return list(families)
