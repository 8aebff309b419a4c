"""django-observability: production observability for Django projects."""

from __future__ import annotations

from typing import Any

from django_observability.context import get_request_id
from django_observability.version import __version__

__all__ = ["__version__", "get_request_id", "observability_exempt", "refine_route"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that "import django_observability" stays free of side
    # effects (prometheus_client reads PROMETHEUS_MULTIPROC_DIR when imported).
    if name == "observability_exempt":
        from django_observability.exemption import observability_exempt

        return observability_exempt
    if name == "refine_route":
        from django_observability.routes import refine_route

        return refine_route
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
