"""The store's directory and its files: names, the lock, one file read or written.

Everything the writer, the reader and the compaction agree on: where the store
is, what its file names mean, the lock that keeps a compaction and a scrape
apart, the compaction journal, and prometheus_client's file format (a
used-bytes header, then entries of key length, key, padding, value and
timestamp), read with prometheus_client's own reader.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import struct
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.mmap_dict import MmapedDict

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
PROCESS_FILE = re.compile(
    r"(counter|histogram|summary|gauge_[a-z]+)_([0-9]{1,10})\.db(" + re.escape(ASIDE) + r")?"
)
EXEMPLAR_FILE = re.compile(r"exemplars_([0-9]{1,10})\.json(\.tmp)?")


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


INITIAL_SIZE = 1 << 16
ENTRY_HEAD = struct.Struct("i")
ENTRY_VALUE = struct.Struct("dd")


def reserve(fd: int, size: int) -> None:
    # Allocate every page of the file now: a write through mmap to a page the
    # file system cannot give is a SIGBUS; an allocation that fails here is an
    # OSError (ENOSPC on a full tmpfs or disk).
    os.posix_fallocate(fd, 0, size)


def entries(data: Any, used: int) -> Iterator[tuple[str, float, float, int]]:
    """(key, value, timestamp, value position) of each entry; raises on a damaged file."""
    pos = 8
    size = len(data)
    if used > size:
        raise ValueError(f"used size {used} beyond the file's {size} bytes")
    while pos < used:
        (length,) = ENTRY_HEAD.unpack_from(data, pos)
        if length <= 0 or pos + 4 + length > used:
            raise ValueError("an entry runs past the used size")
        key = bytes(data[pos + 4 : pos + 4 + length]).decode("utf-8")
        pos += 4 + length + (8 - (length + 4) % 8)
        if pos + 16 > used:
            raise ValueError("an entry runs past the used size")
        value, timestamp = ENTRY_VALUE.unpack_from(data, pos)
        yield key, value, timestamp, pos
        pos += 16


def read_file(path: str) -> list[tuple[str, float, float]]:
    """Every (key, value, timestamp) of one store file, read by prometheus_client."""
    return [(k, v, ts) for k, v, ts, _ in MmapedDict.read_all_values_from_file(path)]


def readable_rows(path: str) -> list[tuple[str, float, float]]:
    """The rows of a file to compact; none from a damaged one (a scrape skips it too)."""
    try:
        return read_file(path)
    except (struct.error, RuntimeError, UnicodeDecodeError) as exc:
        log_damaged(path, exc)
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
    capacity = INITIAL_SIZE
    while capacity < used:
        capacity *= 2
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        reserve(fd, capacity)
        data = ENTRY_HEAD.pack(used) + b"\0\0\0\0" + body
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


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


def read_journal(path: str) -> dict[str, Any] | None:
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


_damaged: set[str] = set()


def log_damaged(path: str, exc: Exception) -> None:
    if path not in _damaged:
        _damaged.add(path)
        logger.error("django_observability: skipped a damaged metrics file %s: %s", path, exc)


_logged_errors: set[tuple[str, str, int]] = set()


def log_store_error(what: str, path: str, exc: OSError) -> None:
    """Log a failure to change the store once per process, store and kind of error."""
    key = (what, path, exc.errno or 0)
    if key in _logged_errors:
        return
    _logged_errors.add(key)
    logger.error("django_observability: %s %s: %s", what, path, exc.strerror or exc)
