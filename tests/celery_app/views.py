from django.http import Http404, HttpRequest, JsonResponse

from django_observability import get_request_id
from tests.celery_app.tasks import TASKS


def enqueue(request: HttpRequest, kind: str) -> JsonResponse:
    """Enqueue the task ``kind``; answers its id and this request's id."""
    task = TASKS.get(kind)
    if task is None:
        raise Http404(kind)
    result = task.delay()
    return JsonResponse({"task_id": result.id, "request_id": get_request_id()}, status=202)
