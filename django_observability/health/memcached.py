"""The Memcached health check: ``version`` to each server over a socket, bounded in time.

No client library is needed (pymemcache and pylibmc need not be installed
where the check runs): the check sends memcached's ``version`` command and
reads the ``VERSION ...`` line, each step within the time left of the
check's timeout, so a server that accepts connections and never answers
fails on time, holding the check's thread for about one timeout.

Which servers: the ``servers`` option, else the ``LOCATION`` of the ``cache``
alias (default ``"default"``) when its backend is one of Django's memcached
backends. Every server must answer: Django's clients spread keys over the
servers by hash and do not skip a dead one, so the keys on a server that
hangs make their requests hang or fail. One component per server.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from django_observability.conf import valid_or_default
from django_observability.health.base import FAIL, Component, HealthCheck, HealthError
from django_observability.health.net import Budget, describe, open_socket, read_line, shown_reply

__all__ = ["MEMCACHED_BACKENDS", "MemcachedCheck", "MemcachedServer", "cache_servers"]

#: Cache backends whose ``LOCATION`` names memcached servers.
MEMCACHED_BACKENDS = frozenset(
    {
        "django.core.cache.backends.memcached.PyMemcacheCache",
        "django.core.cache.backends.memcached.PyLibMCCache",
    }
)

DEFAULT_PORT = 11211


@dataclass(frozen=True)
class MemcachedServer:
    """Where one memcached listens: ``host:port`` or a Unix socket ``path``."""

    shown: str
    host: str | None = None
    port: int = DEFAULT_PORT
    path: str | None = None

    @classmethod
    def parse(cls, location: str) -> MemcachedServer:
        """``host``, ``host:port``, ``[v6]:port``, ``unix:/path`` or ``/path``."""
        text = location.strip()
        if text.startswith("unix:") or text.startswith("/"):
            path = text.removeprefix("unix:")
            return cls(f"unix:{path}", path=path)
        match = re.fullmatch(
            r"\[(?P<v6>[^\]]+)\](?::(?P<p6>\d+))?|(?P<host>[^:]+)(?::(?P<port>\d+))?", text
        )
        if match is None:
            raise HealthError(f"{text!r} is not host:port or a Unix socket path")
        host = match["v6"] or match["host"]
        port = int(match["p6"] or match["port"] or DEFAULT_PORT)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return cls(shown, host=host, port=port)


def cache_servers(alias: str) -> list[str]:
    """The ``LOCATION`` of ``CACHES[alias]`` as a list; a :class:`HealthError` if not memcached."""
    config = getattr(settings, "CACHES", {}).get(alias)
    if config is None:
        raise HealthError(f"no cache alias {alias!r} in CACHES")
    backend = config.get("BACKEND", "")
    if backend not in MEMCACHED_BACKENDS:
        raise HealthError(f"CACHES[{alias!r}] is not a memcached cache ({backend})")
    location = config.get("LOCATION") or ""
    # Django splits a string LOCATION on ";" and ",".
    found = re.split("[;,]", location) if isinstance(location, str) else list(location)
    found = [str(s) for s in found if str(s).strip()]
    if not found:
        raise HealthError(f"CACHES[{alias!r}] has no LOCATION")
    return found


def version(server: MemcachedServer, budget: Budget) -> str:
    """The server's version; raises unless it answers ``VERSION ...`` in time."""
    sock = open_socket(server.host, server.port, server.path, budget)
    try:
        sock.settimeout(budget.left())
        sock.sendall(b"version\r\n")
        reply = read_line(sock, budget)
    finally:
        sock.close()
    if not reply.startswith(b"VERSION "):
        raise HealthError(f"version: {shown_reply(reply)}")
    return reply[8:].decode("ascii", "replace")


class MemcachedCheck(HealthCheck):
    """Asks each memcached server for its version, all within the check's timeout.

    Options: ``servers`` (``["host:port", "unix:/path", ...]``), else ``cache``
    (a ``CACHES`` alias with ``PyMemcacheCache`` or ``PyLibMCCache``; default
    ``"default"``), and ``timeout``. One component per server: ``componentId``
    ``host:port``, ``observedValue`` the round trip in milliseconds.
    """

    servers: Sequence[str] | str | None = None
    cache: str = "default"
    component_type = "datastore"

    def locations(self) -> list[MemcachedServer]:
        if self.servers:
            listed = (
                re.split("[;,]", self.servers) if isinstance(self.servers, str) else self.servers
            )
            return [MemcachedServer.parse(str(s)) for s in listed if str(s).strip()]
        return [MemcachedServer.parse(s) for s in cache_servers(self.cache)]

    def run(self) -> list[Component]:
        budget = Budget(float(self.timeout or valid_or_default("HEALTH_TIMEOUT")))
        components = []
        for server in self.locations():
            start = budget.elapsed_ms()
            try:
                budget.left()
            except TimeoutError:
                output = "not checked, the timeout was spent on the servers before it"
                components.append(self._failed(server, f"{server.shown}: {output}"))
                continue
            try:
                version(server, budget)
            except (HealthError, OSError, ValueError) as exc:
                output = str(exc) if isinstance(exc, HealthError) else describe(exc, budget)
                components.append(self._failed(server, f"{server.shown}: {output}"))
                continue
            components.append(
                Component(
                    component_id=server.shown,
                    component_type=self.component_type,
                    observed_value=round(budget.elapsed_ms() - start, 3),
                    observed_unit="ms",
                )
            )
        return components

    def _failed(self, server: MemcachedServer, output: str) -> Component:
        return Component(
            status=FAIL,
            component_id=server.shown,
            component_type=self.component_type,
            output=output,
        )
