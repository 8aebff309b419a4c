"""The ``/metrics`` endpoint.

``ObservabilityMiddleware`` answers ``GET``/``HEAD`` of it early, before host
validation and HTTPS redirects (``django_observability.probes``, unless
``OBSERVABILITY_METRICS_IN_MIDDLEWARE`` is off), through the same
:func:`answer_scrape` as the view.
"""

from __future__ import annotations

import gzip
import logging
import os

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from django_observability.db_connections import sample_pools
from django_observability.exemplars import MultiProcessWithExemplars
from django_observability.exemption import observability_exempt
from django_observability.exposition import fast_encoder
from django_observability.metrics import get_metrics
from django_observability.metrics_store import StoreBusy, StoreCollector, StoreStateCollector
from django_observability.permissions import Access, check_access, head_without_body, refusal

logger = logging.getLogger("django_observability.metrics")

try:  # Django >= 5.1
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover - older Django

    def login_not_required(view):  # type: ignore[no-untyped-def]
        return view


def metrics_registry(exemplars: bool = True) -> CollectorRegistry:
    """What ``/metrics`` serves.

    In Prometheus multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set) a fresh
    registry that aggregates every worker's files, compacting those of workers
    that exited (``metrics_store.py``), with the store's own state and, with
    ``exemplars``, the workers' exemplars (``exemplars.py``); otherwise the
    default registry, so metrics of other libraries (django-prometheus's
    database and cache backends, for instance) appear too.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        registry = CollectorRegistry()
        instruments = get_metrics()
        if exemplars and instruments is not None and instruments.exemplars:
            # The workers' exemplars, merged onto the aggregated buckets.
            registry.register(MultiProcessWithExemplars(path, instruments.duration._name))
        else:
            registry.register(StoreCollector(path))
        namespace = instruments.namespace if instruments is not None else ""
        registry.register(StoreStateCollector(path, namespace))
        return registry
    return REGISTRY


def answer_scrape(request: HttpRequest) -> HttpResponse:
    """The answer to ``GET``/``HEAD`` of ``/metrics``, protection included.

    Both the view below and the middleware's early answer
    (``django_observability.probes``) call it, so a scrape gets the same
    refusal (401/403), body, content type and headers whichever answers.
    """
    access = check_access(request)
    if access is not Access.GRANTED:
        response = refusal(access)
        add_never_cache_headers(response)
        return response
    # Make sure our own instruments (build info above all) exist in this
    # process even before it served a request, with fresh process figures.
    instruments = get_metrics()
    if instruments is not None:
        instruments.update_process(force=True)
        # The scraped process's connection pools as they are now (others', as
        # their last reading left them: docs/database.md).
        sample_pools()
    encoder, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
    # Only OpenMetrics carries exemplars: the text format need not read them.
    registry = metrics_registry(exemplars=content_type.startswith("application/openmetrics"))
    names = request.GET.getlist("name[]")
    if names:
        registry = registry.restricted_registry(names)
    try:
        output = fast_encoder(encoder)(registry)
    except StoreBusy:
        # A compaction that holds the store's lock for seconds is stuck: a
        # failed scrape is better than totals read while files move.
        logger.error("django_observability: /metrics: the metrics store is locked; not served")
        response = HttpResponse(
            "metrics store busy\n", status=503, content_type="text/plain; charset=utf-8"
        )
        add_never_cache_headers(response)
        return response
    response = HttpResponse(output, content_type=content_type)
    if gzip_accepted(request.META.get("HTTP_ACCEPT_ENCODING", "")):
        response.content = gzip.compress(output, compresslevel=6)
        response["Content-Encoding"] = "gzip"
    response["Vary"] = "Accept, Accept-Encoding"
    add_never_cache_headers(response)
    return head_without_body(request, response)


@observability_exempt  # outermost: a refused method is not counted either
@csrf_exempt
@never_cache  # also on the 405 of another method
@login_not_required
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition: OpenMetrics when the scraper asks for it, else text."""
    return answer_scrape(request)
