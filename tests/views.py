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


def stream_fails(request):
    def chunks():
        yield b"first"
        raise BoomError("generator failed")

    return StreamingHttpResponse(chunks())


async def async_stream_fails(request):
    async def chunks():
        yield b"first"
        raise BoomError("generator failed")

    return StreamingHttpResponse(chunks())


def file(request):
    return FileResponse(open(__file__, "rb"))


def inflight(request):
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("http_server_active_requests", {"method": request.method})
    return HttpResponse(str(value))


def request_ids(request):
    from django_observability import get_request_id

    return HttpResponse(f"{request.request_id} {get_request_id()}")


async def async_request_ids(request):
    from asgiref.sync import sync_to_async

    from django_observability import get_request_id

    in_thread = await sync_to_async(get_request_id)()
    return HttpResponse(f"{request.request_id} {get_request_id()} {in_thread}")


def raise_numbered(request, n):
    # A distinct exception class per n: stands for a code base with many.
    raise type(f"Numbered{n}Error", (Exception,), {})("numbered")


def exempt(request):
    return HttpResponse("exempt")


async def async_exempt(request):
    return HttpResponse("async exempt")


def exempt_work(request):
    """An exempt view that queries and traces a block: none of it may make a span."""
    from django.contrib.auth.models import Group

    from django_observability.tracing import trace_operation

    with trace_operation("exempt work") as span:
        count = Group.objects.count()
    return HttpResponse(f"{count} {span is None}")


def exempt_numbered(request, n):
    return HttpResponse(f"exempt {n}")


def stream_work(request):
    """A streamed body that queries and traces a block while it is sent."""
    from django.contrib.auth.models import Group

    from django_observability.tracing import trace_operation

    def chunks():
        with trace_operation("streamed work"):
            yield str(Group.objects.count()).encode()
        yield b" done"

    return StreamingHttpResponse(chunks())


async def async_stream_work(request):
    from django_observability.tracing import trace_operation

    async def chunks():
        with trace_operation("streamed work"):
            await asyncio.sleep(0)
            yield b"async"
        yield b" done"

    return StreamingHttpResponse(chunks())


async def async_exempt_work(request):
    from django_observability.tracing import trace_operation

    with trace_operation("exempt work") as span:
        await asyncio.sleep(0)
    return HttpResponse(f"async {span is None}")


def db_view(request):
    from django.contrib.auth.models import Group

    Group.objects.create(name="secret-value")
    names = list(Group.objects.filter(name="secret-value").values_list("name", flat=True))
    Group.objects.filter(name="secret-value").delete()
    return HttpResponse(str(len(names)))


def db_error(request):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    return HttpResponse("unreachable")


def suspicious(request):
    from django.core.exceptions import SuspiciousOperation

    raise SuspiciousOperation("tampered with")


def create_group(request):
    from django.contrib.auth.models import Group

    request.user
    group = Group.objects.create(name=request.POST.get("name", "editors"))
    return HttpResponse(str(group.pk), status=201)


async def async_login(request):
    from django.contrib.auth import aauthenticate, alogin

    user = await aauthenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponse("no", status=401)
    await alogin(request, user)
    return HttpResponse("yes")


async def async_logout(request):
    from django.contrib.auth import alogout

    await alogout(request)
    return HttpResponse("bye")


def csrf_protected(request):
    return HttpResponse("posted")


async def whoami(request):
    user = await request.auser()
    return HttpResponse(str(user.pk))


def login_form(request):
    return HttpResponse("ok")


def refined_page(request, path):
    """A catch-all view naming the series of each request after the kind of page it serves."""
    from django_observability import refine_route

    refine_route(request, request.GET.get("kind") and f"page:{request.GET['kind']}")
    if request.GET.get("fail"):
        raise BoomError("the page failed")
    return HttpResponse(path)


async def async_refined_page(request, path):
    from django_observability import refine_route

    refine_route(request, request.GET.get("kind") and f"page:{request.GET['kind']}")
    return HttpResponse(path)


def refined_stream_fails(request):
    """A refined route whose streamed body fails: the failure is counted under the refinement."""
    from django_observability import refine_route

    refine_route(request, "stream:refined")
    return stream_fails(request)
