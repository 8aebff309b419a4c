"""Per-call cost of outgoing-HTTP instrumentation, side by side, in one run.

    .venv/bin/python benchmarks/http_client.py [--rounds 5] [--calls 3000]

One loopback upstream (a keep-alive HTTP/1.1 server in a process of its own)
and, per round, one fresh process per configuration, in an order that rotates
from round to round, each making the same ``requests.Session().get()`` calls:

``bare``           requests, nothing instrumented;
``otel``           opentelemetry-instrumentation-requests alone, with the stable HTTP
                   conventions (as ours) and the same SDK pieces as the request
                   benchmarks (``stacks.make_provider``: a TracerProvider, a
                   BatchSpanProcessor, an exporter that counts);
``ours``           django-observability's ``http_client``: the same instrumentation,
                   enabled by the app, with our metric (through its meter) and the
                   request-id hook, the same SDK pieces;
``ours_no_spans``  ``ours`` with tracing off: the metric and the hook alone.

A process warms up, times blocks of calls and reports the median block; then
it checks that nothing was dropped (one span per call where spans are on, our
histogram counting every call). The table gives µs per call, the cost added
over ``bare``, and ``(ours - bare) / (otel - bare)``: issue 17's target is at
most 1.2. Results also go to ``benchmarks/results/http-client-*.json``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = ("bare", "otel", "ours", "ours_no_spans")
TARGET_RATIO = 1.2
BLOCK = 500
WARMUP = 300


# --- the upstream ----------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        # One write: headers and body in one segment (no Nagle and delayed-ACK stall).
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")

    def log_message(self, *args: object) -> None:
        pass


def serve(port_file: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


# --- one configuration in a process of its own -------------------------------------------


def run_config(config: str, url: str, calls: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    exporter = provider = None
    if config in ("otel", "ours"):
        from benchmarks.stacks import DiscardingExporter, make_provider

        exporter = DiscardingExporter()
        provider = make_provider(1.0, exporter)
    if config == "otel":
        # The stable HTTP conventions, as ours has them (the app sets this when unset):
        # the same span attributes on both sides.
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().instrument(tracer_provider=provider)
    if config in ("ours", "ours_no_spans"):
        import django
        from django.conf import settings

        settings.configure(
            INSTALLED_APPS=["django_observability"],
            DATABASES={},
            OBSERVABILITY_HTTP_CLIENT_INSTRUMENTATIONS=["requests"],
            OBSERVABILITY_HTTP_CLIENT_REQUEST_ID_HOSTS=["127.0.0.1"],
            LOGGING_CONFIG=None,
        )
        from django_observability import tracing

        if provider is not None:
            tracing.use_tracer_provider(provider)
        django.setup()
    import requests

    if config in ("ours", "ours_no_spans"):
        from django_observability import http_client

        assert http_client.enabled() == {"requests"}, http_client.enabled()
    session = requests.Session()
    for _ in range(WARMUP):
        session.get(url)
    blocks = []
    done = WARMUP
    while done < WARMUP + calls:
        start = time.perf_counter()
        for _ in range(BLOCK):
            session.get(url)
        blocks.append((time.perf_counter() - start) / BLOCK)
        done += BLOCK
    result = {"us_per_call": statistics.median(blocks) * 1e6, "calls": done}
    if provider is not None:
        provider.force_flush()
        result["spans"] = exporter.exported
        assert exporter.exported == done, f"{config}: {exporter.exported} spans for {done} calls"
    if config in ("ours", "ours_no_spans"):
        from prometheus_client import REGISTRY

        counted = REGISTRY.get_sample_value(
            "http_client_request_duration_seconds_count",
            {"method": "GET", "server_address": "127.0.0.1", "status": "200"},
        )
        assert counted == done, f"{config}: the metric counted {counted} of {done} calls"
        result["counted"] = counted
    return result


# --- the run ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.child:
        print(json.dumps(run_config(args.child, args.url, args.calls)))
        return 0

    port_file = RESULTS / f".upstream-{os.getpid()}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    upstream = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("the upstream did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/"
        runs: dict[str, list[float]] = {config: [] for config in CONFIGS}
        for number in range(args.rounds):
            order = CONFIGS[number % len(CONFIGS) :] + CONFIGS[: number % len(CONFIGS)]
            for config in order:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        config,
                        "--url",
                        url,
                        "--calls",
                        str(args.calls),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    cwd=ROOT,
                )
                if out.returncode != 0:
                    print(out.stdout, out.stderr, file=sys.stderr)
                    return 1
                runs[config].append(json.loads(out.stdout.strip().splitlines()[-1])["us_per_call"])
            print(f"round {number + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        upstream.terminate()
        upstream.wait(10)
        port_file.unlink(missing_ok=True)

    median = {config: statistics.median(values) for config, values in runs.items()}
    added = {config: median[config] - median["bare"] for config in CONFIGS}
    print(f"\n{args.rounds} rounds, {args.calls} calls per process, medians (µs per call):\n")
    print("| config | µs per call | added over bare |")
    print("|---|---:|---:|")
    for config in CONFIGS:
        print(f"| {config} | {median[config]:.1f} | {added[config]:+.1f} |")
    ratio = added["ours"] / added["otel"] if added["otel"] > 0 else float("nan")
    print(
        f"\n(ours - bare) / (otel - bare) = {ratio:.2f}x "
        f"(target: at most {TARGET_RATIO}x); metric and hook alone: "
        f"{added['ours_no_spans']:+.1f} µs"
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"http-client-{stamp}.json").write_text(
        json.dumps({"runs": runs, "median": median, "ratio": ratio}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
