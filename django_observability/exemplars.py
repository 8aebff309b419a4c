"""Exemplars in Prometheus multiprocess mode.

prometheus_client keeps no exemplars in multiprocess mode: its per-process
``.db`` files hold numbers only. So each process that serves requests keeps
the latest exemplar of each bucket of each request-duration series itself and
writes them, at most once per :data:`WRITE_INTERVAL`, to a small file of its
own beside prometheus_client's (``exemplars_<pid>.json`` in
``PROMETHEUS_MULTIPROC_DIR``). ``/metrics`` reads every process's file and puts
the newest exemplar of each bucket on the aggregated buckets, so an
OpenMetrics scrape of a gunicorn master's workers carries trace ids as a
single process's does.

Files not written for :data:`MAX_AGE` seconds are removed when read (their
exemplars are long scraped; a dead worker's file would otherwise stay), so the
directory does not fill up as workers are replaced.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar

logger = logging.getLogger("django_observability.metrics")

# Seconds between two writes of one process's file (exemplars arriving in
# between are written with the next one).
WRITE_INTERVAL = 1.0
# A file older than this is ignored and removed by the reader.
MAX_AGE = 300.0
PREFIX = "exemplars_"
SUFFIX = ".json"

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")

# (method, route, status, le) -> (trace id, span id, value, unix time)
_Entries = dict[tuple[str, str, str, str], tuple[str, str, float, float]]


class SharedExemplars:
    """This process's latest exemplar per bucket of each series, written to its file."""

    def __init__(self, directory: str, metric: str) -> None:
        self.directory = directory
        self.metric = metric
        self._entries: _Entries = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.dirty = False
        self.write_due = 0.0  # monotonic time of the next allowed write
        # What arrived since the last write is written when the process exits.
        atexit.register(self.write, math.inf)

    def record(
        self,
        key: tuple[str, str, str],
        le: str,
        trace_id: str,
        span_id: str,
        value: float,
        now: float,
    ) -> None:
        """Keep an exemplar; write the file if the last write is old enough."""
        pid = os.getpid()
        with self._lock:
            if pid != self._pid:
                # Forked: what the parent kept is the parent's to write.
                self._entries = {}
                self._pid = pid
                self.write_due = 0.0
            self._entries[(*key, le)] = (trace_id, span_id, value, time.time())
            self.dirty = True
        if now >= self.write_due:
            self.write(now)

    def write(self, now: float) -> None:
        """Write the file now (atomically: readers see the old file or the new one)."""
        with self._lock:
            if not self.dirty or os.getpid() != self._pid:
                return
            rows = [[*key, *value] for key, value in self._entries.items()]
            self.dirty = False
            self.write_due = now + WRITE_INTERVAL
            pid = self._pid
        path = os.path.join(self.directory, f"{PREFIX}{pid}{SUFFIX}")
        temporary = f"{path}.{threading.get_ident()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as fh:
                json.dump({"metric": self.metric, "exemplars": rows}, fh, separators=(",", ":"))
            os.replace(temporary, path)
        except OSError:
            logger.warning("django_observability: could not write %s", path, exc_info=True)
            with self._lock:
                self.dirty = True


def _valid(row: Any) -> bool:
    if not isinstance(row, list) or len(row) != 8:
        return False
    method, route, status, le, trace_id, span_id, value, when = row
    return (
        all(isinstance(part, str) for part in (method, route, status, le, trace_id, span_id))
        and _TRACE_ID.fullmatch(trace_id) is not None
        and _SPAN_ID.fullmatch(span_id) is not None
        and isinstance(value, int | float)
        and isinstance(when, int | float)
        and math.isfinite(value)
        and math.isfinite(when)
    )


def read(directory: str, metric: str, now: float | None = None) -> _Entries:
    """The newest exemplar of each bucket of ``metric`` over every process's file."""
    now = time.time() if now is None else now
    merged: _Entries = {}
    try:
        names = [n for n in os.listdir(directory) if n.startswith(PREFIX) and n.endswith(SUFFIX)]
    except OSError:
        return merged
    for name in names:
        path = os.path.join(directory, name)
        try:
            if now - os.stat(path).st_mtime > MAX_AGE:
                os.unlink(path)
                continue
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            continue  # removed meanwhile, or not ours to read
        if not isinstance(data, dict) or data.get("metric") != metric:
            continue
        rows = data.get("exemplars")
        if not isinstance(rows, list):
            continue
        for row in rows:
            if not _valid(row):
                continue
            key = (row[0], row[1], row[2], row[3])
            entry = (row[4], row[5], float(row[6]), float(row[7]))
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
    """A collector: prometheus_client's ``MultiProcessCollector`` plus our exemplars."""

    def __init__(self, directory: str, metric: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self._inner = MultiProcessCollector(None, path=directory)
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
