from django.contrib import admin
from django.urls import include, path
from shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("shop.urls")),
    path("slow/", views.slow, name="slow"),
    path("api/v1/stats/", views.stats, name="stats"),
    path("async/stats/", views.async_stats, name="async-stats"),
    path("boom/", views.boom, name="boom"),
    path("async/boom/", views.async_boom, name="async-boom"),
    path("stream/", views.stream, name="stream"),
    path("", include("django_observability.urls")),
]
