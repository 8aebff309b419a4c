"""Real Django REST framework and django-ninja endpoints, mounted under /frameworks/."""

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.urls import path
from ninja import NinjaAPI
from ninja.errors import AuthorizationError
from ninja.security import HttpBearer, django_auth
from rest_framework import permissions
from rest_framework.authentication import (
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.authtoken.models import Token
from rest_framework.response import Response
from rest_framework.views import APIView

# --- Django REST framework ---------------------------------------------------------------


class Me(APIView):
    """The user the API authenticated; POST also creates a group (an audited change).

    DRF's default authentication classes and a token: the session's (anonymous)
    user is loaded first, then the token or the password authenticates.
    """

    authentication_classes = [SessionAuthentication, BasicAuthentication, TokenAuthentication]
    permission_classes = [permissions.IsAuthenticated]

    def get(self, request):
        return Response({"user": request.user.pk})

    def post(self, request):
        group = Group.objects.create(name=request.data.get("name", "drf"))
        return Response({"group": group.pk}, status=201)


class StaffOnly(Me):
    permission_classes = [permissions.IsAdminUser]


class DjangoDenied(APIView):
    """Raises Django's PermissionDenied: DRF answers it (its exception handler converts it)."""

    authentication_classes = []
    permission_classes = []

    def get(self, request):
        raise PermissionDenied("not for you")


# --- django-ninja ---------------------------------------------------------------------------


class BearerToken(HttpBearer):
    """A bearer token of DRF's token table (any lookup would do)."""

    def authenticate(self, request, token):
        found = Token.objects.select_related("user").filter(key=token).first()
        return None if found is None else found.user


class AsyncBearerToken(HttpBearer):
    async def authenticate(self, request, token):
        found = await Token.objects.select_related("user").filter(key=token).afirst()
        return None if found is None else found.user


api = NinjaAPI(urls_namespace="tests-ninja")


@api.get("/me", auth=BearerToken())
def ninja_me(request):
    return {"user": request.auth.pk}


@api.get("/async-me", auth=AsyncBearerToken())
async def ninja_async_me(request):
    return {"user": request.auth.pk}


@api.post("/groups", auth=BearerToken())
def ninja_create_group(request, name: str = "ninja"):
    group = Group.objects.create(name=name)
    return api.create_response(request, {"group": group.pk}, status=201)


@api.post("/session", auth=django_auth)
def ninja_session(request):
    return {"user": request.auth.pk}


@api.get("/forbidden", auth=BearerToken())
def ninja_forbidden(request):
    raise AuthorizationError()


@api.get("/django-denied")
def ninja_django_denied(request):
    raise PermissionDenied("not for you")


urlpatterns = [
    path("drf/me/", Me.as_view(), name="drf-me"),
    path("drf/staff/", StaffOnly.as_view(), name="drf-staff"),
    path("drf/django-denied/", DjangoDenied.as_view(), name="drf-django-denied"),
    path("ninja/", api.urls),
]
