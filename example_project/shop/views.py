import asyncio
import logging
import os
import time
import uuid

from django.contrib.auth import authenticate, login
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError

from django_observability.audit import record_event
from shop import background, tasks

logger = logging.getLogger("shop")


class CheckoutError(Exception):
    """What the /boom/ views raise: shows up in http_server_exceptions_total."""


ITEMS = {1: "teapot", 2: "kettle", 3: "mug"}


def index(request):
    return JsonResponse(
        {
            "service": "example-shop",
            "pid": os.getpid(),
            "request_id": request.request_id,
            "try": ["/api/v1/items/1/", "/api/v1/archive/2024/", "/boom/", "/metrics"],
        }
    )


def item_list(request):
    return JsonResponse({"items": [{"id": k, "name": v} for k, v in ITEMS.items()]})


def item_detail(request, pk):
    if pk not in ITEMS:
        raise Http404("no such item")
    return JsonResponse({"id": pk, "name": ITEMS[pk], "pid": os.getpid()})


async def async_item_detail(request, pk):
    await asyncio.sleep(0)
    if pk not in ITEMS:
        raise Http404("no such item")
    return JsonResponse({"id": pk, "name": ITEMS[pk], "pid": os.getpid(), "async": True})


def order_detail(request, order_id):
    return JsonResponse({"order": str(order_id)})


def category(request, slug):
    return JsonResponse({"category": slug})


def docs(request, page):
    return HttpResponse(f"docs: {page}", content_type="text/plain")


def archive(request, year):
    return JsonResponse({"year": int(year)})


def slow(request):
    seconds = min(float(request.GET.get("seconds", "0.3")), 5.0)
    time.sleep(seconds)
    return JsonResponse({"slept": seconds})


def boom(request):
    raise CheckoutError("checkout failed")


async def async_boom(request):
    await asyncio.sleep(0)
    raise CheckoutError("async checkout failed")


def stream(request):
    def rows():
        for i in range(100):
            yield f"{i},row {i}\n".encode()

    return StreamingHttpResponse(rows(), content_type="text/csv")


def stats(request):
    """Runs a few queries: each shows up as a span and in db_client_* metrics."""
    from django.contrib.auth.models import Group, User

    logger.info("stats requested", extra={"shop.section": "stats"})
    return JsonResponse(
        {"users": User.objects.count(), "groups": Group.objects.count(), "pid": os.getpid()}
    )


STATS_KEY = "shop:stats"


def cached_stats(request):
    """Stats kept in the cache for 30 s: a miss runs two queries and stores them, a hit none.

    Each cache operation shows up in cache_operations_total (result hit or
    miss), as a span under the request's, and in the access line's
    ``cache.hits`` / ``cache.misses``.
    """
    from django.contrib.auth.models import Group, User
    from django.core.cache import cache

    value = cache.get(STATS_KEY)
    hit = value is not None
    if not hit:
        value = {"users": User.objects.count(), "groups": Group.objects.count()}
        cache.set(STATS_KEY, value, 30)
    return JsonResponse({**value, "cached": hit})


def echo(request):
    """The default upstream: which trace and request id reached it (no other header).

    ``?status=503`` answers with that code instead of 200 (any code from 200 to
    599; anything else is a 400): a failing upstream on demand, for the
    outgoing error series (``/api/v1/upstream/?status=503``).
    """
    status = _status_param(request)
    if status is None:
        return JsonResponse({"error": "status must be a code from 200 to 599"}, status=400)
    return JsonResponse(
        {
            "traceparent": request.headers.get("traceparent"),
            "request_id": request.headers.get("X-Request-ID"),
        },
        status=status,
    )


def _status_param(request):
    """The ``status`` query parameter as an HTTP code (200 when absent), None when invalid."""
    raw = request.GET.get("status", "200")
    if not raw.isdigit() or not 200 <= int(raw) <= 599:
        return None
    return int(raw)


def upstream(request):
    """Calls ``EXAMPLE_UPSTREAM_URL`` with requests: a client span, a metric, the trace carried on.

    An upstream that is down or slow (2 s) answers 502 here, its reason in the log.
    ``?status=503`` is passed on to the upstream (the echo view answers with it):
    the call is then counted with the upstream's 503, and this view still answers
    200 with ``upstream_status``.
    """
    import requests
    from django.conf import settings

    params = {"status": request.GET["status"]} if "status" in request.GET else None
    try:
        response = requests.get(settings.EXAMPLE_UPSTREAM_URL, params=params, timeout=2.0)
    except requests.RequestException as exc:
        logger.warning("upstream unavailable: %s", type(exc).__name__)
        return JsonResponse({"error": "upstream unavailable"}, status=502)
    try:
        body = response.json()
    except ValueError:
        body = None
    return JsonResponse({"upstream_status": response.status_code, "upstream": body})


async def async_stats(request):
    from django.contrib.auth.models import Group, User

    user = await request.auser()
    logger.info("async stats requested")
    return JsonResponse(
        {
            "users": await User.objects.acount(),
            "groups": await Group.objects.acount(),
            "user_id": user.pk,
            "pid": os.getpid(),
        }
    )


@csrf_exempt
@require_POST
def api_login(request):
    """Form fields username, password. Logins and failed logins show in auth_events_total."""
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return JsonResponse({"ok": False}, status=401)
    login(request, user)
    return JsonResponse({"ok": True, "user_id": user.pk})


@csrf_exempt
@require_POST
def api_create_group(request):
    """Creates a group: auth.Group is audited (audit_events_total, an audit record)."""
    from django.contrib.auth.models import Group

    group = Group.objects.create(name=request.POST.get("name") or f"group-{uuid.uuid4().hex[:8]}")
    record_event("group_created_via_api", target=group)
    return JsonResponse({"id": group.pk}, status=201)


# What POST /api/v1/reports/?kind=... enqueues.
REPORT_TASKS = {"report": "build_report", "fail": "fail_report", "retry": "flaky_report"}


@csrf_exempt
@require_POST
def enqueue_report(request):
    """Enqueues a report task and answers 202 with its id; the worker runs it.

    ``?kind=report`` (the default) builds a report, ``fail`` a task that
    raises, ``retry`` one retried once. When the broker refuses the message
    or does not answer within the bounds the settings give Celery (a couple
    of seconds), it answers 503 with a short error and logs why.
    CSRF-exempt like the other API views here: clients are scripts with no
    session cookie to forge requests with (an API that authenticates with
    cookies would keep the CSRF check).
    """
    kind = request.GET.get("kind", "report")
    if kind not in REPORT_TASKS:
        return JsonResponse({"error": f"kind must be one of {sorted(REPORT_TASKS)}"}, status=400)
    task = getattr(tasks, REPORT_TASKS[kind])
    try:
        result = task.delay()
    except OperationalError:
        logger.exception("report not enqueued: broker unavailable")
        return JsonResponse({"error": "broker unavailable"}, status=503)
    return JsonResponse({"task_id": result.id, "task": task.name}, status=202)


# What POST /api/v1/exports/?kind=... enqueues (Django's task framework).
EXPORT_TASKS = {"orders": background.export_orders, "fail": background.fail_export}


@csrf_exempt
@require_POST
def enqueue_export(request):
    """Enqueues an export with Django's task framework; answers 202 with its id.

    ``?kind=orders`` (the default) exports, ``fail`` enqueues a task that
    raises. The task's row is written in this request's database; ``manage.py
    db_worker`` runs it. CSRF-exempt for the same reason as the reports view.
    """
    kind = request.GET.get("kind", "orders")
    if kind not in EXPORT_TASKS:
        return JsonResponse({"error": f"kind must be one of {sorted(EXPORT_TASKS)}"}, status=400)
    task = EXPORT_TASKS[kind]
    result = task.enqueue()
    return JsonResponse({"task_id": str(result.id), "task": task.module_path}, status=202)
