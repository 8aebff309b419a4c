"""Settings (and URLconf) of the small project tests/test_peers_db_pool.py serves with gunicorn.

The test settings with the ``default`` database on the test's private PostgreSQL
(``DB_POOL_PEERS_PORT``, ``DB_POOL_PEERS_NAME``) through Django's connection pool:
at most two connections, a request waits at most one second for one. ``GET
/sleep/?seconds=S`` holds its connection in ``pg_sleep(S)``. The pool is read every
0.2 s; queries carry their trace context in SQL comments, spans go to the console.
"""

import os

from django.db import connection
from django.http import JsonResponse
from django.urls import include, path

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.settings_db_pool_peers"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DB_POOL_PEERS_NAME", "db_pool_peers"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": os.environ.get("DB_POOL_PEERS_PORT", "5432"),
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 2, "timeout": 1}},
    }
}
OBSERVABILITY_SERVICE_NAME = "db-pool-peers"
OBSERVABILITY_DB_POOL_METRICS_INTERVAL = 0.2
OBSERVABILITY_DB_SQL_COMMENTS = True
OBSERVABILITY_TRACING_EXPORTER = "console"
OBSERVABILITY_HEALTH_READINESS_CHECKS = ["database"]


def sleep_view(request):
    seconds = float(request.GET.get("seconds", "0.1"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
    return JsonResponse({"slept": seconds})


urlpatterns = [path("sleep/", sleep_view), path("", include("django_observability.urls"))]
