from django.urls import path, re_path

from shop import views

urlpatterns = [
    path("items/", views.item_list, name="item-list"),
    path("login/", views.api_login, name="api-login"),
    path("groups/", views.api_create_group, name="api-create-group"),
    path("reports/", views.enqueue_report, name="reports"),
    path("exports/", views.enqueue_export, name="exports"),
    path("cached/", views.cached_stats, name="cached"),
    path("upstream/", views.upstream, name="upstream"),
    path("echo/", views.echo, name="echo"),
    path("items/<int:pk>/", views.item_detail, name="item-detail"),
    path("async/items/<int:pk>/", views.async_item_detail, name="async-item-detail"),
    path("orders/<uuid:order_id>/", views.order_detail, name="order-detail"),
    path("categories/<slug:slug>/", views.category, name="category"),
    path("docs/<path:page>", views.docs, name="docs"),
    re_path(r"^archive/(?P<year>[0-9]{4})/$", views.archive, name="archive"),
]
