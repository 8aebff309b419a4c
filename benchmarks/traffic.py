"""The request mix, as PEP 3333 environ dicts, and a minimal WSGI client."""

from __future__ import annotations

import io
import random
import sys
from collections.abc import Callable, Iterable
from typing import Any

_USER = "6f1c1f0e-3b5a-4c1e-9a53-2d7f6c1b8e41"
_ORDER = "0b8f4a52-9d3e-4f7a-8c21-5e6d7f8a9b0c"

# method, path, query string, body, extra headers, expected status, weight (sums to 100)
MIX: list[tuple[str, str, str, bytes, dict[str, str], int, int]] = [
    ("GET", "/", "", b"", {}, 200, 6),
    ("GET", "/ping/", "", b"", {}, 200, 7),
    ("GET", "/articles/2024/", "", b"", {}, 200, 5),
    ("GET", "/articles/2024/05/", "", b"", {}, 200, 4),
    ("GET", "/articles/2024/05/hello-world/", "", b"", {}, 200, 6),
    ("GET", f"/users/{_USER}/", "", b"", {"HTTP_X_REQUEST_ID": "lb-7f3a9c"}, 200, 6),
    ("GET", "/files/docs/guide/intro.txt", "", b"", {}, 200, 4),
    ("GET", "/search/", "q=django&page=2", b"", {}, 200, 5),
    ("GET", "/api/v1/items/", "", b"", {"HTTP_X_REQUEST_ID": "lb-11aa22"}, 200, 8),
    ("GET", "/api/v1/items/42/", "", b"", {}, 200, 8),
    ("HEAD", "/api/v1/items/42/", "", b"", {}, 200, 2),
    ("GET", "/api/v1/items/42/comments/", "", b"", {}, 200, 4),
    ("GET", f"/api/v1/orders/{_ORDER}/", "", b"", {}, 200, 4),
    ("GET", f"/api/v1/orders/{_ORDER}/lines/3/", "", b"", {}, 200, 3),
    ("POST", "/api/v1/submit/", "", b'{"sku": "A-1", "qty": 2}', {}, 201, 4),
    ("GET", "/archive/2023/", "", b"", {}, 200, 3),
    ("GET", "/legacy/abc/12.html", "", b"", {}, 200, 3),
    ("GET", "/go/", "", b"", {}, 302, 2),
    ("GET", "/empty/", "", b"", {}, 204, 2),
    ("GET", "/articles/missing/7/", "", b"", {}, 404, 2),
    ("GET", "/nope/", "", b"", {}, 404, 4),
    ("GET", "/wp-login.php", "", b"", {}, 404, 3),
    ("GET", "/api/v1/unknown/", "", b"", {}, 404, 3),
    ("GET", "/articles/2024", "", b"", {}, 301, 2),  # APPEND_SLASH redirect
]

assert sum(entry[-1] for entry in MIX) == 100


def environ(
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A PEP 3333 environ as gunicorn would build it (without wsgi.input)."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.7",
        "REMOTE_PORT": "51234",
        "HTTP_HOST": "testserver",
        "HTTP_USER_AGENT": "bench/1.0",
        "HTTP_ACCEPT": "*/*",
        "HTTP_CONNECTION": "keep-alive",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "_body": body,
    }
    if body:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(body))
    if headers:
        env.update(headers)
    return env


def request_sequence(seed: int = 3333) -> list[tuple[dict[str, Any], int]]:
    """The mix as (environ template, expected status), 100 entries in a fixed shuffled order."""
    sequence = []
    for method, path, query, body, headers, status, weight in MIX:
        sequence.extend([(environ(method, path, query, body, headers), status)] * weight)
    random.Random(seed).shuffle(sequence)
    return sequence


class Client:
    """Calls a WSGI application the way a server does: fresh environ, consume, close."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.status = ""

    def _start_response(self, status: str, headers: list[tuple[str, str]], exc_info=None):
        self.status = status
        return self._write

    @staticmethod
    def _write(data: bytes) -> None:  # pragma: no cover - legacy write() callable
        pass

    def __call__(self, template: dict[str, Any]) -> tuple[int, bytes]:
        """One request; returns (status code, body)."""
        env = template.copy()
        env["wsgi.input"] = io.BytesIO(env.pop("_body"))
        result = self.app(env, self._start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return int(self.status[:3]), body
