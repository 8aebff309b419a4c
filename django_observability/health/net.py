"""What the dependency checks share: one time budget, bounded sockets, URLs fit to show.

A dependency check talks to its peer in a few steps (connect, a greeting, a
command, a reply). Each step gets the time left of one budget, the check's
timeout, so a peer that accepts connections and never answers (stopped,
overloaded) holds the check's thread for about one timeout in all, never one
timeout per step. Host names are resolved by the system's resolver before
the connection, outside that budget (the health runner still answers the
probe on time).
"""

from __future__ import annotations

import socket
import time
import urllib.parse

__all__ = ["Budget", "describe", "open_socket", "public_url", "read_line", "shown_reply"]

#: The longest reply line read from a peer; a longer one is an error.
MAX_LINE = 4096


class Budget:
    """``seconds`` from now, to be shared by every step of one check."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self._start = time.perf_counter()
        self._end = time.monotonic() + self.seconds

    def left(self) -> float:
        """Seconds left; raises ``TimeoutError`` once none are."""
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no time left")
        return remaining

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._start) * 1000, 3)


def describe(exc: BaseException, budget: Budget) -> str:
    """What went wrong, in words fit for the health document's ``output``."""
    # smtplib and others turn a socket timeout into an error of their own.
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return f"no answer within {budget.seconds:g} s"
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def open_socket(
    host: str | None, port: int | None, path: str | None, budget: Budget
) -> socket.socket:
    """A TCP connection to ``host:port`` (or a Unix socket at ``path``), bounded by ``budget``."""
    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(budget.left())
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((host, port), timeout=budget.left())


def read_line(sock: socket.socket, budget: Budget, pending: bytearray | None = None) -> bytes:
    """One ``\\r\\n``-terminated line (without it), each ``recv`` bounded by the budget.

    ``pending`` keeps bytes read past the line for the next call.
    """
    buffer = pending if pending is not None else bytearray()
    while True:
        end = buffer.find(b"\r\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            return line
        if len(buffer) > MAX_LINE:
            raise ValueError(f"a reply line longer than {MAX_LINE} bytes")
        sock.settimeout(budget.left())
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the connection was closed before a reply")
        buffer += chunk


def public_url(url: str) -> str:
    """``url`` without user name, password, query string or fragment: safe for any output."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def shown_reply(line: bytes, limit: int = 200) -> str:
    """A peer's reply line for an ``output``: decoded, printable, cut at ``limit`` characters."""
    text = line.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."
