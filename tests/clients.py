"""One interface over Django's sync and async test clients.

Streaming bodies are read to the end (which closes the response, as a server
would), so every test sees the request completed.
"""

from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client


class SyncHTTP:
    mode = "sync"

    def __init__(self, **kwargs):
        self.client = Client(raise_request_exception=False, **kwargs)

    def request(self, method, path, *, consume=True, **kwargs):
        if isinstance(kwargs.get("data"), dict):
            response = self.client.post(path, **kwargs)  # form-encoded
        else:
            response = self.client.generic(method, path, **kwargs)
        response.body = b""
        if response.streaming and consume:
            if response.is_async:

                async def read():
                    return b"".join([chunk async for chunk in response.streaming_content])

                response.body = async_to_sync(read)()
            else:
                response.body = b"".join(response.streaming_content)
        elif not response.streaming:
            response.body = response.content
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)


class AsyncHTTP:
    mode = "async"

    def __init__(self, **kwargs):
        self.client = AsyncClient(raise_request_exception=False, **kwargs)

    def request(self, method, path, *, consume=True, **kwargs):
        async def run():
            if isinstance(kwargs.get("data"), dict):
                response = await self.client.post(path, **kwargs)  # form-encoded
            else:
                response = await self.client.generic(method, path, **kwargs)
            response.body = b""
            if response.streaming and consume:
                if response.is_async:
                    response.body = b"".join([chunk async for chunk in response.streaming_content])
                else:
                    response.body = b"".join(response.streaming_content)
            elif not response.streaming:
                response.body = response.content
            return response

        return async_to_sync(run)()

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)


def consume(response):
    """The whole body of a streaming response (sync or async) from the test client."""
    if response.is_async:

        async def read():
            return b"".join([chunk async for chunk in response.streaming_content])

        return async_to_sync(read)()
    return b"".join(response.streaming_content)
