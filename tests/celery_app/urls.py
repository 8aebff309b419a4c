from django.urls import include, path

from tests.celery_app import views

urlpatterns = [
    path("enqueue/<str:kind>/", views.enqueue, name="enqueue"),
    path("", include("django_observability.urls")),
]
