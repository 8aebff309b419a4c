"""The Redis health check: one ``PING`` per server, bounded in time, no client library needed.

The check speaks the few lines of Redis's protocol it needs over a plain
socket (``AUTH`` when the URL or the cache's options carry a password, then
``PING``), so it works whether the project uses redis-py, django-redis or
nothing at all, and nothing retries behind its back: one connection, one
attempt, every step within the time left of the check's timeout. A Redis
that accepts connections and never answers (stopped, loading, swapped out)
fails on time, holding the check's thread for about one timeout.

Which servers: the ``url`` option, else the ``LOCATION`` of the ``cache``
alias (default ``"default"``) when its backend is Django's ``RedisCache`` or
django-redis's. A ``LOCATION`` naming several servers (Django's ``RedisCache``
writes to the first and reads from the others) gives one component per
server, and each must answer: a replica that hangs hangs the reads sent to it.
"""

from __future__ import annotations

import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from django_observability.conf import valid_or_default
from django_observability.health.base import FAIL, PASS, Component, HealthCheck, HealthError
from django_observability.health.net import (
    Budget,
    describe,
    open_socket,
    public_url,
    read_line,
    shown_reply,
)

__all__ = ["REDIS_BACKENDS", "RedisCheck", "RedisServer", "cache_servers"]

#: Cache backends whose ``LOCATION`` holds Redis URLs.
REDIS_BACKENDS = frozenset(
    {
        "django.core.cache.backends.redis.RedisCache",
        "django_redis.cache.RedisCache",
    }
)

DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisServer:
    """Where one Redis listens and how to log in; ``shown`` is safe to print."""

    shown: str
    host: str | None = None
    port: int = DEFAULT_PORT
    path: str | None = None
    tls: bool = False
    verify: bool = True
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(
        cls, url: str, username: str | None = None, password: str | None = None
    ) -> RedisServer:
        """``redis://``, ``rediss://`` (TLS) or ``unix://`` URL; its user and password win."""
        parts = urllib.parse.urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in {"redis", "rediss", "unix"}:
            raise HealthError(f"{public_url(url)}: not a redis://, rediss:// or unix:// URL")
        if parts.username:
            username = urllib.parse.unquote(parts.username)
        if parts.password:
            password = urllib.parse.unquote(parts.password)
        query = urllib.parse.parse_qs(parts.query)
        shown = public_url(url)
        if scheme == "unix":
            return cls(shown, path=parts.path, username=username, password=password)
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise HealthError(f"{shown}: not a valid port") from None
        cert_reqs = (query.get("ssl_cert_reqs") or ["required"])[0].lower()
        return cls(
            shown,
            host=parts.hostname or "localhost",
            port=port,
            tls=scheme == "rediss",
            # The URL's own ssl_cert_reqs=none, as redis-py reads it; verified otherwise.
            verify=cert_reqs not in {"none", "cert_none"},
            ca_file=(query.get("ssl_ca_certs") or [None])[0],
            username=username,
            password=password,
        )


def cache_servers(alias: str) -> list[RedisServer]:
    """The Redis servers behind ``CACHES[alias]``; a :class:`HealthError` if it is not Redis."""
    caches = getattr(settings, "CACHES", {})
    config = caches.get(alias)
    if config is None:
        raise HealthError(f"no cache alias {alias!r} in CACHES")
    backend = config.get("BACKEND", "")
    if backend not in REDIS_BACKENDS:
        raise HealthError(f"CACHES[{alias!r}] is not a Redis cache ({backend})")
    location = config.get("LOCATION") or ""
    urls = location.split(",") if isinstance(location, str) else list(location)
    urls = [u for url in urls for u in str(url).split(";") if u.strip()]
    if not urls:
        raise HealthError(f"CACHES[{alias!r}] has no LOCATION")
    options = config.get("OPTIONS") or {}
    # Django's RedisCache hands OPTIONS to redis-py's pool ("password",
    # "username"); django-redis spells its own "PASSWORD".
    username = options.get("username") or options.get("USERNAME")
    password = options.get("password") or options.get("PASSWORD")
    return [RedisServer.from_url(url, username, password) for url in urls]


def _command(*args: str) -> bytes:
    """A command in Redis's protocol (an array of bulk strings)."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def ping(server: RedisServer, budget: Budget) -> None:
    """Connect, log in if need be, ``PING``; raises unless Redis answers ``+PONG`` in time."""
    sock = open_socket(server.host, server.port, server.path, budget)
    try:
        if server.tls:
            context = ssl.create_default_context(cafile=server.ca_file)
            if not server.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            sock.settimeout(budget.left())
            sock = context.wrap_socket(sock, server_hostname=server.host)
        pending = bytearray()
        if server.password:
            user = (server.username,) if server.username else ()
            sock.settimeout(budget.left())
            sock.sendall(_command("AUTH", *user, server.password))
            reply = read_line(sock, budget, pending)
            if not reply.startswith(b"+"):
                raise HealthError(f"AUTH: {shown_reply(reply)}")
        sock.settimeout(budget.left())
        sock.sendall(_command("PING"))
        reply = read_line(sock, budget, pending)
        if reply != b"+PONG":
            raise HealthError(f"PING: {shown_reply(reply)}")
    finally:
        sock.close()


class RedisCheck(HealthCheck):
    """One ``PING`` to each Redis server, all within the check's timeout.

    Options: ``url`` (``redis://[user:password@]host:port/db``, ``rediss://``
    for TLS, ``unix:///path``), else ``cache`` (a ``CACHES`` alias whose
    backend is Django's or django-redis's ``RedisCache``; default
    ``"default"``), and ``timeout``. One component per server:
    ``componentId`` its URL without password or query, ``observedValue`` the
    round trip in milliseconds.
    """

    url: str | None = None
    cache: str = "default"
    component_type = "datastore"

    def servers(self) -> list[RedisServer]:
        if self.url:
            return [RedisServer.from_url(str(self.url))]
        return cache_servers(self.cache)

    def run(self) -> list[Component]:
        budget = Budget(float(self.timeout or valid_or_default("HEALTH_TIMEOUT")))
        components = []
        for server in self.servers():
            start = budget.elapsed_ms()
            try:
                budget.left()
            except TimeoutError:
                output = (
                    f"{server.shown}: not checked, the timeout was spent on the servers before it"
                )
                components.append(self._component(server, FAIL, output=output))
                continue
            try:
                ping(server, budget)
            except (HealthError, OSError, ValueError) as exc:
                output = str(exc) if isinstance(exc, HealthError) else describe(exc, budget)
                components.append(self._component(server, FAIL, output=f"{server.shown}: {output}"))
                continue
            components.append(
                self._component(server, observed_value=round(budget.elapsed_ms() - start, 3))
            )
        return components

    def _component(self, server: RedisServer, status: str = PASS, **fields: Any) -> Component:
        return Component(
            status=status,
            component_id=server.shown,
            component_type=self.component_type,
            observed_unit=None if status == FAIL else "ms",
            **fields,
        )
