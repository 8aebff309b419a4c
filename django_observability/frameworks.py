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
imports it (its URLconf, usually), through a post-import hook
(:class:`AfterImport`): importing DRF, or ninja and pydantic, in ``ready()``
would add the better part of a second to every ``manage.py`` command of a
project that has them installed.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys
import threading
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied

from django_observability.audit import record_security_event
from django_observability.faults import fault

__all__ = ["AfterImport", "drf_refusal", "install", "ninja_refusal"]

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


class AfterImport(importlib.abc.MetaPathFinder):
    """A post-import hook: runs a callback right after a module is first imported.

    Sits first in ``sys.meta_path`` while it waits for a module, finds no module
    itself (every other name costs one dict lookup), and for a module it waits
    for asks the other finders, then wraps the found loader's ``exec_module``
    so that the callback runs once the module is executed. It leaves
    ``sys.meta_path`` when nothing is left to wait for.
    """

    def __init__(self) -> None:
        self._callbacks: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()

    def add(self, module: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once ``module`` is imported (now, if it already is)."""
        with self._lock:
            if module not in sys.modules:
                self._callbacks[module] = callback
                if self not in sys.meta_path:
                    sys.meta_path.insert(0, self)
                return
        callback()

    def waiting(self) -> frozenset[str]:
        """The modules whose import is still awaited."""
        return frozenset(self._callbacks)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self._callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find_spec = getattr(finder, "find_spec", None)
            spec = None if find_spec is None else find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        original = getattr(loader, "exec_module", None)
        if original is None:
            return spec

        def exec_module(module: Any) -> None:
            original(module)  # its exceptions are the importer's, as they are
            self._imported(fullname)

        try:
            loader.exec_module = exec_module
        except Exception:
            fault("framework refusals (import hook)")
        return spec

    def _imported(self, fullname: str) -> None:
        with self._lock:
            callback = self._callbacks.pop(fullname, None)
            if not self._callbacks and self in sys.meta_path:
                sys.meta_path.remove(self)
        if callback is not None:
            callback()


_after_import = AfterImport()

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
        package = module.partition(".")[0]
        if package not in sys.modules and importlib.util.find_spec(package) is None:
            continue  # not installed
        _after_import.add(module, _installer(module, install_one))
