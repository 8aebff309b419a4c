"""Spans recorded in memory, for the tests of the modules that make them."""

from opentelemetry.trace import SpanKind


def server_spans(exporter):
    """The server spans an ``InMemorySpanExporter`` received."""
    return [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
