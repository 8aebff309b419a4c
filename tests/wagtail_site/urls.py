from django.urls import include, path
from wagtail import urls as wagtail_urls

urlpatterns = [
    # The app's URLs before Wagtail's catch-all, which would otherwise answer them.
    path("", include("django_observability.urls")),
    path("", include(wagtail_urls)),
]
