"""Faults in our own instrumentation: logged once with a traceback, then quietly.

Nothing the app records may break the user's request, so every recording
step catches its own exceptions and reports them here.
"""

from __future__ import annotations

import logging

__all__ = ["fault", "reset"]

logger = logging.getLogger("django_observability")

# The places that have failed in this process: their next faults log at DEBUG.
_reported: set[str] = set()


def fault(where: str) -> None:
    """Log the exception being handled, a fault in ``where``; with its traceback the first time."""
    if where in _reported:
        logger.debug("django_observability: fault in %s", where, exc_info=True)
        return
    _reported.add(where)
    logger.exception("django_observability: fault in %s; the request is served regardless", where)


def reset() -> None:
    """Forget which places have failed: their next fault is logged in full again."""
    _reported.clear()
