"""What a finished request records: its server span, its metrics and its access-log line.

Called once the outcome is known: when the response comes back through the
middleware, when the server closes a streamed response, or when the rest of
the stack raised. Each part is recorded in its own ``try``, so that a fault
in one leaves the others, and the response, alone.
"""

from __future__ import annotations

import time

from django_observability import exemption
from django_observability.access_log import log_request
from django_observability.context import RequestState
from django_observability.faults import fault
from django_observability.server_span import finish

__all__ = ["complete"]

_perf_counter = time.perf_counter


def complete(state: RequestState) -> None:
    """Record the finished request of ``state``; safe to call more than once."""
    if state.done:
        return
    state.done = True
    seconds = _perf_counter() - state.start
    span = state.span
    if span is not None:
        try:
            finish(state, span)
        except Exception:
            fault("request span")
    if not state.excluded:
        metrics = state.metrics
        if metrics is not None:
            try:
                metrics.observe(
                    state.method,
                    state.series_route,
                    state.status,
                    seconds,
                    state.body_bytes,
                    None if span is None else state.sampled_ids,
                )
            except Exception:
                fault("request metrics")
            finally:
                state.active.dec()  # type: ignore[union-attr]
        if state.log:
            try:
                log_request(state, seconds)
            except Exception:
                fault("access log")
        if state.presumed_exempt:
            # The exempt view did not answer this time (another URLconf, or
            # a middleware answered first): the path gets spans again.
            exemption.forget(state.request)
    if span is not None and state.ids is False:
        # Its ids, formatted only if a record Django logs after us
        # (django.request) asks for them.
        try:
            state.context = span.get_span_context()
        except Exception:
            fault("request span")
    # Nothing else reads them past this point: let the span and the request
    # go when the request does, without waiting for the cycle collector.
    state.span = None
    state.request = None
