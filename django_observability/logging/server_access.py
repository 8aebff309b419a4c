"""``ServerAccessFilter``: secrets out of a server's access record before it is written.

gunicorn, uvicorn and Django's development server write their access lines
from a format and arguments: gunicorn's arguments are a dict of *atoms*
(``r`` the request line, ``q`` the query string, ``f`` the Referer,
``{name}i`` request headers, ``{name}e`` environment variables ...), uvicorn's
a tuple ``(client, method, path with query string, HTTP version, status)``,
the development server's a tuple starting with the request line. The filter
rewrites those arguments (and a message logged without arguments): values of
sensitive names (a ``{cookie}i`` or ``{authorization}i`` atom) are replaced by
:data:`~.redaction.REDACTED`, and in every text the sensitive query
parameters and URL passwords are masked (:meth:`.redaction.Redactor.mask_text`),
so ``GET /x/?token=abc&page=2`` is written ``GET /x/?token=[REDACTED]&page=2``.

``logging_config()`` attaches it to the ``gunicorn.access``,
``uvicorn.access`` and ``django.server`` loggers. In a ``LOGGING`` of your own::

    "filters": {"server_access": {"()": "django_observability.logging.ServerAccessFilter"}},
    "loggers": {"gunicorn.access": {"filters": ["server_access"], ...}},
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django_observability.logging.redaction import DEFAULT_REDACT_KEYS, REDACTED, Redactor

__all__ = ["ServerAccessFilter"]


class ServerAccessFilter(logging.Filter):
    """Masks secrets in an access record's arguments; never drops a record.

    ``redact_keys`` are words added to :data:`~.redaction.DEFAULT_REDACT_KEYS`
    (the project's ``OBSERVABILITY_LOG_REDACT_KEYS`` apply too, once the
    settings are loaded).
    """

    def __init__(self, redact_keys: Iterable[str] = ()) -> None:
        super().__init__()
        self.redactor = Redactor((*DEFAULT_REDACT_KEYS, *redact_keys))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self.redactor.refresh()
            args = record.args
            if isinstance(args, Mapping):
                record.args = self._atoms(args)
            elif isinstance(args, tuple):
                if args:
                    record.args = tuple(self._text(value) for value in args)
                else:
                    record.msg = self._text(record.msg)
        except Exception:  # a record we do not understand is written as it is
            return True
        return True

    def _text(self, value: Any) -> Any:
        if type(value) is str and ("=" in value or "@" in value):
            return self.redactor.mask_text(value)
        return value

    def _atoms(self, atoms: Mapping[Any, Any]) -> Mapping[Any, Any]:
        """gunicorn's atoms (a dict subclass that answers "-" for a missing one), masked."""
        sensitive = self.redactor.is_sensitive
        changes = {}
        for name, value in atoms.items():
            if type(value) is not str:
                continue
            new = REDACTED if sensitive(name) and value != "-" else self._text(value)
            if new is not value:
                changes[name] = new
        if not changes:
            return atoms
        if not isinstance(atoms, dict):
            return {**atoms, **changes}
        masked = copy.copy(atoms)  # the same class: its lookup rules stay
        masked.update(changes)
        return masked
