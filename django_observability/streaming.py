"""Streamed bodies: recorded when the server closes them, counted as they are sent.

A streaming or file response leaves the middleware before its body is
produced. Its request is recorded when the server closes the response, with
the bytes actually sent; an exception raised by the body's generator is
counted and marks the span, though the status line has long gone out. The
body of a request that makes no spans is produced with spans suppressed.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

from django.http.response import HttpResponseBase

from django_observability.completion import complete
from django_observability.context import RequestState
from django_observability.faults import fault
from django_observability.formats import exception_name
from django_observability.tracing import end_suppression, suppress_spans

__all__ = ["complete_on_close", "suppress_spans_in"]


def complete_on_close(state: RequestState, response: HttpResponseBase) -> None:
    """For a streaming response: record when the server closes it, count bytes as sent.

    The body is watched while the server iterates it: an exception raised by
    the view's generator is counted (``http_server_exceptions_total``) and
    marks the span, though the status line has long been sent.
    """
    count = False
    if state.method == "HEAD":
        state.body_bytes = 0
    else:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            state.body_bytes = int(length)
        else:
            state.body_bytes = 0
            count = True
    # A FileResponse of known length keeps its file for the server's
    # wsgi.file_wrapper (sendfile): its body is not wrapped.
    if count or getattr(response, "file_to_stream", None) is None:
        content = response.streaming_content  # type: ignore[attr-defined]
        if getattr(response, "is_async", False):
            response.streaming_content = _watch_async(content, state, count)  # type: ignore[attr-defined]
        else:
            response.streaming_content = _watch_sync(content, state, count)  # type: ignore[attr-defined]
    close = response.close

    def close_and_record() -> None:
        try:
            close()
        finally:
            try:
                complete(state)
            except Exception:
                fault("request metrics (stream close)")

    response.close = close_and_record  # type: ignore[method-assign]


def suppress_spans_in(response: HttpResponseBase) -> None:
    """Run each step of a streamed body with spans suppressed (excluded, exempt requests).

    A FileResponse of known length is left alone (sendfile; files make no spans).
    """
    try:
        if getattr(response, "file_to_stream", None) is not None:
            return
        content = response.streaming_content  # type: ignore[attr-defined]
        if getattr(response, "is_async", False):
            response.streaming_content = _no_spans_async(content)  # type: ignore[attr-defined]
        else:
            response.streaming_content = _no_spans_sync(content)  # type: ignore[attr-defined]
    except Exception:
        fault("streamed body (no spans)")


def _no_spans_sync(content: Iterable[bytes]) -> Iterator[bytes]:
    iterator = iter(content)
    while True:
        token = suppress_spans()
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        finally:
            end_suppression(token)
        yield chunk


async def _no_spans_async(content: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    iterator = aiter(content)
    while True:
        token = suppress_spans()
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        finally:
            end_suppression(token)
        yield chunk


def _stream_failed(state: RequestState, exc: Exception) -> None:
    """The body's generator raised: count it and record the request now.

    Now, not at close: an ASGI server whose response failed does not close it
    (Django's ASGIHandler closes only responses that were sent in full).
    """
    try:
        if state.done or state.exc is not None:
            return
        state.exc = exc
        if state.metrics is not None and not state.excluded:
            state.metrics.count_exception(state.series_route, exception_name(exc))
    except Exception:
        fault("request metrics (stream error)")
    try:
        complete(state)
    except Exception:
        fault("request metrics (stream error)")


def _watch_sync(content: Iterator[bytes], state: RequestState, count: bool) -> Iterator[bytes]:
    try:
        for chunk in content:
            if count:
                state.body_bytes += len(chunk)  # type: ignore[operator]
            yield chunk
    except Exception as exc:
        _stream_failed(state, exc)
        raise


async def _watch_async(
    content: AsyncIterator[bytes], state: RequestState, count: bool
) -> AsyncIterator[bytes]:
    try:
        async for chunk in content:
            if count:
                state.body_bytes += len(chunk)  # type: ignore[operator]
            yield chunk
    except Exception as exc:
        _stream_failed(state, exc)
        raise
