"""The endpoint permission rules (``permissions.py``): token or allowed address, read safely."""

import pytest
from django.test import Client, override_settings

from tests.clients import AsyncHTTP, SyncHTTP


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


@override_settings(OBSERVABILITY_AUTH_TOKEN=None, OBSERVABILITY_ALLOWED_IPS=[])
def test_public_when_nothing_is_configured(http):
    assert http.get("/metrics").status_code == 200


def test_token_required(http):
    response = http.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert (
        http.get("/metrics", headers={"Authorization": "bearer test-token-0123456789"}).status_code
        == 200
    )
    assert (
        http.get(
            "/metrics", headers={"Authorization": "Bearer  test-token-0123456789 "}
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    "header",
    [
        "Bearer " + "x" * 10_000,
        "Bearer tëst-tökén",
        "Bearer \x00\x01\x02",
        "Basic dGVzdDp0ZXN0",
        "Bearer",
        "Bearer test-token-0123456789\r\nX: y",
        "",
        "Bearer test-token-0123456789-but-longer",
    ],
)
def test_hostile_authorization_headers(header):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code in (401, 403)
    assert b"http_server" not in response.content


@override_settings(OBSERVABILITY_AUTH_TOKEN="tëst-tökén")
def test_non_ascii_token_compared_as_bytes():
    # What a WSGI server hands Django for the UTF-8 bytes the client sent.
    as_latin1 = "tëst-tökén".encode().decode("latin-1")
    client = Client()
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {as_latin1}").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer tëst-tökén").status_code == 403


@override_settings(OBSERVABILITY_AUTH_TOKEN=None, OBSERVABILITY_ALLOWED_IPS=["10.0.0.0/8", "::1"])
def test_allowed_ips():
    client = Client()
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:10.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="not-an-ip").status_code == 403


@override_settings(OBSERVABILITY_ALLOWED_IPS=["10.0.0.0/8"])
def test_token_or_address(http):
    client = Client()
    assert client.get("/metrics", REMOTE_ADDR="10.9.9.9").status_code == 200
    assert (
        client.get(
            "/metrics",
            REMOTE_ADDR="8.8.8.8",
            **{"HTTP_AUTHORIZATION": "Bearer test-token-0123456789"},
        ).status_code
        == 200
    )
    assert client.get("/metrics", REMOTE_ADDR="8.8.8.8").status_code == 401


@override_settings(OBSERVABILITY_AUTH_TOKEN=None, OBSERVABILITY_ALLOWED_IPS=["10.0.0.0/8"])
def test_address_checked_under_asgi():
    # The ASGI scope's "client" is the address Django sees.
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    def status_from(address):
        scope = {"method": "GET", "path": "/metrics", "query_string": "", "client": address}
        scope["headers"] = [(b"host", b"testserver")]
        return async_to_sync(AsyncClient().request)(**scope).status_code

    assert status_from(["127.0.0.1", 4242]) == 403
    assert status_from(["10.0.0.5", 4242]) == 200


@override_settings(
    OBSERVABILITY_AUTH_TOKEN=None,
    OBSERVABILITY_ALLOWED_IPS=["10.0.0.0/8"],
    OBSERVABILITY_TRUSTED_PROXIES=["127.0.0.1"],
)
def test_forwarded_address_believed_only_from_a_trusted_proxy():
    client = Client()
    assert (
        client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.1.1")
    ).status_code == 200
    # Not from a trusted proxy: the header is ignored.
    assert (
        client.get("/metrics", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="10.1.1.1")
    ).status_code == 403
    # The nearest untrusted hop is 192.0.2.1, whatever the client put before it.
    assert (
        client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.1.1, 192.0.2.1")
    ).status_code == 403
