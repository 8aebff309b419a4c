"""Trace context in SQL comments (sqlcommenter format): a database log line leads to its trace.

With ``OBSERVABILITY_DB_SQL_COMMENTS = True`` each query sent while a
**sampled** span is current gets a comment at its end::

    SELECT ... FROM "shop_item" WHERE ... /*traceparent='00-<trace id>-<span id>-01'*/

PostgreSQL writes the statement text, comment included, to its log
(``log_min_duration_statement``, ``auto_explain``) and to
``pg_stat_activity.query``; the trace id finds the trace, the span id the
query's own span (the database span when ``OBSERVABILITY_TRACING_DB_SPANS`` is
on, else the span current at the query, the request's).

Choices, and why:

* **Off by default.** The comment makes every statement's text unique: caches
  keyed by the text (server-side prepared statements, a proxy's query cache)
  stop hitting, and statement logs grow by some 70 bytes a line. Statistics
  that normalize the statement (``pg_stat_statements``) are unaffected.
* **traceparent only**: the key the sqlcommenter specification and W3C Trace
  Context share, enough to find the trace. No route or view name: they are on
  the trace already, and every extra key costs bytes in each statement.
* **Never without a sampled span**: an unsampled trace id leads nowhere.
* **The specification's rules**: pairs sorted by key, keys and values
  URL-encoded, a value's ``'`` escaped as ``\\'`` and the value single-quoted;
  a statement that already holds a comment (``/*`` or ``--``) is left
  unchanged; a trailing ``;`` stays last. A traceparent holds no ``%``, so
  the ``%s`` parameter markers Django's backends format are never disturbed.
* **Cheap**: the comment of the span commented last is kept, so the queries
  of one span (the request's, without query spans) share it.
* Only the text sent to the database changes: the span's ``db.query.text``
  and ``connection.queries`` keep the statement as the code wrote it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

logger = logging.getLogger("django_observability")

__all__ = ["comment", "traceparent", "with_trace_comment"]


def _escape(text: str) -> str:
    return quote(text, safe="").replace("'", "\\'")


def comment(pairs: Iterable[tuple[str, str]]) -> str:
    """A sqlcommenter comment of ``pairs``: ``/*key='value',...*/``, sorted by key."""
    body = ",".join(f"{_escape(k)}='{_escape(v)}'" for k, v in sorted(pairs))
    return f"/*{body}*/"


def traceparent(span_context: Any) -> str | None:
    """The W3C ``traceparent`` of a valid, sampled span context, else ``None``."""
    if span_context is None or not span_context.is_valid or not span_context.trace_flags.sampled:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


# The span context commented last and its comment (one tuple: replaced whole, thread-safe).
_last: tuple[Any, str] = (None, "")


def with_trace_comment(sql: str, params: Any, span: Any = None) -> str:
    """``sql`` with the trace context of ``span`` (else the current span) as a comment.

    ``sql`` unchanged when no sampled span is there, when the statement has a
    comment already, or on any fault of ours (logged).
    """
    try:
        if span is None:
            from opentelemetry import trace

            span = trace.get_current_span()
        global _last
        context = span.get_span_context()
        last_context, text = _last
        if context is not last_context:
            parent = traceparent(context)
            if parent is None:
                return sql
            # What comment() writes for this one pair: a traceparent is hex digits
            # and dashes, which URL-encoding leaves as they are (so no "%" either).
            text = f"/*traceparent='{parent}'*/"
            # The queries of one span (the request's, without query spans) share it.
            _last = (context, text)
        if "/*" in sql or "--" in sql:
            return sql
        stripped = sql.rstrip()
        if stripped.endswith(";"):
            return f"{stripped[:-1]} {text};"
        return f"{stripped} {text}"
    except Exception:
        logger.exception("django_observability: could not add the trace comment to a query")
        return sql
