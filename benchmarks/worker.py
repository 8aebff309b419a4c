"""One benchmark process: ``python -m benchmarks.worker CONFIG --requests N --warmup W``.

Sets Django up for CONFIG, drives the URL mix through ``WSGIHandler`` in
process, checks that the instrumentation recorded every request, times the
metrics endpoint, and prints one JSON object on stdout. Exits non-zero when a
response or a recorded count is not what it should be.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

BLOCK_PASSES = 10  # passes over the 100-request mix per timed block

RENDER_PATHS = {"django_prometheus": "/dp/metrics", "ours": "/metrics"}


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
    }[config]
    totals = dict.fromkeys(wanted.values(), 0.0)
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name in wanted:
                totals[wanted[sample.name]] += sample.value
    if config == "ours":
        active = REGISTRY.get_sample_value("http_server_active_requests", {"method": "GET"})
        totals["in flight after the run (must be 0)"] = active or 0.0
    return totals


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", choices=("bare", "django_prometheus", "ours"))
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--renders", type=int, default=200)
    args = parser.parse_args()

    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.pop("prometheus_multiproc_dir", None)
    os.environ["BENCH_CONFIG"] = args.config
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"

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
    for i in range(max(args.warmup, size)):
        template, expected = sequence[i % size]
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

    result: dict[str, object] = {
        "config": args.config,
        "requests": blocks * block,
        "warmup": args.warmup,
        "us_per_request": statistics.median(block_us),
        "us_per_request_min_block": min(block_us),
        "us_per_request_mean": statistics.fmean(block_us),
    }

    if args.config != "bare":
        recorded = recorded_requests(args.config)
        result["recorded"] = recorded
        for what, value in recorded.items():
            expected_value = 0 if what.startswith("in flight") else sent
            if value != expected_value:
                problems.append(f"{what}: {value:g}, expected {expected_value}")

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
