from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from django_observability import observability_exempt
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
    path("stream-fails/", views.stream_fails),
    path("async-stream-fails/", views.async_stream_fails),
    path("file/", views.file, name="file"),
    path("inflight/", views.inflight, name="inflight"),
    path("db/", views.db_view, name="db"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("async-login/", views.async_login, name="async-login"),
    path("async-logout/", views.async_logout, name="async-logout"),
    path("suspicious/", views.suspicious, name="suspicious"),
    path("groups/", views.create_group, name="create-group"),
    path("csrf/", views.csrf_protected, name="csrf"),
    path("whoami/", views.whoami, name="whoami"),
    path("db-error/", views.db_error, name="db-error"),
    path("ids/", views.request_ids, name="ids"),
    path("async-ids/", views.async_request_ids, name="async-ids"),
    path("numbered/<int:n>/", views.raise_numbered, name="numbered"),
    path("exempt/", observability_exempt(views.exempt), name="exempt"),
    path("async-exempt/", observability_exempt(views.async_exempt), name="async-exempt"),
    path("exempt-work/", observability_exempt(views.exempt_work)),
    path("async-exempt-work/", observability_exempt(views.async_exempt_work)),
    path("exempt/<int:n>/", observability_exempt(views.exempt_numbered)),
    path("exempt-stream/", observability_exempt(views.stream_work)),
    path("async-exempt-stream/", observability_exempt(views.async_stream_work)),
    path("excluded/stream/", views.stream_work),
    path("excluded/async-stream/", views.async_stream_work),
    re_path(r"^legacy/(?P<code>[a-z]+)\Z", views.ok, name="legacy"),
    path("", include("django_observability.urls")),
    path("frameworks/", include("tests.framework_apis")),
    path("pages/<path:path>", views.refined_page, name="refined-page"),
    path("async-pages/<path:path>", views.async_refined_page, name="async-refined-page"),
    path("refined-stream-fails/", views.refined_stream_fails),
]
