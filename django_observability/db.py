"""A span and a metric per database query, through ``connection.execute_wrapper``.

Works for every alias and backend, SQLite included: no ENGINE swap, so
Django's connection handling (and pooling) is untouched. Execute wrappers
belong to one connection object in one thread, so the observer is attached
from the ``connection_created`` signal, once per connection.

Spans follow the stable database semantic conventions (semconv 1.33):
``db.system.name``, ``db.namespace``, ``db.operation.name``,
``db.query.text`` (the SQL with its placeholders, never parameter values),
``server.address``/``server.port`` and ``db.response.returned_rows`` where
the driver knows it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db.backends.signals import connection_created

from django_observability.conf import valid_or_default
from django_observability.context import count_query
from django_observability.formats import exception_name
from django_observability.metrics import get_metrics
from django_observability.sql_comments import with_trace_comment
from django_observability.tracing import get_tracer, set_error, spans_suppressed

logger = logging.getLogger("django_observability")

OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")

# Django vendor -> db.system.name
_SYSTEMS = {
    "postgresql": "postgresql",
    "sqlite": "sqlite",
    "mysql": "mysql",
    "oracle": "oracle.db",
    "microsoft": "microsoft.sql_server",
}

_perf_counter = time.perf_counter


def system_name(vendor: str) -> str:
    """``db.system.name`` of a Django database vendor (``postgresql``, ``oracle.db``...)."""
    return _SYSTEMS.get(vendor, vendor)


def operation(sql: str) -> str:
    """SELECT, INSERT, UPDATE, DELETE, or ``other`` (the statement's first word)."""
    head = sql[:16].lstrip()[:6].upper()
    return head if head in OPERATIONS else "other"


class QueryObserver:
    """The execute wrapper: times each query, counts it, and traces it."""

    def __init__(self, connection: Any) -> None:
        settings = connection.settings_dict
        self.alias = connection.alias
        self.system = system_name(connection.vendor)
        self.namespace = str(settings.get("NAME") or "")
        if self.system == "sqlite":
            self.namespace = self.namespace.rsplit("/", 1)[-1]
        self.host = settings.get("HOST") or None
        port = settings.get("PORT")
        self.port = int(port) if port and str(port).isdigit() else None

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        op = operation(sql)
        span = None
        if _spans_enabled():
            tracer = get_tracer()
            if tracer is not None and not spans_suppressed():
                span = self._start_span(tracer, op, sql)
        # The trace context as a comment: only the text sent changes (sql_comments.py).
        sent = with_trace_comment(sql, params, span) if _comments_enabled() else sql
        start = _perf_counter()
        try:
            result = execute(sent, params, many, context)
        except Exception as exc:
            self._record(op, _perf_counter() - start, exc)
            if span is not None:
                set_error(span, exc, exception_name(exc))
                span.end()
            raise
        self._record(op, _perf_counter() - start, None)
        if span is not None:
            try:
                rows = context["cursor"].rowcount
                if isinstance(rows, int) and rows >= 0 and span.is_recording():
                    span.set_attribute("db.response.returned_rows", rows)
            except Exception:
                logger.debug("no row count for a query", exc_info=True)
            span.end()
        return result

    def _start_span(self, tracer: Any, op: str, sql: str) -> Any:
        from opentelemetry.trace import SpanKind

        span = tracer.start_span(
            f"{op} {self.namespace}" if op != "other" else self.namespace or self.system,
            kind=SpanKind.CLIENT,
        )
        if span.is_recording():
            attributes = {
                "db.system.name": self.system,
                "db.namespace": self.namespace,
                "db.query.text": sql,
            }
            if op != "other":
                attributes["db.operation.name"] = op
            if self.host:
                attributes["server.address"] = self.host
            if self.port:
                attributes["server.port"] = self.port
            span.set_attributes(attributes)
        return span

    def _record(self, op: str, seconds: float, exc: BaseException | None) -> None:
        try:
            # The request being served keeps its queries for the access log.
            count_query(seconds)
            if not _metrics_enabled():
                return
            metrics = get_metrics()
            if metrics is not None:
                metrics.observe_query(self.alias, op, seconds)
                if exc is not None:
                    metrics.count_db_error(self.alias, exception_name(exc))
        except Exception:
            logger.exception("django_observability: could not record a query")


_flags: tuple[bool, bool, bool] | None = None


def _load_flags() -> tuple[bool, bool, bool]:
    global _flags
    flags = _flags
    if flags is None:
        flags = _flags = (
            bool(valid_or_default("TRACING_DB_SPANS")),
            bool(valid_or_default("DB_METRICS")),
            bool(valid_or_default("DB_SQL_COMMENTS")),
        )
    return flags


def _spans_enabled() -> bool:
    return (_flags or _load_flags())[0]


def _metrics_enabled() -> bool:
    return (_flags or _load_flags())[1]


def _comments_enabled() -> bool:
    return (_flags or _load_flags())[2]


def reset() -> None:
    """Read the switches again (called when an OBSERVABILITY_ setting changes)."""
    global _flags
    _flags = None


def attach(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    """``connection_created`` receiver: observe this connection's queries, once."""
    if connection is None:
        return
    try:
        if not any(isinstance(w, QueryObserver) for w in connection.execute_wrappers):
            connection.execute_wrappers.append(QueryObserver(connection))
    except Exception:
        logger.exception("django_observability: could not observe a database connection")


def install() -> None:
    from django_observability import db_connections

    connection_created.connect(attach, dispatch_uid="django_observability.db.attach")
    db_connections.install()  # connections opened and failed, Django's pool (its own module)
