"""The endpoint permission rules: who may read ``/metrics`` and the health details.

``OBSERVABILITY_AUTH_TOKEN`` and ``OBSERVABILITY_ALLOWED_IPS`` each grant access
on their own: a caller with the token *or* from an allowed address gets in.
With neither set, access is open.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from enum import Enum

from django.http import HttpRequest, HttpResponse

from django_observability.conf import valid_or_default

# Longest Authorization header we read. Anything longer is refused unread.
MAX_AUTHORIZATION_LENGTH = 4096


class Access(Enum):
    GRANTED = "granted"
    NO_CREDENTIALS = "no_credentials"  # 401: say how to authenticate
    DENIED = "denied"  # 403


@functools.lru_cache(maxsize=8)
def _networks(
    allowed: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed)


def _parse(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(request: HttpRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The caller's address: ``REMOTE_ADDR``, or behind trusted proxies the nearest hop
    in ``X-Forwarded-For`` that is not one of them.

    ``X-Forwarded-For`` is believed only when ``REMOTE_ADDR`` is in
    ``OBSERVABILITY_TRUSTED_PROXIES``; the list is read from the right (the
    hop nearest to us), skipping trusted proxies, so a client cannot choose
    its address by sending the header itself.
    """
    address = _parse(request.META.get("REMOTE_ADDR") or "")
    trusted = tuple(valid_or_default("TRUSTED_PROXIES"))
    if address is None or not trusted:
        return address
    proxies = _networks(trusted)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = forwarded.split(",")[-32:] if len(forwarded) <= 4096 else []
    while any(address in network for network in proxies) and hops:
        hop = _parse(hops.pop())
        if hop is None:
            return None
        address = hop
    return address


def _address_allowed(request: HttpRequest, allowed: tuple[str, ...]) -> bool:
    address = client_address(request)
    if address is None:
        return False
    return any(address in network for network in _networks(allowed))


def bearer_token(request: HttpRequest) -> bytes | None:
    """The raw bytes of an ``Authorization: Bearer`` token, or ``None``.

    WSGI and ASGI servers hand Django header values decoded as Latin-1, so
    encoding back to Latin-1 recovers the bytes the client sent.
    """
    header = request.META.get("HTTP_AUTHORIZATION")
    if not header or len(header) > MAX_AUTHORIZATION_LENGTH:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def token_matches(request: HttpRequest, token: str) -> bool:
    """Constant-time comparison of the request's bearer token with ``token``."""
    provided = bearer_token(request)
    if provided is None:
        return False
    return hmac.compare_digest(provided, token.encode("utf-8"))


def credentials_match(request: HttpRequest) -> bool:
    """Whether the caller has the configured token or comes from an allowed address.

    Unlike :func:`check_access`, nothing configured means nobody matches.
    """
    token = valid_or_default("AUTH_TOKEN")
    allowed = tuple(valid_or_default("ALLOWED_IPS"))
    if allowed and _address_allowed(request, allowed):
        return True
    return token is not None and token_matches(request, token)


def check_access(request: HttpRequest) -> Access:
    """Whether the caller may read protected endpoints."""
    token = valid_or_default("AUTH_TOKEN")
    allowed = tuple(valid_or_default("ALLOWED_IPS"))
    if token is None and not allowed:
        return Access.GRANTED
    if allowed and _address_allowed(request, allowed):
        return Access.GRANTED
    if token is not None:
        if token_matches(request, token):
            return Access.GRANTED
        if bearer_token(request) is None:
            return Access.NO_CREDENTIALS
    return Access.DENIED


def refusal(access: Access) -> HttpResponse:
    """The response for a caller who may not read the endpoint."""
    if access is Access.NO_CREDENTIALS:
        response = HttpResponse(
            "Authentication required.\n", status=401, content_type="text/plain; charset=utf-8"
        )
        response["WWW-Authenticate"] = 'Bearer realm="django-observability"'
        return response
    return HttpResponse("Forbidden.\n", status=403, content_type="text/plain; charset=utf-8")


def head_without_body(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Our endpoints' answer to ``HEAD``: the headers of ``GET``, no body.

    ``Content-Length`` is the length the body would have. Django leaves the
    body in place for the server to drop (gunicorn warns when it has to).
    """
    response["Content-Length"] = str(len(response.content))
    if request.method == "HEAD":
        response.content = b""
    return response


def reset() -> None:
    """Forget the parsed networks (called when an ``OBSERVABILITY_*`` setting changes)."""
    _networks.cache_clear()
