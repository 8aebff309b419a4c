"""Compaction: the values of exited processes merged into archives; the store cleared.

The values of processes that no longer exist are merged into one archive file
per kind (``counter_archive.db``, ``histogram_archive.db``...) and the
processes' own files removed, so the number of files and the scrape time
depend on the live workers only. Counters, histograms and summaries are added
(an archive keeps a sum's exact parts); ``sum``/``min``/``max``/``mostrecent``
gauges are merged by their mode; ``live*`` gauges of a dead process go (as
``mark_process_dead`` does) and so do ``all`` gauges, whose one series per pid
would otherwise grow without bound.

A compaction holds the store's lock exclusively (scrapes hold it shared). Its
steps: move the dead processes' files aside (a process that takes one of their
pids from then on makes new files), check the pids again (one taken meanwhile
gets its files back), write each new archive beside the old one, commit a
journal naming what the new archives absorbed, rename them into place, remove
what they absorbed, remove the journal. A compaction cut short at any step
leaves a directory that :func:`~.reader.files_to_read` reads right, and the
next compaction finishes (journal present) or undoes (journal absent) it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django_observability.metrics_store.files import (
    ARCHIVE,
    ASIDE,
    COMPACT_LOCK_TIMEOUT,
    EXEMPLAR_FILE,
    JOURNAL,
    NEW,
    PROCESS_FILE,
    StoreBusy,
    alive,
    directory,
    locked,
    log_store_error,
    logger,
    read_journal,
    readable_rows,
    write_file,
)

# Per-process gauge modes whose values survive their process, and how two merge.
_ADDED = frozenset({"counter", "histogram", "summary", "gauge_sum"})
_MERGED_GAUGES = frozenset({"gauge_min", "gauge_max", "gauge_mostrecent"})
_KEPT = _ADDED | _MERGED_GAUGES

# --- compaction -------------------------------------------------------------------------


@dataclass
class _Process:
    files: list[str]  # names in the directory, prometheus_client's own (live names)
    aside: list[str]  # names moved aside by a compaction that did not finish


def _processes(names: Iterable[str]) -> dict[int, _Process]:
    found: dict[int, _Process] = {}
    for name in names:
        match = PROCESS_FILE.fullmatch(name)
        if match is None:
            continue
        pid = int(match.group(2))
        entry = found.setdefault(pid, _Process([], []))
        (entry.aside if match.group(3) else entry.files).append(name)
    return found


def _kind(name: str) -> str:
    match = PROCESS_FILE.fullmatch(name)
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
    journal = read_journal(path) if JOURNAL in names else None
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
    match = EXEMPLAR_FILE.fullmatch(name)
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
                rows = _merge_rows(kind, (readable_rows(s) for s in sources))
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
        log_store_error("could not compact the metrics store", path, exc)
    except Exception:
        logger.exception("django_observability: could not compact the metrics store %s", path)
    return 0


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
        log_store_error("could not clear the metrics store", path, exc)
        return False
    except StoreBusy as exc:
        logger.error("django_observability: could not clear the metrics store: %s", exc)
        return False
    return True
