"""The text forms of what several modules report: trace ids and exception names.

Written once here so that a metric label, a span attribute and a log field
name the same thing the same way. Dependency-free: every module may import it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["exception_name", "hex_ids"]


def hex_ids(span_context: Any) -> tuple[str, str]:
    """(trace id, span id) of an OpenTelemetry span context as lowercase hex.

    32 and 16 digits, zero-padded, as W3C trace context and OTLP write them.
    The caller checks ``span_context.is_valid`` first.
    """
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def exception_name(exc: BaseException | type[BaseException]) -> str:
    """Fully qualified class name of an exception (or exception class), ``module.QualName``.

    Builtins by their bare name (``ValueError``). Read defensively (a class
    from a log record's ``exc_info`` may lack either name).
    """
    cls = exc if isinstance(exc, type) else type(exc)
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    if not module or module == "builtins":
        return name
    return f"{module}.{name}"
