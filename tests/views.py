import asyncio

from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse


class BoomError(Exception):
    pass


def ok(request, **kwargs):
    return HttpResponse("ok")


async def async_ok(request, **kwargs):
    await asyncio.sleep(0)
    return HttpResponse("async ok")


def boom(request):
    raise BoomError("the view failed")


async def async_boom(request):
    raise BoomError("the async view failed")


def not_found(request, **kwargs):
    raise Http404("no such item")


def forbidden(request):
    raise PermissionDenied


def created(request):
    return HttpResponse("x" * 1500, status=201)


def stream(request):
    def chunks():
        for _ in range(10):
            yield b"0123456789"

    return StreamingHttpResponse(chunks())


async def async_stream(request):
    async def chunks():
        for _ in range(5):
            await asyncio.sleep(0)
            yield b"abcde"

    return StreamingHttpResponse(chunks())


def file(request):
    return FileResponse(open(__file__, "rb"))
