"""URLconfs with a catch-all pattern, for the W020 system check (``mounting.py``).

Each class is a URLconf (``ROOT_URLCONF`` may be any object with ``urlpatterns``).
"""

from django.conf.urls.i18n import i18n_patterns
from django.http import HttpResponse
from django.urls import include, path, re_path

from django_observability import views


def catch_all(request, path=""):
    """Answers every path, as a CMS's page view does: here a 404 page of its own."""
    return HttpResponse(f"no page at {path!r}", status=404)


CATCH_ALL = re_path(r"^(?P<path>.*)$", catch_all, name="catch-all")
OURS = path("", include("django_observability.urls"))


class CatchAllFirst:
    urlpatterns = [CATCH_ALL, OURS]


class CatchAllLast:
    urlpatterns = [OURS, CATCH_ALL]


class NotMounted:
    urlpatterns = [CATCH_ALL]


class PrefixedAfterCatchAll:
    urlpatterns = [
        path("pages/", include([CATCH_ALL])),
        re_path(r"^(?P<path>ops/h.*)$", catch_all),
        path("ops/", include("django_observability.urls")),
    ]


class UnderParameter:
    urlpatterns = [CATCH_ALL, path("<slug:tenant>/", include("django_observability.urls"))]


class Localized:
    urlpatterns = [
        *i18n_patterns(path("", include("django_observability.urls"))),
        path("direct/metrics", views.metrics),
    ]
