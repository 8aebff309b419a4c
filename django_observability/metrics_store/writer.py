"""Writing: prometheus_client's files with their space reserved, and failures kept.

prometheus_client grows its files as sparse files and writes through ``mmap``;
on a full file system the first write to a page that cannot be allocated kills
the process with SIGBUS. :class:`StoreFile` reserves the space first
(``posix_fallocate``), so a full or read-only file system is an ``OSError`` it
catches: the value stays in memory, the failure is logged once, and everything
kept is written when space returns, or at the latest when the process exits
(:func:`store_pending`). :func:`install` puts it in prometheus_client's place.
"""

from __future__ import annotations

import atexit
import mmap
import os
import struct
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict

from django_observability.metrics_store.files import (
    ENTRY_HEAD,
    ENTRY_VALUE,
    INITIAL_SIZE,
    RETRY_SECONDS,
    entries,
    logger,
    reserve,
)

# --- writing: space reserved, failures kept in memory ----------------------------------


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
        _files.add(self)
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
            if capacity < INITIAL_SIZE:
                capacity = INITIAL_SIZE
                f.truncate(capacity)
            reserve(fd, capacity)
            m = mmap.mmap(fd, capacity, access=mmap.ACCESS_WRITE)
        except BaseException:
            f.close()
            raise
        used = ENTRY_HEAD.unpack_from(m, 0)[0]
        positions: dict[str, int] = {}
        if used == 0:
            used = 8
            m[0:4] = ENTRY_HEAD.pack(used)
        else:
            for key, _, _, pos in entries(m, used):
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
            reserve(fd, capacity)  # before the new pages are mapped
            old, self._m = self._m, mmap.mmap(fd, capacity, access=mmap.ACCESS_WRITE)
            self._capacity = capacity
            old.close()
        self._m[self._used : self._used + len(entry)] = entry
        self._used += len(entry)
        # Readers see the entry only once the header counts it.
        self._m[0:4] = ENTRY_HEAD.pack(self._used)
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
                self._m[pos : pos + 16] = ENTRY_VALUE.pack(value, timestamp)
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
        return ENTRY_VALUE.unpack_from(self._m, pos)  # type: ignore[return-value]

    def write_value(self, key: str, value: float, timestamp: float) -> None:
        pos = self._positions.get(key)
        if pos is not None and self._m is not None:
            # Direct assignment: one copy of 16 bytes, never a transient zero.
            self._m[pos : pos + 16] = ENTRY_VALUE.pack(value, timestamp)
            if self._pending:
                self._store_pending()
            return
        self._pending[key] = (value, timestamp)
        self._store_pending()

    def read_all_values(self) -> Iterator[tuple[str, float, float]]:
        if self._m is not None:
            for key, value, timestamp, _ in entries(self._m, self._used):
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


_install_lock = threading.Lock()
_files: weakref.WeakSet[StoreFile] = weakref.WeakSet()
_installed = False


def store_pending() -> bool:
    """Try at once to store every value this process kept in memory; ``True`` if none is left.

    For a process about to exit (gunicorn's ``worker_exit`` hook, ``atexit``):
    what it could not store would otherwise go with it. Never raises.
    """
    stored = True
    for store_file in list(_files):
        try:
            if store_file._pending:
                store_file._retry_at = 0.0
                stored = store_file._store_pending() and stored
        except Exception:  # a closed or broken file: nothing more to do at exit
            stored = False
    return stored


def install() -> bool:
    """Make prometheus_client write its multiprocess files through :class:`StoreFile`.

    Idempotent; does nothing outside multiprocess mode. Files a process opened
    before this call keep prometheus_client's own writer until the process
    forks again, so this runs as early as we can: in a gunicorn worker's
    ``post_fork`` hook, and in the app's ``ready()``.
    """
    global _installed
    if not getattr(values.ValueClass, "_multiprocess", False):
        return False
    with _install_lock:
        if getattr(values, "MmapedDict", None) is not StoreFile:
            values.MmapedDict = StoreFile  # type: ignore[attr-defined,misc]
        if not _installed:
            _installed = True
            atexit.register(store_pending)  # a last try for what is kept in memory
    return True
