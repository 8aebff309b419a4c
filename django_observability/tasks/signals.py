"""Connecting receivers to Celery's signals, by signal name, each once.

``tasks.celery`` (metrics, context, logs) and ``tasks.worker`` (the worker's
store, ``/metrics`` port and heartbeat) each keep a table of
``(signal name, receiver)``; the dispatch uid ``<owner>.<signal name>`` makes
connecting twice connect once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["connect", "disconnect"]

Receivers = Iterable[tuple[str, Callable[..., Any]]]


def connect(receivers: Receivers, owner: str) -> None:
    """Connect each receiver to the Celery signal it names (imports ``celery.signals``)."""
    from celery import signals

    for name, receiver in receivers:
        getattr(signals, name).connect(receiver, weak=False, dispatch_uid=f"{owner}.{name}")


def disconnect(receivers: Receivers, owner: str) -> None:
    """Undo :func:`connect` for the same table and owner."""
    from celery import signals

    for name, receiver in receivers:
        getattr(signals, name).disconnect(receiver, dispatch_uid=f"{owner}.{name}")
