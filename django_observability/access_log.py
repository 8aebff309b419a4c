"""The access log: one record per measured request on ``django_observability.access``.

Written when the request is complete (for a streamed body: when the server
closes the response), with ECS field names: method, path, route, status, body
size, duration, client address, user id, the request's database queries, its
cache hits and misses, and the request, trace and span ids.
"""

from __future__ import annotations

import logging
from typing import Any

from django_observability.context import RequestState, loaded_user_id, request_id_of

__all__ = ["access_logger", "log_request"]

access_logger = logging.getLogger("django_observability.access")

_NS = 1_000_000_000
_INFO = logging.INFO
_record_factory = logging.getLogRecordFactory


def log_request(state: RequestState, seconds: float) -> None:
    """Write the access record of the finished request of ``state``, ``seconds`` long."""
    request = state.request
    path = request.path
    if len(path) > 2048:
        path = path[:2048]
    extra: dict[str, Any] = {
        "http.request.method": state.method,
        "url.path": path,
        "http.route": state.series_route,
        "http.response.status_code": int(state.status) if state.status.isdigit() else None,
        "http.response.body.bytes": state.body_bytes,
        "event.duration": int(seconds * _NS),
        "client.ip": request.META.get("REMOTE_ADDR"),
        "db.queries.count": int(state.queries[0]),
        "db.queries.duration": int(state.queries[1] * _NS),
        "cache.hits": state.cache_hits,
        "cache.misses": state.cache_misses,
        # Explicit, for responses that finish after the request's context is gone.
        "request_id": request_id_of(request),
    }
    user_id = loaded_user_id(request)
    if user_id is not None:
        extra["user.id"] = user_id
    ids = state.span_ids()
    if ids is not None:
        extra["trace_id"], extra["span_id"] = ids[0], ids[1]
    # Made here and handed to the logger's handlers directly: the record
    # logger.info() would make (through the installed record factory), without
    # its walk up the stack to find the caller (always this function) or its
    # check of every extra against the record's own attributes (none of ours
    # clash with them).
    record = _record_factory()(
        access_logger.name,
        _INFO,
        __file__,
        _LINE,
        "%s %s %s",
        (state.method, path, state.status),
        None,
        "log_request",
        None,
    )
    record.__dict__.update(extra)
    access_logger.handle(record)


_LINE = log_request.__code__.co_firstlineno
