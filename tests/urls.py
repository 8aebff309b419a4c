from django.urls import include, path, re_path

from tests import views

archive = [
    re_path(r"^archive/(?P<year>[0-9]{4})/$", views.ok, name="archive"),
]

items = [
    path("items/<int:pk>/", views.ok, name="item"),
    path("items/<int:pk>/missing/", views.not_found, name="item-missing"),
    path("", include(archive)),
]

urlpatterns = [
    path("", views.ok, name="root"),
    path("api/v1/", include(items)),
    path("users/<uuid:uid>/", views.ok, name="user"),
    path("posts/<slug:slug>/", views.ok, name="post"),
    path("files/<path:rest>", views.ok, name="files"),
    path("async/<int:pk>/", views.async_ok, name="async"),
    path("boom/", views.boom, name="boom"),
    path("async-boom/", views.async_boom, name="async-boom"),
    path("forbidden/", views.forbidden, name="forbidden"),
    path("created/", views.created, name="created"),
    path("stream/", views.stream, name="stream"),
    path("async-stream/", views.async_stream, name="async-stream"),
    path("file/", views.file, name="file"),
    re_path(r"^legacy/(?P<code>[a-z]+)\Z", views.ok, name="legacy"),
    path("", include("django_observability.urls")),
]
