"""Mount with ``path("", include("django_observability.urls"))``."""

from __future__ import annotations

from django.urls import path

from django_observability import views
from django_observability.health import views as health

app_name = "django_observability"

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("health/", health.report, name="health"),
    path("health/live/", health.live, name="health_live"),
    path("health/ready/", health.ready, name="health_ready"),
]
