"""How the last exports ended, in a record shared by the processes of one server.

The flush at exit reads it to decide whether waiting for the collector is
worth it; the exporters of every process write it (see
:class:`~django_observability.tracing.processor.PerProcessSpanProcessor`).
"""

from __future__ import annotations

import mmap
import struct
import time

__all__ = [
    "FAILURE_MEMORY",
    "OUTCOME_FAILED",
    "OUTCOME_NONE",
    "OUTCOME_OK",
    "failed_recently",
    "record",
    "reset",
    "slot_for",
]

OUTCOME_NONE, OUTCOME_OK, OUTCOME_FAILED = 0, 1, 2
# One record per kind of exporter: each kind sends to its own place.
_OUTCOME_SLOTS = {"console": 0, "otlp": 1}
_OTHER_SLOT = 2
# A failure older than this is forgotten: the next exit tries the collector
# again (within its bound). Workers that never live long enough to export on
# the batch processor's schedule would otherwise never find out it is back.
FAILURE_MEMORY = 10.0  # seconds


class _SharedOutcomes:
    """How, and when, the last finished export of each kind of exporter ended.

    The records live in an anonymous shared mapping made when this module is
    imported. gunicorn imports it in the master (``--preload``, or a
    ``gunicorn.conf.py`` that imports it), so every worker forked later reads
    and writes the same records: a worker replacing one that found the
    collector silent knows it at once, though its own first export would come
    seconds later. Otherwise each process knows its own exports only.

    A record is an outcome byte and a ``time.monotonic()`` reading (the same
    clock in every process of a machine), written without a lock across
    processes: a read that races a write can only change whether one exit
    waits, never for how long.
    """

    _RECORD = struct.Struct("<B7xd")  # outcome, padding, when

    def __init__(self, slots: int = 4) -> None:
        size = self._RECORD.size * slots
        self._bytes: mmap.mmap | bytearray
        try:
            self._bytes = mmap.mmap(-1, size)  # MAP_SHARED | MAP_ANONYMOUS on POSIX
        except (OSError, ValueError):  # pragma: no cover - no anonymous mappings here
            self._bytes = bytearray(size)

    def get(self, slot: int) -> tuple[int, float]:
        """(outcome, when) of the slot's last finished export."""
        outcome, when = self._RECORD.unpack_from(self._bytes, slot * self._RECORD.size)
        return outcome, when

    def set(self, slot: int, outcome: int) -> None:
        self._RECORD.pack_into(self._bytes, slot * self._RECORD.size, outcome, time.monotonic())

    def failed_recently(self, slot: int) -> bool:
        outcome, when = self.get(slot)
        return outcome == OUTCOME_FAILED and time.monotonic() - when < FAILURE_MEMORY

    def clear(self) -> None:
        self._bytes[:] = bytes(len(self._bytes))


_outcomes = _SharedOutcomes()


def slot_for(name: str) -> int:
    """The record of the exporter kind ``name`` (``"otlp"``, ``"console"``, else a shared one)."""
    return _OUTCOME_SLOTS.get(name, _OTHER_SLOT)


def record(slot: int, outcome: int) -> None:
    """Note that an export of the slot's kind just ended with ``outcome``."""
    _outcomes.set(slot, outcome)


def failed_recently(slot: int) -> bool:
    """Whether the slot's last finished export failed less than :data:`FAILURE_MEMORY` s ago."""
    return _outcomes.failed_recently(slot)


def reset() -> None:
    """Forget every outcome, in this process and those sharing the record (for tests)."""
    _outcomes.clear()
