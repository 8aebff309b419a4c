from django.conf.urls.i18n import i18n_patterns
from django.urls import path

from tests import views

urlpatterns = i18n_patterns(
    path("about/", views.ok, name="about"),
)
