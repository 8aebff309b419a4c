"""Refusals that API frameworks answer themselves, counted as security events.

Django counts what it refuses through the records it logs (``audit.SecurityEvents``):
a ``PermissionDenied`` that reaches Django's handler, a CSRF failure of
``CsrfViewMiddleware``. Django REST framework and django-ninja answer most
refusals inside the view, as a response, so Django logs no exception for
them; this module sees them where the framework turns the exception into
its response:

* Django REST framework: ``APIView.handle_exception`` (every exception of an
  API view passes through it, whatever ``EXCEPTION_HANDLER`` the project set).
  ``PermissionDenied`` (DRF's or Django's) is ``permission_denied``; the one
  ``SessionAuthentication`` raises for a failed CSRF check is ``csrf_failure``.
* django-ninja: ``NinjaAPI.on_exception`` (every exception of an operation,
  its authentication's included). ``AuthorizationError`` and Django's
  ``PermissionDenied`` are ``permission_denied``. Ninja's CSRF check runs
  Django's ``CsrfViewMiddleware``, which logs the failure itself: counted by
  Django's record, not here.

Each refusal is counted once: only when the framework answered it. When the
project's exception handler declines (DRF's returns ``None``, ninja's default
re-raises with ``DEBUG`` off), the exception reaches Django, which logs it
and is counted from that record.

Authentication failures (401: no credentials, a wrong token) are not security
events: they are an API's ordinary challenge to anonymous clients. Credentials
checked by Django's ``authenticate()`` (DRF's ``BasicAuthentication``) count
as ``auth_events_total{event="login_failed"}`` already.

:func:`install` wraps each framework's method once, from ``AppConfig.ready()``;
the wrapper calls the original unchanged and hands back its response or
exception as they are. A framework already imported is wrapped at once; one
installed but not imported yet is wrapped right after the project first
imports it (its URLconf, usually), through the app's post-import hook
(:func:`~django_observability.imports.after_import`): importing DRF, or ninja
and pydantic, in ``ready()`` would add the better part of a second to every
``manage.py`` command of a project that has them installed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied

from django_observability.audit import record_security_event
from django_observability.faults import fault
from django_observability.imports import after_import

__all__ = ["drf_refusal", "install", "ninja_refusal"]

# Marks our wrapper, so that installing twice wraps once.
_WRAPPED = "_observability_wrapped"

# What SessionAuthentication.enforce_csrf puts before Django's reason; DRF
# overrides CsrfViewMiddleware._reject, so Django logs nothing for it.
_DRF_CSRF_PREFIX = "CSRF Failed:"


def drf_refusal(exc: BaseException) -> str | None:
    """The security event type of an exception a DRF view answered, or ``None``."""
    from rest_framework import exceptions

    if isinstance(exc, exceptions.PermissionDenied):
        if str(exc.detail).startswith(_DRF_CSRF_PREFIX):
            return "csrf_failure"
        return "permission_denied"
    if isinstance(exc, PermissionDenied):
        return "permission_denied"
    return None


def ninja_refusal(exc: BaseException) -> str | None:
    """The security event type of an exception a ninja operation answered, or ``None``."""
    from ninja.errors import AuthorizationError

    if isinstance(exc, (AuthorizationError, PermissionDenied)):
        return "permission_denied"
    return None


def _record(event_type: str | None, request: Any) -> None:
    if event_type is None:
        return
    try:
        record_security_event(event_type, request=request)
    except Exception:
        fault("framework refusal")


def _install_drf() -> None:
    from rest_framework.views import APIView

    original = APIView.handle_exception
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def handle_exception(self: Any, exc: Exception) -> Any:
        response = original(self, exc)  # raises when the project's handler declines
        try:
            event_type = drf_refusal(exc)
        except Exception:
            fault("framework refusal")
            return response
        # The Django request under DRF's Request (where the user and id are).
        request = getattr(self, "request", None)
        _record(event_type, getattr(request, "_request", request))
        return response

    setattr(handle_exception, _WRAPPED, True)
    APIView.handle_exception = handle_exception  # type: ignore[method-assign]


def _install_ninja() -> None:
    from ninja.main import NinjaAPI  # not from ninja: its __init__ may still be running

    original = NinjaAPI.on_exception
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def on_exception(self: Any, request: Any, exc: Any) -> Any:
        response = original(self, request, exc)  # raises when no handler answers
        try:
            event_type = ninja_refusal(exc)
        except Exception:
            fault("framework refusal")
            return response
        _record(event_type, request)
        return response

    setattr(on_exception, _WRAPPED, True)
    NinjaAPI.on_exception = on_exception  # type: ignore[method-assign]


# The module that defines each framework's class, and what wraps it.
_TARGETS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("rest_framework.views", _install_drf),
    ("ninja.main", _install_ninja),
)


def _installer(module: str, install_one: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            install_one()
        except Exception:
            fault(f"framework refusals ({module.partition('.')[0]})")

    return run


def install() -> None:
    """Watch the refusals of each installed framework (from ``AppConfig.ready()``).

    Wraps the frameworks already imported now, and the others when they are
    first imported; imports neither.
    """
    for module, install_one in _TARGETS:
        after_import(module, _installer(module, install_one))
