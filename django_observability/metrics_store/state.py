"""State: what the store looks like now, for the health check and the scrape-time gauges.

A store that cannot be written cannot hold its own gauges, so these are
computed when ``/metrics`` is scraped.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from django_observability.metrics_store.files import directory, reserve
from django_observability.metrics_store.writer import unstored

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
            reserve(fd, _PROBE_BYTES)
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
