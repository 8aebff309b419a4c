"""The HTTP dependency health check: one request to a URL, an expected status, bounded in time.

The request is sent with the standard library's ``http.client`` (no
``requests`` or ``httpx`` needed), without retries and without proxies from
the environment: it goes where the URL says. Connecting (with the TLS
handshake), sending and reading the status line and headers each get the
time left of the check's timeout, so a server that accepts connections and
never answers fails on time, holding the check's thread for about one
timeout. The body is not read.

TLS certificates are verified against the system's CAs (or ``ca_file``).

Redirects: a ``3xx`` listed in ``expected_status`` is the answer and is not
followed. Other redirects are followed, at most ``max_redirects`` times and
within the same budget, only on the same host name and never from
``https`` down to ``http``; a redirect anywhere else fails the check and
says where it pointed (an answer from another host says nothing about this
dependency, and credentials in the URL must not travel there).

What the check shows (``componentId``, ``output``) never carries the URL's
user name, password or query string.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import urllib.parse
from collections.abc import Collection, Mapping
from typing import Any

from django_observability.conf import valid_or_default
from django_observability.health.base import Component, HealthCheck, HealthError
from django_observability.health.net import Budget, describe, public_url

__all__ = ["HttpCheck", "expected_statuses"]

METHODS = frozenset({"GET", "HEAD"})
USER_AGENT = "django-observability health check"


def expected_statuses(value: int | Collection[int]) -> frozenset[int]:
    """``200``, ``[200, 204]``, ``range(200, 400)``... as a set of status codes."""
    try:
        codes = [value] if isinstance(value, int) else list(value)
    except TypeError:
        codes = []
    if (
        isinstance(value, str)
        or not codes
        or not all(isinstance(c, int) and 100 <= c <= 599 for c in codes)
    ):
        raise ValueError(f"expected_status must be status codes (100-599), not {value!r}")
    return frozenset(codes)


def _shown_statuses(codes: frozenset[int]) -> str:
    ordered = sorted(codes)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(str(c) for c in ordered)


def _may_follow(current: urllib.parse.SplitResult, target: urllib.parse.SplitResult) -> bool:
    """Same host name, and never from https down to http."""
    if target.scheme not in {"http", "https"}:
        return False
    if (current.hostname or "").lower() != (target.hostname or "").lower():
        return False
    return not (current.scheme == "https" and target.scheme == "http")


class HttpCheck(HealthCheck):
    """Sends one ``GET`` (or ``HEAD``) to ``url``; passes when the status is expected.

    Options: ``url`` (required; ``http://`` or ``https://``; a user and
    password in it are sent as Basic credentials), ``expected_status`` (an
    int or a collection of them, ``range(200, 300)`` too; default 200),
    ``method`` (``"GET"`` or ``"HEAD"``), ``headers`` (a dict sent with the
    request, e.g. a token; never shown), ``ca_file`` (a PEM bundle to verify
    the server's certificate with, instead of the system's), ``max_redirects``
    (3; 0 follows none) and ``timeout``. ``componentId`` is the URL without
    credentials or query string; ``observedValue`` the time to the response
    headers in milliseconds.
    """

    url: str | None = None
    expected_status: int | Collection[int] = 200
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    ca_file: str | None = None
    max_redirects: int = 3
    component_type = "component"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not self.url or urllib.parse.urlsplit(str(self.url)).scheme not in {"http", "https"}:
            raise ValueError("HttpCheck needs a url option starting with http:// or https://")
        self.method = str(self.method).upper()
        if self.method not in METHODS:
            raise ValueError(f"HttpCheck's method is GET or HEAD, not {self.method!r}")
        self._expected = expected_statuses(self.expected_status)

    def run(self) -> Component:
        budget = Budget(float(self.timeout or valid_or_default("HEALTH_TIMEOUT")))
        url = str(self.url)
        shown = public_url(url)
        try:
            status, final = self._request(url, budget)
        except HealthError:
            raise
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise HealthError(f"{self.method} {shown}: {describe(exc, budget)}") from exc
        if status not in self._expected:
            where = shown if final == url else f"{shown} (redirected to {public_url(final)})"
            raise HealthError(
                f"{self.method} {where} answered {status}, "
                f"expected {_shown_statuses(self._expected)}"
            )
        return Component(
            component_id=shown,
            component_type=self.component_type,
            observed_value=budget.elapsed_ms(),
            observed_unit="ms",
        )

    def _request(self, url: str, budget: Budget) -> tuple[int, str]:
        """The status the URL answers, after the redirects allowed; and the last URL asked."""
        parts = urllib.parse.urlsplit(url)
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
        if parts.username is not None:
            userinfo = urllib.parse.unquote(parts.username)
            userinfo += ":" + urllib.parse.unquote(parts.password or "")
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        headers.update(self.headers or {})
        for hop in range(int(self.max_redirects) + 1):
            status, location = self._send(parts, headers, budget)
            if status in self._expected or not (300 <= status < 400 and location):
                return status, urllib.parse.urlunsplit(parts)
            here = urllib.parse.urlunsplit(parts)
            target = urllib.parse.urlsplit(urllib.parse.urljoin(here, location))
            if not _may_follow(parts, target):
                raise HealthError(
                    f"{self.method} {public_url(url)} answered {status}, redirected to "
                    f"{public_url(urllib.parse.urlunsplit(target))}: another host, not followed"
                )
            if hop == int(self.max_redirects):
                return status, urllib.parse.urlunsplit(parts)
            parts = target
        return status, urllib.parse.urlunsplit(parts)  # pragma: no cover - the loop returns

    def _send(
        self, parts: urllib.parse.SplitResult, headers: dict[str, str], budget: Budget
    ) -> tuple[int, str | None]:
        host = parts.hostname or ""
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=self.ca_file)
            connection = http.client.HTTPSConnection(
                host, parts.port, timeout=budget.left(), context=context
            )
        else:
            connection = http.client.HTTPConnection(host, parts.port, timeout=budget.left())
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(self.method, target, headers=headers)
            if connection.sock is not None:
                connection.sock.settimeout(budget.left())
            response = connection.getresponse()
            return response.status, response.getheader("Location")
        finally:
            connection.close()
