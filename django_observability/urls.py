"""Mount with ``path("", include("django_observability.urls"))``."""

from __future__ import annotations

from django.urls import path

from django_observability import views

app_name = "django_observability"

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
]
