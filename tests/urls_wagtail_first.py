"""The app's URLs before Wagtail's catch-all page route, as docs/health.md says."""

from django.urls import include, path
from wagtail import urls as wagtail_urls

urlpatterns = [
    path("", include("django_observability.urls")),
    path("", include(wagtail_urls)),
]
