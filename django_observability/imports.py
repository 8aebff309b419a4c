"""Post-import hooks: run code right after a module is first imported, without importing it.

The app wires itself into optional libraries (Django REST framework,
django-ninja, Celery) from ``AppConfig.ready()``. Importing them there would
make every ``manage.py`` command of a project that has them installed pay for
them (DRF, ninja and pydantic: the better part of a second; ``celery.signals``:
about 0.2 s). :func:`after_import` runs the wiring at once when the module is
already imported, else right after the project first imports it.

One hook serves the whole app (:data:`HOOK`): a single finder in
``sys.meta_path``, however many modules and callbacks wait, so that two hooks
never ask each other for the same module.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
from collections.abc import Callable
from typing import Any

from django_observability.faults import fault

__all__ = ["HOOK", "AfterImport", "after_import"]


class AfterImport(importlib.abc.MetaPathFinder):
    """A finder that finds nothing itself and runs callbacks once awaited modules are executed.

    Sits first in ``sys.meta_path`` while it waits for a module (every other
    name costs it one dict lookup). For an awaited module it asks the finders
    after it, wraps the found loader's ``exec_module`` so that the callbacks run
    once the module has run, and leaves ``sys.meta_path`` when nothing is left
    to wait for. A lookup it is already making (a finder after it that imports
    the same name) is left to the others, and other hooks awaiting the same
    module have their callbacks run by the one that found it. Callbacks are the caller's to make
    safe; one that raises is logged once and the import goes on.
    """

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._looking = threading.local()

    def add(self, module: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once ``module`` is imported (now, if it already is)."""
        with self._lock:
            if module not in sys.modules:
                self._callbacks.setdefault(module, []).append(callback)
                if self not in sys.meta_path:
                    sys.meta_path.insert(0, self)
                return
        _run(module, callback)

    def waiting(self) -> frozenset[str]:
        """The modules whose import is still awaited."""
        return frozenset(self._callbacks)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self._callbacks:
            return None
        looking: set[str] = self._looking.__dict__.setdefault("names", set())
        if fullname in looking:
            return None  # re-entered for the name we are looking up: the others' turn
        looking.add(fullname)
        # Other hooks awaiting the same module are served by this lookup too.
        hooks = [self]
        try:
            spec = None
            for finder in list(sys.meta_path):
                if isinstance(finder, AfterImport):
                    if finder is not self and fullname in finder._callbacks:
                        hooks.append(finder)
                    continue
                find_spec = getattr(finder, "find_spec", None)
                spec = None if find_spec is None else find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            looking.discard(fullname)
        if spec is None:
            return None
        original = getattr(spec.loader, "exec_module", None)
        if original is None:
            return spec

        def exec_module(module: Any) -> None:
            original(module)  # its exceptions are the importer's, as they are
            for hook in hooks:
                hook._imported(fullname)

        try:
            spec.loader.exec_module = exec_module
        except Exception:
            fault("post-import hook")
        return spec

    def _imported(self, fullname: str) -> None:
        with self._lock:
            callbacks = self._callbacks.pop(fullname, ())
            if not self._callbacks and self in sys.meta_path:
                sys.meta_path.remove(self)
        for callback in callbacks:
            _run(fullname, callback)


def _run(module: str, callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        fault(f"post-import hook ({module})")


#: The app's one hook.
HOOK = AfterImport()


def after_import(module: str, callback: Callable[[], None]) -> bool:
    """Call ``callback()`` once ``module`` is imported: now if it is, else right after.

    For a module of an optional library: when its top-level package is not
    installed there is nothing to wait for, and ``False`` is returned.
    """
    package = module.partition(".")[0]
    if package not in sys.modules and importlib.util.find_spec(package) is None:
        return False
    HOOK.add(module, callback)
    return True
