"""The mistake of issue 15: the app's URLs after Wagtail's catch-all page route."""

from django.urls import include, path
from wagtail import urls as wagtail_urls

urlpatterns = [
    path("", include(wagtail_urls)),
    path("", include("django_observability.urls")),
]
