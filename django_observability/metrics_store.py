"""The multiprocess metrics store: ``PROMETHEUS_MULTIPROC_DIR`` kept fast, bounded and safe.

In Prometheus multiprocess mode every process writes its values to files of its
own (``counter_<pid>.db``, ``histogram_<pid>.db``, ``gauge_<mode>_<pid>.db``...)
and a scrape reads them all. prometheus_client never removes the counters and
histograms of a process that has exited, so a server that replaces its workers
(gunicorn's ``max_requests``, uvicorn restarting a worker) makes every scrape
slower and the directory larger without end. This module adds three things to
prometheus_client, reusing its file format, reader and collector:

Compaction
    The values of processes that no longer exist are merged into one archive
    file per kind (``counter_archive.db``, ``histogram_archive.db``...) and the
    processes' own files removed, so the number of files and the scrape time
    depend on the live workers only. Counters, histograms and summaries are
    added; ``sum``/``min``/``max``/``mostrecent`` gauges are merged by their
    mode; ``live*`` gauges of a dead process go (as ``mark_process_dead`` does)
    and so do ``all`` gauges, whose one series per pid would otherwise grow
    without bound. Totals are exact: a compaction and a scrape never run at the
    same time (a lock file, exclusive for compaction, shared for scrapes); the
    new archive is written beside the old one and renamed over it after a
    journal recorded what it absorbed, so a compaction cut short at any point
    leaves a directory a scrape reads correctly and the next compaction
    finishes or undoes. A pid reused by a new process is detected: files are
    moved aside first and the pid checked again, and a process that appeared
    meanwhile keeps its files.

Reserved space
    prometheus_client grows its files as sparse files and writes through
    ``mmap``; on a full file system the first write to a page that cannot be
    allocated kills the process with SIGBUS. :class:`StoreFile` reserves the
    space first (``posix_fallocate``), so a full or read-only file system is an
    ``OSError`` it catches: the value stays in memory, the failure is logged
    once, and everything kept is written when space returns.

State
    :func:`store_state` (free space, whether a file can be written, files and
    bytes) for the health check and the ``django_observability_metrics_store_*``
    gauges computed at scrape time, since a store that cannot be written cannot
    hold its own gauges.

Tested with prometheus_client 0.23 and 0.26 (the file format is the same in all
releases since 0.4); ``pyproject.toml`` caps the version below the next release.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import values
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

logger = logging.getLogger("django_observability.metrics")

ENVIRON = "PROMETHEUS_MULTIPROC_DIR"
LOCK_FILE = "compaction.lock"
JOURNAL = "compaction.journal"
ARCHIVE = "archive"
ASIDE = ".compacting"
NEW = ".new"
# Seconds a scrape waits for a compaction to finish, and a compaction for
# scrapes (each takes milliseconds; these only bound a stuck process).
READ_LOCK_TIMEOUT = 5.0
COMPACT_LOCK_TIMEOUT = 2.0
# Seconds between two attempts to store values that could not be stored.
RETRY_SECONDS = 1.0

# prometheus_client's per-process files: kind, optional gauge mode, pid.
_PROCESS_FILE = re.compile(
    r"(counter|histogram|summary|gauge_[a-z]+)_([0-9]{1,10})\.db(" + re.escape(ASIDE) + r")?"
)
_EXEMPLAR_FILE = re.compile(r"exemplars_([0-9]{1,10})\.json(\.tmp)?")
# Per-process gauge modes whose values survive their process, and how two merge.
_ADDED = frozenset({"counter", "histogram", "summary", "gauge_sum"})
_MERGED_GAUGES = frozenset({"gauge_min", "gauge_max", "gauge_mostrecent"})
_KEPT = _ADDED | _MERGED_GAUGES


def directory() -> str | None:
    """The store's directory (``PROMETHEUS_MULTIPROC_DIR``); ``None``: not multiprocess mode."""
    return os.environ.get(ENVIRON) or os.environ.get(ENVIRON.lower()) or None


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts)."""
    if pid <= 0:
        return True  # not a pid: never treat it as gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# --- writing: space reserved, failures kept in memory ----------------------------------

_INITIAL_SIZE = 1 << 16
_ENTRY_HEAD = struct.Struct("i")
_ENTRY_VALUE = struct.Struct("dd")


class _Failures:
    """Logs the first failure to store values and the recovery, once each, per process."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.lock = threading.Lock()

    def failed(self, path: str, exc: OSError) -> None:
        with self.lock:
            first = not self.failing
            self.failing.add(path)
        if first:
            logger.error(
                "django_observability: the metrics store cannot be written (%s: %s); "
                "requests are served, values are kept in memory and written when it can be "
                "written again",
                type(exc).__name__,
                exc.strerror or exc,
            )

    def recovered(self, path: str) -> None:
        with self.lock:
            if path not in self.failing:
                return
            self.failing.discard(path)
            last = not self.failing
        if last:
            logger.warning("django_observability: the metrics store is written again")


failures = _Failures()


def unstored() -> bool:
    """Whether this process holds values it could not write to the store."""
    return bool(failures.failing)


def _reserve(fd: int, size: int) -> None:
    # Allocate every page of the file now: a write through mmap to a page the
    # file system cannot give is a SIGBUS; an allocation that fails here is an
    # OSError (ENOSPC on a full tmpfs or disk).
    os.posix_fallocate(fd, 0, size)


class StoreFile(MmapedDict):
    """prometheus_client's ``MmapedDict`` that reserves its space and never raises.

    The format is prometheus_client's (see its docstring): a used-bytes header,
    then entries of key length, key, padding, value and timestamp. What differs:
    every byte of the file is allocated before it is mapped or grown; and when
    the file cannot be opened, allocated or grown, the values written are kept
    (``pending``) and stored at a later write, at most one attempt per
    :data:`RETRY_SECONDS`.
    """

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        # The parent's constructor maps a sparse file: not called on purpose.
        self._fname = filename
        self._f: Any = None
        self._m: Any = None
        self._capacity = 0
        self._used = 8
        self._positions: dict[str, int] = {}
        self._pending: dict[str, tuple[float, float]] = {}
        self._retry_at = 0.0
        try:
            self._open()
        except OSError as exc:
            self._retry_at = time.monotonic() + RETRY_SECONDS
            failures.failed(filename, exc)

    def _open(self) -> None:
        f = open(self._fname, "a+b")  # noqa: SIM115 - kept open for the mapping
        try:
            fd = f.fileno()
            capacity = os.fstat(fd).st_size
            if capacity < _INITIAL_SIZE:
                capacity = _INITIAL_SIZE
                f.truncate(capacity)
            _reserve(fd, capacity)
            m = mmap.mmap(fd, capacity, access=mmap.ACCESS_WRITE)
        except BaseException:
            f.close()
            raise
        used = _ENTRY_HEAD.unpack_from(m, 0)[0]
        positions: dict[str, int] = {}
        if used == 0:
            used = 8
            m[0:4] = _ENTRY_HEAD.pack(used)
        else:
            for key, _, _, pos in _entries(m, used):
                positions[key] = pos
        self._f, self._m, self._capacity, self._used = f, m, capacity, used
        self._positions = positions

    def _init_value(self, key: str) -> None:
        encoded = key.encode("utf-8")
        padded = encoded + (b" " * (8 - (len(encoded) + 4) % 8))
        entry = struct.pack(f"i{len(padded)}sdd", len(encoded), padded, 0.0, 0.0)
        needed = self._used + len(entry)
        if needed > self._capacity:
            capacity = self._capacity
            while needed > capacity:
                capacity *= 2
            fd = self._f.fileno()
            self._f.truncate(capacity)
            _reserve(fd, capacity)  # before the new pages are mapped
            old, self._m = self._m, mmap.mmap(fd, capacity, access=mmap.ACCESS_WRITE)
            self._capacity = capacity
            old.close()
        self._m[self._used : self._used + len(entry)] = entry
        self._used += len(entry)
        # Readers see the entry only once the header counts it.
        self._m[0:4] = _ENTRY_HEAD.pack(self._used)
        self._positions[key] = self._used - 16

    def _store_pending(self) -> bool:
        """Try to write the values kept in memory; ``True`` when none are left."""
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            if self._m is None:
                self._open()
            for key, (value, timestamp) in list(self._pending.items()):
                if key not in self._positions:
                    self._init_value(key)
                pos = self._positions[key]
                self._m[pos : pos + 16] = _ENTRY_VALUE.pack(value, timestamp)
                del self._pending[key]
        except OSError as exc:
            self._retry_at = now + RETRY_SECONDS
            failures.failed(self._fname, exc)
            return False
        failures.recovered(self._fname)
        return True

    def read_value(self, key: str) -> tuple[float, float]:
        pos = self._positions.get(key)
        if pos is None:
            held = self._pending.get(key)
            if held is not None:
                return held
            self._pending[key] = (0.0, 0.0)
            if not self._store_pending():
                return (0.0, 0.0)
            pos = self._positions[key]
        return _ENTRY_VALUE.unpack_from(self._m, pos)  # type: ignore[return-value]

    def write_value(self, key: str, value: float, timestamp: float) -> None:
        pos = self._positions.get(key)
        if pos is not None and self._m is not None:
            # Direct assignment: one copy of 16 bytes, never a transient zero.
            self._m[pos : pos + 16] = _ENTRY_VALUE.pack(value, timestamp)
            if self._pending:
                self._store_pending()
            return
        self._pending[key] = (value, timestamp)
        self._store_pending()

    def read_all_values(self) -> Iterator[tuple[str, float, float]]:
        if self._m is not None:
            for key, value, timestamp, _ in _entries(self._m, self._used):
                if key not in self._pending:
                    yield key, value, timestamp
        for key, (value, timestamp) in self._pending.items():
            yield key, value, timestamp

    def close(self) -> None:
        if self._m is not None:
            self._m.close()
            self._m = None
        if self._f is not None:
            self._f.close()
            self._f = None


def _entries(data: Any, used: int) -> Iterator[tuple[str, float, float, int]]:
    """(key, value, timestamp, value position) of each entry; raises on a damaged file."""
    pos = 8
    size = len(data)
    if used > size:
        raise ValueError(f"used size {used} beyond the file's {size} bytes")
    while pos < used:
        (length,) = _ENTRY_HEAD.unpack_from(data, pos)
        if length <= 0 or pos + 4 + length > used:
            raise ValueError("an entry runs past the used size")
        key = bytes(data[pos + 4 : pos + 4 + length]).decode("utf-8")
        pos += 4 + length + (8 - (length + 4) % 8)
        if pos + 16 > used:
            raise ValueError("an entry runs past the used size")
        value, timestamp = _ENTRY_VALUE.unpack_from(data, pos)
        yield key, value, timestamp, pos
        pos += 16


def read_file(path: str) -> list[tuple[str, float, float]]:
    """Every (key, value, timestamp) of one store file, read by prometheus_client."""
    return [(k, v, ts) for k, v, ts, _ in MmapedDict.read_all_values_from_file(path)]


def _readable_rows(path: str) -> list[tuple[str, float, float]]:
    """The rows of a file to compact; none from a damaged one (a scrape skips it too)."""
    try:
        return read_file(path)
    except (struct.error, RuntimeError, UnicodeDecodeError) as exc:
        _log_damaged(path, exc)
        return []


def write_file(path: str, rows: Iterable[tuple[str, float, float]]) -> None:
    """A new store file at ``path`` holding ``rows``, with its space reserved first."""
    entries = []
    for key, value, timestamp in rows:
        encoded = key.encode("utf-8")
        padded = encoded + (b" " * (8 - (len(encoded) + 4) % 8))
        entries.append(struct.pack(f"i{len(padded)}sdd", len(encoded), padded, value, timestamp))
    body = b"".join(entries)
    used = 8 + len(body)
    capacity = _INITIAL_SIZE
    while capacity < used:
        capacity *= 2
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _reserve(fd, capacity)
        data = _ENTRY_HEAD.pack(used) + b"\0\0\0\0" + body
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


_install_lock = threading.Lock()


def install() -> bool:
    """Make prometheus_client write its multiprocess files through :class:`StoreFile`.

    Idempotent; does nothing outside multiprocess mode. Files a process opened
    before this call keep prometheus_client's own writer until the process
    forks again, so this runs as early as we can: in a gunicorn worker's
    ``post_fork`` hook, and in the app's ``ready()``.
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        return False
    with _install_lock:
        if getattr(values, "MmapedDict", None) is not StoreFile:
            values.MmapedDict = StoreFile  # type: ignore[attr-defined,misc]
    return True


# --- the lock ---------------------------------------------------------------------------


class StoreBusy(Exception):
    """The store's lock could not be had in time."""


@contextlib.contextmanager
def locked(path: str, exclusive: bool, timeout: float) -> Iterator[bool]:
    """Holds the store's lock; yields whether a lock is held at all.

    A directory where the lock file cannot be created (read-only) has no lock:
    nothing can compact there either, so reading it unlocked is safe.
    """
    lock_path = os.path.join(path, LOCK_FILE)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise  # why it cannot be changed (read-only, missing...), not why no lock
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            yield False
            return
    try:
        operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, operation)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreBusy(f"{lock_path} held for more than {timeout} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.02)
        yield True
    finally:
        os.close(fd)  # releases the lock


# --- what a scrape reads ---------------------------------------------------------------


def _journal(path: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(path, JOURNAL), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        logger.warning("django_observability: unreadable compaction journal in %s", path)
        return None
    if not isinstance(data, dict):
        return None
    return data


def files_to_read(path: str, names: Iterable[str] | None = None) -> list[str]:
    """The files whose values make the store's totals, whatever state a compaction left.

    Every ``*.db`` file. When a compaction was cut short: without a journal its
    new archives are ignored and the files it had moved aside are read where
    they are; with one (the new archives complete) the new archives replace
    the old and the files the journal names are already in them.
    """
    if names is None:
        names = os.listdir(path)
    names = list(names)
    journal = _journal(path) if JOURNAL in names else None
    absorbed: set[str] = set()
    replaced: dict[str, str] = {}
    if journal is not None:
        absorbed = set(journal.get("absorbed", ()))
        for archive in journal.get("archives", ()):
            if archive + NEW in names:
                replaced[archive] = archive + NEW
    chosen = []
    for name in names:
        if name.endswith(".db"):
            chosen.append(replaced.get(name, name))
        elif name.endswith(ASIDE) and name not in absorbed:
            chosen.append(name)
    # A new archive whose old one did not exist yet.
    chosen.extend(new for old, new in replaced.items() if old not in names)
    return [os.path.join(path, name) for name in sorted(set(chosen))]


class StoreCollector:
    """Collects the store's totals under its lock, as ``MultiProcessCollector`` does.

    Before reading it compacts the files of processes that no longer exist
    (for servers without a hook that tells when a worker exits, and for what a
    hook missed), unless ``compact`` is false. The totals are those of
    prometheus_client's ``MultiProcessCollector`` (same families, samples and
    gauge modes), except that sums are exact (``math.fsum`` over every
    process's value, and archives that keep a sum's exact parts): a float sum
    rounded once per scrape does not depend on how the values are spread over
    files, so compacting never moves a counter back, not even by a rounding.
    """

    def __init__(self, path: str, compact: bool = True) -> None:
        self.path = path
        self.compact = compact

    def collect(self) -> list[Metric]:
        if not os.path.isdir(self.path):
            # Nothing stored (the state gauges say why); a scrape still answers.
            _log_store_error("no metrics store at", self.path, FileNotFoundError(2, "missing"))
            return []
        if self.compact:
            try:
                compact_dead(self.path, only_if_pid_named=True)
            except StoreBusy as exc:
                logger.debug("django_observability: compaction at scrape time skipped: %s", exc)
            except OSError as exc:
                _log_store_error("could not compact the metrics store", self.path, exc)
            except Exception:
                logger.exception("django_observability: compaction at scrape time failed")
        with locked(self.path, exclusive=False, timeout=READ_LOCK_TIMEOUT):
            return merge(files_to_read(self.path))


def _file_kind(path: str) -> tuple[str, str, str]:
    """(type, gauge mode, pid) from a file name, as prometheus_client reads it."""
    name = os.path.basename(path)
    cut = name.find(".db")
    parts = (name[:cut] if cut >= 0 else name).split("_")
    if parts[0] == "gauge" and len(parts) >= 3:
        return "gauge", parts[1], parts[2]
    return parts[0], "", ""


def _total(values_: list[float]) -> float:
    if len(values_) == 1:
        return values_[0]
    try:
        return math.fsum(values_)
    except (OverflowError, ValueError):  # infinities: no exact sum to keep
        return sum(values_)


_damaged: set[str] = set()


def _log_damaged(path: str, exc: Exception) -> None:
    if path not in _damaged:
        _damaged.add(path)
        logger.error("django_observability: skipped a damaged metrics file %s: %s", path, exc)


def merge(paths: Iterable[str]) -> list[Metric]:
    """The families of ``paths`` merged, as ``MultiProcessCollector.merge`` with exact sums."""
    metrics: dict[str, Metric] = {}
    # metric -> labels -> (sample name, labels) -> values (or (timestamp, value))
    grouped: dict[str, dict[Any, dict[Any, Any]]] = {}
    buckets: dict[str, dict[Any, dict[float, list[float]]]] = {}
    parsed: dict[str, tuple[str, str, dict[str, str], Any, str]] = {}
    for path in paths:
        typ, mode, pid = _file_kind(path)
        try:
            rows = list(MmapedDict.read_all_values_from_file(path))
        except FileNotFoundError:
            if typ == "gauge" and mode.startswith("live"):
                continue  # removed by mark_process_dead between listing and reading
            raise
        except (struct.error, RuntimeError, UnicodeDecodeError) as exc:
            # Cut short (a writer killed while making it): unreadable is better
            # than a scrape that fails until someone removes it.
            _log_damaged(path, exc)
            continue
        for key, value, timestamp, _ in rows:
            entry = parsed.get(key)
            if entry is None:
                metric_name, name, labels, help_text = json.loads(key)
                entry = parsed[key] = (
                    metric_name,
                    name,
                    labels,
                    tuple(sorted(labels.items())),
                    help_text,
                )
            metric_name, name, labels, labels_key, help_text = entry
            metric = metrics.get(metric_name)
            if metric is None:
                metric = metrics[metric_name] = Metric(metric_name, help_text, typ)
                grouped[metric_name] = {}
            if typ == "gauge":
                metric._multiprocess_mode = mode  # type: ignore[attr-defined]
                if mode in ("all", "liveall"):
                    labels_key = (*labels_key, ("pid", pid))
                group = grouped[metric_name].setdefault(labels_key, {})
                held = group.get(name)
                if mode in ("min", "livemin"):
                    if held is None or value < held:
                        group[name] = value
                elif mode in ("max", "livemax"):
                    if held is None or value > held:
                        group[name] = value
                elif mode in ("sum", "livesum"):
                    group.setdefault(name, []).append(value)
                elif mode in ("mostrecent", "livemostrecent"):
                    if (held[0] if held is not None else 0.0) < float(timestamp or 0):
                        group[name] = (float(timestamp), value)
                else:  # all, liveall
                    group[name] = value
            elif typ == "histogram" and "le" in labels:
                without_le = tuple(item for item in labels_key if item[0] != "le")
                per = buckets.setdefault(metric_name, {}).setdefault(without_le, {})
                per.setdefault(float(labels["le"]), []).append(value)
                grouped[metric_name].setdefault(without_le, {})
            else:
                grouped[metric_name].setdefault(labels_key, {}).setdefault(name, []).append(value)
    out = []
    for metric_name, metric in metrics.items():
        mode = getattr(metric, "_multiprocess_mode", "")
        samples = []
        for labels_key, by_name in grouped[metric_name].items():
            for name, held in by_name.items():
                if metric.type == "gauge" and mode in ("mostrecent", "livemostrecent"):
                    value = held[1]
                elif isinstance(held, list):
                    value = _total(held)
                else:
                    value = held
                samples.append(Sample(name, dict(labels_key), value))
            if metric.type == "histogram":
                per = buckets.get(metric_name, {}).get(labels_key)
                if per is not None:
                    acc = 0.0
                    for bound, counts in sorted(per.items()):
                        acc += _total(counts)
                        labels = dict(labels_key)
                        labels["le"] = floatToGoString(bound)
                        samples.append(Sample(metric.name + "_bucket", labels, acc))
                    samples.append(Sample(metric.name + "_count", dict(labels_key), acc))
        metric.samples = samples
        out.append(metric)
    return out


# --- compaction -------------------------------------------------------------------------


@dataclass
class _Process:
    files: list[str]  # names in the directory, prometheus_client's own (live names)
    aside: list[str]  # names moved aside by a compaction that did not finish


def _processes(names: Iterable[str]) -> dict[int, _Process]:
    found: dict[int, _Process] = {}
    for name in names:
        match = _PROCESS_FILE.fullmatch(name)
        if match is None:
            continue
        pid = int(match.group(2))
        entry = found.setdefault(pid, _Process([], []))
        (entry.aside if match.group(3) else entry.files).append(name)
    return found


def _kind(name: str) -> str:
    match = _PROCESS_FILE.fullmatch(name)
    assert match is not None
    return match.group(1)


def _exact_parts(values_: Iterable[float]) -> list[float]:
    """Floats whose exact sum is the exact sum of ``values_`` (Shewchuk's partials).

    An archive keeps a sum as these parts, so that the exact total a scrape
    computes is the same before and after a compaction.
    """
    partials: list[float] = []
    for x in values_:
        if not math.isfinite(x):
            return [sum(partials) + x]  # no exact sum past an infinity
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            high = x + y
            low = y - (high - x)
            if low:
                partials[i] = low
                i += 1
            x = high
        partials[i:] = [x]
    return partials or [0.0]


def _merge_rows(kind: str, sources: Iterable[Iterable[tuple[str, float, float]]]) -> list[Any]:
    """The rows of an archive that holds every row of ``sources`` (one kind)."""
    if kind in _ADDED:
        added: dict[str, list[float]] = {}
        for rows in sources:
            for key, value, _ in rows:
                added.setdefault(key, []).append(value)
        return [(key, part, 0.0) for key, got in added.items() for part in _exact_parts(got)]
    merged: dict[str, tuple[float, float]] = {}
    for rows in sources:
        for key, value, timestamp in rows:
            held = merged.get(key)
            if held is None:
                merged[key] = (value, timestamp)
            elif kind == "gauge_min":
                merged[key] = (min(held[0], value), 0.0)
            elif kind == "gauge_max":
                merged[key] = (max(held[0], value), 0.0)
            elif timestamp > held[1]:  # gauge_mostrecent
                merged[key] = (value, timestamp)
    return [(key, value, timestamp) for key, (value, timestamp) in merged.items()]


def _archive_name(kind: str) -> str:
    return f"{kind}_{ARCHIVE}.db"


def _recover(path: str, names: list[str]) -> list[str]:
    """Finish a compaction that committed (journal present), drop one that did not."""
    journal = _journal(path) if JOURNAL in names else None
    if journal is not None:
        for archive in journal.get("archives", ()):
            if archive + NEW in names:
                os.replace(os.path.join(path, archive + NEW), os.path.join(path, archive))
        for name in journal.get("absorbed", ()):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))
        os.unlink(os.path.join(path, JOURNAL))
        names = os.listdir(path)
    elif JOURNAL in names:  # unreadable: nothing was committed with it
        os.unlink(os.path.join(path, JOURNAL))
    for name in names:
        if name.endswith(NEW) and (name.startswith(JOURNAL) or ARCHIVE in name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))
    return os.listdir(path)


def compact_dead(
    path: str,
    timeout: float = COMPACT_LOCK_TIMEOUT,
    only_if_pid_named: bool = False,
) -> int:
    """Compact the files of every process that no longer exists; returns how many.

    Cheap when there is nothing to do (one directory listing, one ``kill(pid,
    0)`` per process with files). With ``only_if_pid_named`` nothing is done
    unless this process's own files are named by its pid, which tells that
    the processes writing here are identified by pid (prometheus_client's
    default) and so that a pid that does not exist is a process that exited.
    Raises :class:`StoreBusy` when the lock is not had within ``timeout``, and
    ``OSError`` when the directory cannot be changed (the store is then as it was).
    """
    names = os.listdir(path)
    me = os.getpid()
    processes = _processes(names)
    if only_if_pid_named and processes and me not in processes:
        return 0
    gone = [pid for pid, p in processes.items() if pid != me and (p.aside or not alive(pid))]
    stray = JOURNAL in names or any(n.endswith(NEW) for n in names)
    exemplars = [n for n in names if _dead_exemplar_file(n, me)]
    if not gone and not stray and not exemplars:
        return 0
    with locked(path, exclusive=True, timeout=timeout):
        return _compact_locked(path, me)


def _dead_exemplar_file(name: str, me: int) -> bool:
    match = _EXEMPLAR_FILE.fullmatch(name)
    if match is None:
        return False
    pid = int(match.group(1))
    return pid != me and not alive(pid)


def _compact_locked(path: str, me: int) -> int:
    names = _recover(path, os.listdir(path))
    processes = _processes(names)
    dead = {pid: p for pid, p in processes.items() if pid != me and not alive(pid)}
    # Files moved aside by a compaction cut short, of a pid that exists again.
    for pid, p in processes.items():
        if pid not in dead and pid != me:
            for name in p.aside:
                _put_back(path, name)
    # Move the dead processes' files aside: a process that takes one of their
    # pids from now on makes new files instead of continuing these.
    aside: dict[int, list[str]] = {}
    drop: dict[int, list[str]] = {}
    for pid, p in dead.items():
        moved = aside[pid] = list(p.aside)
        for name in p.files:
            if _kind(name) in _KEPT:
                os.rename(os.path.join(path, name), os.path.join(path, name + ASIDE))
                moved.append(name + ASIDE)
            else:
                drop.setdefault(pid, []).append(name)  # live*/all gauges: gone with it
    # A pid taken by a new process between the first look and the move: that
    # process may have opened the files before they moved; give them back.
    for pid in list(aside):
        if alive(pid):
            for name in aside.pop(pid):
                _put_back(path, name)
            drop.pop(pid, None)
    absorbed = [name for moved in aside.values() for name in moved]
    if absorbed:
        by_kind: dict[str, list[str]] = {}
        for name in absorbed:
            by_kind.setdefault(_kind(name), []).append(name)
        archives = []
        try:
            for kind, group in sorted(by_kind.items()):
                archive = _archive_name(kind)
                sources = [os.path.join(path, n) for n in group]
                if archive in names or os.path.exists(os.path.join(path, archive)):
                    sources.insert(0, os.path.join(path, archive))
                rows = _merge_rows(kind, (_readable_rows(s) for s in sources))
                write_file(os.path.join(path, archive + NEW), rows)
                archives.append(archive)
            _write_journal(path, archives, absorbed)
        except BaseException:
            # Nothing committed: the moved files are read where they are until
            # the next compaction takes them.
            for archive in archives + [_archive_name(k) for k in by_kind]:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(path, archive + NEW))
            raise
        for archive in archives:
            os.replace(os.path.join(path, archive + NEW), os.path.join(path, archive))
        for name in absorbed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))
        os.unlink(os.path.join(path, JOURNAL))
    for name in (name for gone in drop.values() for name in gone):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(path, name))
    for name in os.listdir(path):
        if _dead_exemplar_file(name, me):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))
    return len(aside)


def _put_back(path: str, name: str) -> None:
    """Give a moved file back to its live pid, unless that pid made a new one meanwhile.

    A new file under the original name means the live process did not have the
    moved one open (it would not have made another): the moved one is final
    and stays aside to be compacted once that process is gone too.
    """
    original = os.path.join(path, name[: -len(ASIDE)])
    if not os.path.exists(original):
        with contextlib.suppress(FileNotFoundError):
            os.rename(os.path.join(path, name), original)


def _write_journal(path: str, archives: list[str], absorbed: list[str]) -> None:
    temporary = os.path.join(path, JOURNAL + NEW)
    with open(temporary, "w", encoding="utf-8") as fh:
        json.dump({"archives": archives, "absorbed": absorbed}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, os.path.join(path, JOURNAL))


def mark_dead(pid: int, path: str | None = None, timeout: float = COMPACT_LOCK_TIMEOUT) -> int:
    """A worker exited (a server's hook): drop its live gauges and compact; never raises.

    Returns the number of processes compacted (0 when it could not be done;
    the reason is logged and the next compaction takes them).
    """
    path = path or directory()
    if path is None:
        return 0
    try:
        return compact_dead(path, timeout=timeout)
    except FileNotFoundError:
        logger.warning("django_observability: the metrics store %s is missing", path)
    except StoreBusy as exc:
        logger.warning("django_observability: compaction skipped: %s", exc)
    except OSError as exc:
        _log_store_error("could not compact the metrics store", path, exc)
    except Exception:
        logger.exception("django_observability: could not compact the metrics store %s", path)
    return 0


_logged_errors: set[tuple[str, int]] = set()


def _log_store_error(what: str, path: str, exc: OSError) -> None:
    key = (what, exc.errno or 0)
    if key in _logged_errors:
        return
    _logged_errors.add(key)
    logger.error("django_observability: %s %s: %s", what, path, exc.strerror or exc)


# --- start of a server ------------------------------------------------------------------

_OURS = re.compile(
    r"(.+\.db(" + re.escape(ASIDE) + r")?|.+_archive\.db\.new|labels_.+\.txt|"
    r"exemplars_[0-9]+\.json(\.tmp)?|" + re.escape(JOURNAL) + r"(\.new)?|probe-[0-9]+\.tmp)"
)


def clear(path: str | None = None) -> bool:
    """Empty the store before a server starts its workers; never raises.

    Removes the files prometheus_client and this app write (not the lock file,
    nor anything else someone keeps there) and makes the directory if it is
    missing. An earlier run's files would be added to the new run's totals,
    and its dead workers' gauges shown. Returns whether the store is ready.
    """
    path = path or directory()
    if path is None:
        return False
    try:
        os.makedirs(path, exist_ok=True)
        with locked(path, exclusive=True, timeout=COMPACT_LOCK_TIMEOUT):
            for name in os.listdir(path):
                if _OURS.fullmatch(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(path, name))
    except OSError as exc:
        _log_store_error("could not clear the metrics store", path, exc)
        return False
    except StoreBusy as exc:
        logger.error("django_observability: could not clear the metrics store: %s", exc)
        return False
    return True


# --- state ------------------------------------------------------------------------------


@dataclass
class StoreState:
    path: str
    exists: bool
    writable: bool
    free_bytes: int | None
    files: int
    size_bytes: int
    error: str | None = None


_PROBE_BYTES = 4096


def store_state(path: str | None = None) -> StoreState | None:
    """What the store looks like now; ``None`` outside multiprocess mode.

    ``writable`` means a file could be made and its space reserved just now,
    and that this process holds no values it failed to store.
    """
    path = path or directory()
    if path is None:
        return None
    try:
        names = os.listdir(path)
    except OSError as exc:
        return StoreState(path, False, False, None, 0, 0, exc.strerror or str(exc))
    size = 0
    for name in names:
        with contextlib.suppress(OSError):
            size += os.stat(os.path.join(path, name)).st_blocks * 512
    free: int | None
    try:
        stats = os.statvfs(path)
        free = stats.f_bavail * stats.f_frsize
    except OSError:
        free = None
    error = None
    probe = os.path.join(path, f"probe-{os.getpid()}.tmp")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _reserve(fd, _PROBE_BYTES)
        finally:
            os.close(fd)
            os.unlink(probe)
        writable = True
    except OSError as exc:
        writable = False
        error = exc.strerror or str(exc)
    if writable and unstored():
        writable = False
        error = "this process holds values it could not store"
    db_files = sum(1 for n in names if n.endswith(".db"))
    return StoreState(path, True, writable, free, db_files, size, error)


class StoreStateCollector:
    """``django_observability_metrics_store_*`` gauges, computed when scraped."""

    def __init__(self, path: str, namespace: str = "") -> None:
        self.path = path
        self.prefix = f"{namespace}_" if namespace else ""

    def collect(self) -> list[Metric]:
        state = store_state(self.path)
        if state is None:
            return []
        name = self.prefix + "django_observability_metrics_store_"
        families = [
            GaugeMetricFamily(
                name + "writable",
                "1 when the multiprocess metrics store could be written at the last scrape.",
                value=1.0 if state.writable else 0.0,
            ),
            GaugeMetricFamily(
                name + "files",
                "Value files in the multiprocess metrics store (live workers and archives).",
                value=state.files,
            ),
            GaugeMetricFamily(
                name + "size_bytes",
                "Bytes the multiprocess metrics store takes on its file system.",
                value=state.size_bytes,
            ),
        ]
        if state.free_bytes is not None:
            families.append(
                GaugeMetricFamily(
                    name + "free_bytes",
                    "Bytes free on the file system of the multiprocess metrics store.",
                    value=state.free_bytes,
                )
            )
        return families


def main(argv: list[str] | None = None) -> int:
    """``python -m django_observability.metrics_store clear|compact|status [DIR]``.

    For servers without hooks (uvicorn ``--workers``): clear the store before
    starting them. ``compact`` and ``status`` help an operator look.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m django_observability.metrics_store")
    parser.add_argument("action", choices=("clear", "compact", "status"))
    parser.add_argument("directory", nargs="?", default=None, help=f"default: ${ENVIRON}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = args.directory or directory()
    if path is None:
        print(f"{ENVIRON} is not set and no directory was given", file=sys.stderr)
        return 2
    if args.action == "clear":
        return 0 if clear(path) else 1
    if args.action == "compact":
        try:
            count = compact_dead(path)
        except (OSError, StoreBusy) as exc:
            print(f"could not compact {path}: {exc}", file=sys.stderr)
            return 1
        print(f"compacted {count} exited process(es) in {path}")
        return 0
    state = store_state(path)
    assert state is not None
    print(
        json.dumps(
            {
                "path": state.path,
                "exists": state.exists,
                "writable": state.writable,
                "free_bytes": state.free_bytes,
                "files": state.files,
                "size_bytes": state.size_bytes,
                "error": state.error,
            }
        )
    )
    return 0 if state.writable else 1


if __name__ == "__main__":
    raise SystemExit(main())
