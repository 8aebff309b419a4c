"""Request ids: validate an incoming one or make a new one.

The id of the request being served is kept by :mod:`django_observability.context`
(``request.request_id``, and :func:`get_request_id` anywhere in the code that
serves the request).
"""

from __future__ import annotations

import os
import re
from collections import deque

# Re-exported for code written when it lived here (the public name is
# django_observability.get_request_id).
from django_observability.context import get_request_id

__all__ = ["MAX_LENGTH", "from_meta", "get_request_id", "is_valid", "meta_key", "new_request_id"]

# What we accept from a client: short, and characters that are safe in a log
# line, a header and a URL without escaping.
MAX_LENGTH = 128
_SAFE = re.compile(r"[A-Za-z0-9._:\-]+")

_urandom = os.urandom

# Random bytes for new ids come from the OS in blocks: one getrandom() call per
# 256 ids rather than one per request. Each call releases the GIL, and while
# another thread waits for it (a BatchSpanProcessor's export thread, woken to
# export a batch) every release costs a wake-up of that thread on the request
# path. The blocks are still the OS's CSPRNG output, each 16-byte piece is
# handed out once (deque.popleft is atomic), and a forked child drops what its
# parent had drawn, so two processes never share an id.
_ID_BYTES = 16
_BLOCK_IDS = 256
_pool: deque[bytes] = deque()


def _refill() -> None:
    block = _urandom(_ID_BYTES * _BLOCK_IDS)
    _pool.extend(block[i : i + _ID_BYTES] for i in range(0, len(block), _ID_BYTES))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.clear)


def new_request_id() -> str:
    """A fresh request id: a random (version 4) UUID as 32 lowercase hex digits.

    The same value as ``uuid.uuid4().hex``: 16 bytes of the OS's randomness
    (drawn in blocks, see ``_pool``) with the version and variant bits set by
    hand, at a fraction of the cost.
    """
    while True:
        try:
            chunk = _pool.popleft()
            break
        except IndexError:
            _refill()
    raw = bytearray(chunk)
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


def is_valid(value: str) -> bool:
    """Whether a client-supplied id is short and made only of safe characters."""
    return 0 < len(value) <= MAX_LENGTH and _SAFE.fullmatch(value) is not None


def from_meta(meta: dict[str, object], meta_key: str, trust_incoming: bool = True) -> str:
    """The incoming id from ``request.META[meta_key]`` if it is valid, else a new one."""
    if trust_incoming:
        value = meta.get(meta_key)
        if type(value) is str and is_valid(value):
            return value
    return new_request_id()


def meta_key(header: str) -> str:
    """The ``request.META`` key under which Django stores a request header."""
    return "HTTP_" + header.upper().replace("-", "_")
