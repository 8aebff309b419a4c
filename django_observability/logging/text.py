"""``TextFormatter``: human-readable lines that still carry the correlation ids."""

from __future__ import annotations

import logging
from typing import Any

from django_observability.logging.context import ID_ATTRS, record_ids

__all__ = ["TextFormatter"]


class _Values:
    """Something with a ``__dict__``, which is all that logging's format styles read."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__ = values


class TextFormatter(logging.Formatter):
    """Human-readable lines that still carry the request id (``-`` outside a request).

    The format may use ``%(request_id)s``, ``%(trace_id)s`` and ``%(span_id)s``
    besides the usual record attributes. The record itself is not changed.
    """

    default_format = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Any = "%",
        validate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(fmt or self.default_format, datefmt, style, validate, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        values = dict(record.__dict__)
        ids = record_ids(record)
        for name, value in zip(ID_ATTRS, ids, strict=True):
            values[name] = value or "-"
        return self._style.format(_Values(values))  # type: ignore[arg-type]
