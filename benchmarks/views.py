"""Small views: the benchmark measures the stack around them, not their work."""

from __future__ import annotations

from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def text(request, **kwargs):
    return HttpResponse("ok\n", content_type="text/plain")


def page(request, **kwargs):
    return HttpResponse("<!doctype html><title>bench</title><p>" + "x" * 512 + "</p>")


def data(request, **kwargs):
    return JsonResponse({"ok": True, "kwargs": {k: str(v) for k, v in kwargs.items()}})


def items(request):
    return JsonResponse({"items": [{"id": i, "name": f"item {i}"} for i in range(10)]})


def search(request):
    return JsonResponse({"q": request.GET.get("q", ""), "page": request.GET.get("page", "1")})


@csrf_exempt
def submit(request):
    return JsonResponse({"received": len(request.body)}, status=201)


def go(request):
    return HttpResponseRedirect("/")


def empty(request):
    return HttpResponse(status=204)


def missing(request, pk):
    raise Http404("no such thing")
