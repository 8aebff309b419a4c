"""One benchmark process: ``python -m benchmarks.worker CONFIG --requests N --warmup W``.

Sets Django up for CONFIG, drives the URL mix through ``WSGIHandler`` in
process, checks that the instrumentation recorded every request, times the
metrics endpoint, and prints one JSON object on stdout. Exits non-zero when a
response or a recorded count is not what it should be.

The full configurations (``stacks.py``) also check, after the traffic, that
the exporter received one span per request (about one in ten at 10%
sampling) and that the access-log file holds exactly one JSON line per
request sent, warm-up included, with the right method, path and status.
The reference ``sdk_span_floor`` (the SDK's own server span, no access log,
no metrics) checks the spans only; ``sdk_span_log_floor`` checks its spans and
its plain-text lines (``GET /path 200``), one per request.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from typing import Any

BLOCK_PASSES = 10  # passes over the 100-request mix per timed block

CONFIGS = (
    "bare",
    "django_prometheus",
    "ours",
    "anchors_full",
    "ours_full",
    "ours_full_10pct",
    "sdk_span_floor",
    "sdk_span_log_floor",
)
RENDER_PATHS = {"django_prometheus": "/dp/metrics", "ours": "/metrics"}
# Which kind of metrics each configuration records (bare and sdk_span_floor: none).
METRICS_KIND = {
    "django_prometheus": "django_prometheus",
    "anchors_full": "django_prometheus",
    "ours": "ours",
    "ours_full": "ours",
    "ours_full_10pct": "ours",
}


def recorded_requests(config: str) -> dict[str, float]:
    """Requests the instrumentation counted, from the default registry."""
    from prometheus_client import REGISTRY

    wanted = {
        "django_prometheus": {
            "django_http_requests_total_by_method_total": "requests by method",
            "django_http_responses_total_by_status_total": "responses by status",
        },
        "ours": {
            "http_server_request_duration_seconds_count": "duration histogram count",
            "http_server_response_body_size_bytes_count": "body size histogram count",
        },
    }[METRICS_KIND[config]]
    totals = dict.fromkeys(wanted.values(), 0.0)
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name in wanted:
                totals[wanted[sample.name]] += sample.value
    if METRICS_KIND[config] == "ours":
        active = REGISTRY.get_sample_value("http_server_active_requests", {"method": "GET"})
        totals["in flight after the run (must be 0)"] = active or 0.0
    return totals


def _field(line: dict[str, Any], dotted: str) -> Any:
    """``line["a"]["b"]`` for ``"a.b"``, or a flat ``line["a.b"]``; ``None`` if absent."""
    if dotted in line:
        return line[dotted]
    node: Any = line
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# Where each stack puts the request in its access-log line.
LOG_FIELDS = {
    "anchors_full": ("method", "path", "status"),
    "ours": ("http.request.method", "url.path", "http.response.status_code"),
}


def _plain_line(text: str) -> dict[str, Any] | None:
    """``GET /path 200`` (sdk_span_log_floor's line) as the fields a JSON line would have."""
    parts = text.rstrip("\n").split(" ")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return {"method": parts[0], "path": parts[1], "status": int(parts[2])}


def check_full_stack(
    config: str,
    expected: Counter[tuple[str, str, int]],
    provider: Any,
    exporter: Any,
    log_file: str | None,
    problems: list[str],
) -> dict[str, Any]:
    """Spans exported and access-log lines written, against the requests sent.

    ``log_file`` is ``None`` for a configuration without an access log
    (``sdk_span_floor``): then only the spans are checked.
    """
    import logging

    from benchmarks.stacks import LOGGERS, SAMPLE_RATIOS, SPAN_LOG_FLOOR

    sent = sum(expected.values())
    provider.force_flush()
    exported = exporter.exported
    ratio = SAMPLE_RATIOS[config]
    if ratio >= 1.0:
        if exported != sent:
            problems.append(f"spans exported: {exported}, expected {sent} (one per request)")
    else:
        # Sampling by trace id: binomial around ratio * sent; 6 sigma either side.
        mean = ratio * sent
        slack = 6 * math.sqrt(sent * ratio * (1 - ratio))
        if not mean - slack <= exported <= mean + slack:
            problems.append(
                f"spans exported: {exported}, expected about {mean:.0f} "
                f"({ratio:.0%} of {sent}, ±{slack:.0f})"
            )
    kinds = Counter(kind for _, _, _, kind in exporter.kept)
    if exporter.kept and set(kinds) != {"SERVER"}:
        problems.append(f"exported span kinds {dict(kinds)}, expected only SERVER spans")
    if log_file is None:
        return {
            "requests_sent": sent,
            "spans_exported": exported,
            "export_batches": exporter.batches,
        }

    plain = config == SPAN_LOG_FLOOR
    ours = config in ("ours_full", "ours_full_10pct")  # lines that carry trace ids
    for handler in logging.getLogger(LOGGERS[config]).handlers:
        handler.flush()
    method_key, path_key, status_key = LOG_FIELDS["ours" if ours else "anchors_full"]
    seen: Counter[tuple[str, str, int]] = Counter()
    lines = bad = with_trace = 0
    by_span: dict[str, str] = {}
    with open(log_file, encoding="utf-8") as fh:
        for text in fh:
            lines += 1
            try:
                line = _plain_line(text) if plain else json.loads(text)
            except ValueError:
                bad += 1
                continue
            if not isinstance(line, dict):
                bad += 1
                continue
            seen[(_field(line, method_key), _field(line, path_key), _field(line, status_key))] += 1
            if ours:
                trace_id, span_id = _field(line, "trace.id"), _field(line, "span.id")
                if trace_id:
                    with_trace += 1
                    by_span[span_id] = trace_id
    if bad:
        what = "plain 'METHOD PATH STATUS' lines" if plain else "JSON objects"
        problems.append(f"access log: {bad} of {lines} lines are not {what}")
    if lines != sent:
        problems.append(f"access log: {lines} lines, expected {sent} (one per request sent)")
    if seen != expected:
        missing = expected - seen
        extra = seen - expected
        problems.append(
            "access log: requests logged differ from requests sent; "
            f"missing {dict(list(missing.items())[:3])}, unexpected {dict(list(extra.items())[:3])}"
        )
    joined = 0
    if ours:
        if ratio >= 1.0 and with_trace != lines:
            problems.append(f"access log: {lines - with_trace} lines without trace.id at 100%")
        # Spot check: the log line of a sampled (exported) span carries its ids.
        for trace_id, span_id, _, _ in exporter.kept:
            if by_span.get(span_id) == trace_id:
                joined += 1
        if joined != len(exporter.kept):
            problems.append(
                f"access log: {len(exporter.kept) - joined} of {len(exporter.kept)} "
                "exported spans have no log line with their trace.id and span.id"
            )
    verified: dict[str, Any] = {
        "requests_sent": sent,
        "spans_exported": exported,
        "export_batches": exporter.batches,
        "log_lines": lines,
        "log_bytes": os.path.getsize(log_file),
    }
    if ours:
        verified["log_lines_with_trace_id"] = with_trace
        verified["spans_checked_against_log_lines"] = len(exporter.kept)
        verified["spans_joined_to_log_lines"] = joined
    return verified


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", choices=CONFIGS)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--renders", type=int, default=200)
    args = parser.parse_args()

    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.pop("prometheus_multiproc_dir", None)
    os.environ["BENCH_CONFIG"] = args.config
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    # Both stacks get the SDK pieces the benchmark builds, nothing from the environment.
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]

    from benchmarks.stacks import LOG_FILE_ENV, LOGGED_CONFIGS, TRACED_CONFIGS

    traced = args.config in TRACED_CONFIGS
    log_file = None
    provider = exporter = None
    if args.config in LOGGED_CONFIGS:
        log_dir = tempfile.mkdtemp(prefix=f"bench-{args.config}-")
        atexit.register(shutil.rmtree, log_dir, ignore_errors=True)
        log_file = os.environ[LOG_FILE_ENV] = os.path.join(log_dir, "access.log")
    if traced:
        from benchmarks.stacks import install_tracing

        provider, exporter = install_tracing(args.config)

    import django
    from django.core.handlers.wsgi import WSGIHandler

    from benchmarks.traffic import Client, environ, request_sequence

    django.setup()
    client = Client(WSGIHandler())
    sequence = request_sequence()
    templates = [template for template, _ in sequence]
    size = len(templates)
    problems: list[str] = []

    # Warm-up, checking every response's status on the first pass.
    sent_requests: Counter[tuple[str, str, int]] = Counter()
    for i in range(max(args.warmup, size)):
        template, expected = sequence[i % size]
        sent_requests[(template["REQUEST_METHOD"], template["PATH_INFO"], expected)] += 1
        status, _ = client(template)
        if status != expected and i < size:
            problems.append(
                f"{template['REQUEST_METHOD']} {template['PATH_INFO']}: "
                f"status {status}, expected {expected}"
            )

    # Timed in blocks of whole passes over the mix: the median block is robust
    # to a burst of interference from the rest of the machine.
    gc.collect()
    call = client.__call__
    block = size * BLOCK_PASSES
    blocks = max(1, args.requests // block)
    block_templates = templates * BLOCK_PASSES
    block_us = []
    for _ in range(blocks):
        start = time.perf_counter_ns()
        for template in block_templates:
            call(template)
        block_us.append((time.perf_counter_ns() - start) / block / 1000)
    sent = max(args.warmup, size) + blocks * block
    for template, expected in sequence:
        key = (template["REQUEST_METHOD"], template["PATH_INFO"], expected)
        sent_requests[key] += blocks * BLOCK_PASSES
    assert sum(sent_requests.values()) == sent

    result: dict[str, object] = {
        "config": args.config,
        "requests": blocks * block,
        "warmup": args.warmup,
        "us_per_request": statistics.median(block_us),
        "us_per_request_min_block": min(block_us),
        "us_per_request_mean": statistics.fmean(block_us),
    }
    if traced:
        try:
            result["verified"] = check_full_stack(
                args.config, sent_requests, provider, exporter, log_file, problems
            )
        finally:
            provider.shutdown()

    if args.config in METRICS_KIND:
        recorded = recorded_requests(args.config)
        result["recorded"] = recorded
        for what, value in recorded.items():
            expected_value = 0 if what.startswith("in flight") else sent
            if value != expected_value:
                problems.append(f"{what}: {value:g}, expected {expected_value}")

    if args.config in RENDER_PATHS:
        render = environ("GET", RENDER_PATHS[args.config])
        status, body = client(render)
        if status != 200:
            problems.append(f"GET {RENDER_PATHS[args.config]}: status {status}")
        times = []
        for _ in range(args.renders):
            t0 = time.perf_counter_ns()
            client(render)
            times.append(time.perf_counter_ns() - t0)
        result["render_us"] = statistics.median(times) / 1000
        result["render_bytes"] = len(body)
        result["render_samples"] = sum(
            1 for line in body.split(b"\n") if line and not line.startswith(b"#")
        )

    result["problems"] = problems
    print(json.dumps(result))
    if problems:
        for problem in problems:
            print(f"worker[{args.config}]: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
