"""Settings (and URLconf) of the small project tests/test_peers_cache.py serves with gunicorn.

The test settings, with two cache aliases on the private peers the test started
(``CACHE_PEERS_REDIS_URL``, ``CACHE_PEERS_MEMCACHED``) and spans sent over OTLP
to its collector (``CACHE_PEERS_OTLP_ENDPOINT``). ``GET /cache/`` uses both.
"""

import os

from django.core.cache import caches
from django.http import JsonResponse
from django.urls import include, path

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.settings_cache_peers"
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CACHE_PEERS_REDIS_URL", "redis://127.0.0.1:6379/0"),
    },
    "memcached": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": os.environ.get("CACHE_PEERS_MEMCACHED", "127.0.0.1:11211"),
    },
}
OBSERVABILITY_SERVICE_NAME = "cache-peers"
OBSERVABILITY_TRACING_EXPORTER = "otlp"
OBSERVABILITY_TRACING_OTLP_ENDPOINT = os.environ.get("CACHE_PEERS_OTLP_ENDPOINT")


def cache_view(request):
    """On each alias: a set, a hit, a miss and a get_many of one hit and one miss."""
    for alias in ("redis", "memcached"):
        cache = caches[alias]
        cache.set("peers:here", "value", 60)
        cache.get("peers:here")
        cache.get("peers:absent")
        cache.get_many(["peers:here", "peers:absent-too"])
    return JsonResponse({"ok": True})


urlpatterns = [path("cache/", cache_view), path("", include("django_observability.urls"))]
