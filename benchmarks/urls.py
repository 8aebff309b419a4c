"""About twenty URL patterns of the usual kinds: converters, nested include(), re_path.

Both metrics endpoints are mounted in every configuration so that the URLconf
the resolver walks is the same size in all of them; the URL mix requests
neither.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import include, path, re_path

from benchmarks import views

# django-prometheus's URLconf imports the package, and the package registers
# its model metrics on import. Outside its own configuration, mount a stand-in
# of the same shape so that no foreign metric appears in another /metrics.
if "django_prometheus" in settings.INSTALLED_APPS:
    dp_urls = include("django_prometheus.urls")
else:
    dp_urls = include([path("metrics", views.text, name="prometheus-django-metrics")])

orders = [
    path("<uuid:order_id>/", views.data, name="order"),
    path("<uuid:order_id>/lines/<int:line>/", views.data, name="order-line"),
]

api = [
    path("items/", views.items, name="items"),
    path("items/<int:pk>/", views.data, name="item"),
    path("items/<int:pk>/comments/", views.data, name="item-comments"),
    path("orders/", include(orders)),
    path("submit/", views.submit, name="submit"),
]

urlpatterns = [
    path("", views.page, name="home"),
    path("ping/", views.text, name="ping"),
    path("articles/<int:year>/", views.page, name="year"),
    path("articles/<int:year>/<int:month>/", views.page, name="month"),
    path("articles/<int:year>/<int:month>/<slug:slug>/", views.page, name="article"),
    path("articles/missing/<int:pk>/", views.missing, name="article-missing"),
    path("users/<uuid:user_id>/", views.data, name="user"),
    path("files/<path:file_path>", views.text, name="file"),
    path("search/", views.search, name="search"),
    path("api/v1/", include(api)),
    re_path(r"^archive/(?P<year>[0-9]{4})/$", views.page, name="archive"),
    re_path(r"^legacy/(?P<code>[a-z]{2,8})/(?P<n>[0-9]+)\.html$", views.page, name="legacy"),
    path("go/", views.go, name="go"),
    path("empty/", views.empty, name="empty"),
    path("dp/", dp_urls),
    path("", include("django_observability.urls")),
]
