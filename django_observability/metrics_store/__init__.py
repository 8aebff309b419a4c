"""The multiprocess metrics store: ``PROMETHEUS_MULTIPROC_DIR`` kept fast, bounded and safe.

In Prometheus multiprocess mode every process writes its values to files of its
own (``counter_<pid>.db``, ``histogram_<pid>.db``, ``gauge_<mode>_<pid>.db``...)
and a scrape reads them all. prometheus_client never removes the counters and
histograms of a process that has exited, so a server that replaces its workers
(gunicorn's ``max_requests``, uvicorn restarting a worker) makes every scrape
slower and the directory larger without end. This package adds three things to
prometheus_client, reusing its file format and reader, and its collector's rules:

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

from django_observability.metrics_store.compaction import clear, compact_dead, mark_dead
from django_observability.metrics_store.files import (
    ASIDE,
    COMPACT_LOCK_TIMEOUT,
    ENVIRON,
    JOURNAL,
    LOCK_FILE,
    READ_LOCK_TIMEOUT,
    RETRY_SECONDS,
    StoreBusy,
    alive,
    directory,
    locked,
    read_file,
    write_file,
)
from django_observability.metrics_store.reader import StoreCollector, files_to_read, merge
from django_observability.metrics_store.state import StoreState, StoreStateCollector, store_state
from django_observability.metrics_store.writer import StoreFile, install, store_pending, unstored

__all__ = [
    "ASIDE",
    "COMPACT_LOCK_TIMEOUT",
    "ENVIRON",
    "JOURNAL",
    "LOCK_FILE",
    "READ_LOCK_TIMEOUT",
    "RETRY_SECONDS",
    "StoreBusy",
    "StoreCollector",
    "StoreFile",
    "StoreState",
    "StoreStateCollector",
    "alive",
    "clear",
    "compact_dead",
    "directory",
    "files_to_read",
    "install",
    "locked",
    "mark_dead",
    "merge",
    "read_file",
    "store_pending",
    "store_state",
    "unstored",
    "write_file",
]
