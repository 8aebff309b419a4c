"""Per-request cost of the instrumentation middleware, side by side, in one run.

    .venv/bin/python benchmarks/run.py [--rounds 7] [--requests 20000] [--full-requests 10000]

Each round runs every configuration (bare Django, django-prometheus, ours, and
the full stacks with tracing and a JSON access log: the anchors', ours, ours
at 10% sampling, and two references: sdk_span_floor, the SDK's own server span
alone, and sdk_span_log_floor, that span plus one plain-text line per request
through the standard library's logging) in a fresh process, in an order that
rotates from round to round; the tables report medians over the rounds. See
benchmarks/README.md for how to read them. ``benchmarks/over_http.py`` measures
the same stacks behind gunicorn, over loopback.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METRICS_CONFIGS = ("bare", "django_prometheus", "ours")
FULL_CONFIGS = ("anchors_full", "ours_full", "ours_full_10pct")
# Not stacks: bare Django plus the OpenTelemetry SDK's own server span, nothing else;
# and the same plus one plain-text line per request through logging.FileHandler.
SPAN_FLOOR = "sdk_span_floor"
SPAN_LOG_FLOOR = "sdk_span_log_floor"
FLOORS = (SPAN_FLOOR, SPAN_LOG_FLOOR)
CONFIGS = (*METRICS_CONFIGS, *FULL_CONFIGS, *FLOORS)
# Timed with --full-requests: every configuration that exports spans.
TRACED_CONFIGS = (*FULL_CONFIGS, *FLOORS)
LABELS = {
    "bare": "bare Django",
    "django_prometheus": "django-prometheus (Before/After)",
    "ours": "django-observability",
    "anchors_full": "anchors_full: django-prometheus + DjangoInstrumentor + python-json-logger",
    "ours_full": "ours_full: django-observability, 100% sampled",
    "ours_full_10pct": "ours_full_10pct: django-observability, 10% sampled",
    SPAN_FLOOR: (
        "sdk_span_floor: the OpenTelemetry SDK's own server span "
        "(start/end, same attributes, batch processor), nothing else"
    ),
    SPAN_LOG_FLOOR: (
        "sdk_span_log_floor: the same span plus one plain-text line per request "
        "(logging.FileHandler, %(message)s), nothing else"
    ),
}
TARGET_RATIO = 0.35
# ours_full adds at most one third of what the anchors' stack adds over bare Django.
TARGET_FULL_RATIO = 1 / 3


def machine() -> dict[str, str | int]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    except (OSError, ValueError):
        import os

        nproc = os.cpu_count() or 0

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpu": cpu,
        "nproc": nproc,
        "python": platform.python_version(),
        "django": version("django"),
        "prometheus_client": version("prometheus-client"),
        "django_prometheus": version("django-prometheus"),
        "opentelemetry_sdk": version("opentelemetry-sdk"),
        "opentelemetry_instrumentation_django": version("opentelemetry-instrumentation-django"),
        "python_json_logger": version("python-json-logger"),
    }


def run_worker(config: str, requests: int, warmup: int, renders: int) -> dict:
    """One configuration in a fresh ``benchmarks.worker`` process; its JSON result.

    Exits the run when the worker fails (a wrong status, or a count, span or
    log line that does not match the requests sent).
    """
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.worker",
        config,
        f"--requests={requests}",
        f"--warmup={warmup}",
        f"--renders={renders}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(
            f"\nFAILED: the {config} worker exited with {proc.returncode} "
            "(see above: a wrong status or a recorded count that does not match)."
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def span_range(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def verification_summary(checks: list[dict], plain: bool = False) -> str:
    """What the workers of one traced configuration verified, over all rounds.

    ``plain``: the lines are ``METHOD PATH STATUS`` text (sdk_span_log_floor), not JSON.
    """
    sent = [v["requests_sent"] for v in checks]
    spans = [v["spans_exported"] for v in checks]
    shares = sorted(s / n for s, n in zip(spans, sent, strict=True))
    share = f"{shares[0]:.1%}" if shares[0] == shares[-1] else f"{shares[0]:.1%}-{shares[-1]:.1%}"
    if "log_lines" not in checks[0]:  # sdk_span_floor: spans only
        return (
            f"{span_range(sent)} requests sent per worker (warm-up included); "
            f"{span_range(spans)} spans exported ({share} of requests); no access log"
        )
    lines = [v["log_lines"] for v in checks]
    line_bytes = sum(v["log_bytes"] for v in checks) / sum(lines)
    kind = "plain text" if plain else "valid JSON"
    text = (
        f"{span_range(sent)} requests sent per worker (warm-up included); "
        f"{span_range(spans)} spans exported ({share} of requests); "
        f"{span_range(lines)} access-log lines, each {kind} naming the method, path "
        f"and status of a request sent ({line_bytes:,.0f} bytes per line)"
    )
    if "log_lines_with_trace_id" in checks[0]:
        with_trace = sum(v["log_lines_with_trace_id"] for v in checks)
        joined = sum(v["spans_joined_to_log_lines"] for v in checks)
        checked = sum(v["spans_checked_against_log_lines"] for v in checks)
        text += (
            f"; {with_trace:,}/{sum(lines):,} lines carry a trace.id; "
            f"{joined:,}/{checked:,} spot-checked exported spans found in the log "
            "with the same trace.id and span.id"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print the tables and write the results JSON; 0 unless a worker failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000, help="timed requests per process")
    parser.add_argument(
        "--full-requests",
        type=int,
        default=10_000,
        help="timed requests per process for the full stacks (tracing + access log)",
    )
    parser.add_argument("--warmup", type=int, default=2_000, help="untimed requests first")
    parser.add_argument("--renders", type=int, default=200, help="timed /metrics renders")
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args(argv)

    from benchmarks.traffic import MIX

    info = machine()
    print(
        f"Machine: {info['cpu']}, nproc {info['nproc']}; Python {info['python']}, "
        f"Django {info['django']}, prometheus-client {info['prometheus_client']}, "
        f"django-prometheus {info['django_prometheus']}, "
        f"opentelemetry-sdk {info['opentelemetry_sdk']}, "
        f"opentelemetry-instrumentation-django {info['opentelemetry_instrumentation_django']}, "
        f"python-json-logger {info['python_json_logger']}"
    )
    print(
        f"{args.rounds} rounds x {len(CONFIGS)} configs, fresh process each, order rotating; "
        f"{args.warmup:,} warm-up + {args.requests:,} timed requests "
        f"({args.full_requests:,} for the full stacks and the floors) over a {len(MIX)}-URL mix; "
        f"{args.renders} /metrics renders",
        flush=True,
    )

    rounds: list[dict[str, dict]] = []
    started = time.monotonic()
    for r in range(args.rounds):
        shift = r % len(CONFIGS)
        order = CONFIGS[shift:] + CONFIGS[:shift]
        results = {
            c: run_worker(
                c,
                args.full_requests if c in TRACED_CONFIGS else args.requests,
                args.warmup,
                args.renders,
            )
            for c in order
        }
        rounds.append(results)
        print(
            f"  round {r + 1}/{args.rounds} ({', '.join(order)}): "
            + ", ".join(f"{c} {results[c]['us_per_request']:.1f} µs" for c in CONFIGS),
            flush=True,
        )

    per_request = {c: [rd[c]["us_per_request"] for rd in rounds] for c in CONFIGS}
    median = {c: statistics.median(v) for c, v in per_request.items()}
    added = {c: median[c] - median["bare"] for c in CONFIGS}
    dp_added = added["django_prometheus"]
    # Same ratio from per-round paired differences: less sensitive to drift between rounds.
    paired = [
        (rd["ours"]["us_per_request"] - rd["bare"]["us_per_request"])
        / (rd["django_prometheus"]["us_per_request"] - rd["bare"]["us_per_request"])
        for rd in rounds
    ]

    print()
    print("| config | median µs/request | added µs over bare | added vs django-prometheus's |")
    print("|---|---:|---:|---:|")
    for c in METRICS_CONFIGS:
        ratio = "—" if c == "bare" else f"{added[c] / dp_added:.2f}x"
        extra = "—" if c == "bare" else f"+{fmt(added[c])}"
        print(f"| {LABELS[c]} | {fmt(median[c])} | {extra} | {ratio} |")
    ours_ratio = added["ours"] / dp_added
    verdict = "met" if ours_ratio <= TARGET_RATIO else "NOT met"
    best = {c: min(rd[c]["us_per_request_min_block"] for rd in rounds) for c in CONFIGS}
    best_ratio = (best["ours"] - best["bare"]) / (best["django_prometheus"] - best["bare"])
    print()
    print(
        f"Target: ours adds at most {TARGET_RATIO}x what django-prometheus adds: "
        f"{ours_ratio:.2f}x, {verdict}."
    )
    print(
        f"Cross-checks: median of per-round paired ratios {statistics.median(paired):.2f}x "
        f"(range {min(paired):.2f}-{max(paired):.2f}); from the fastest block of each "
        f"config {best_ratio:.2f}x (bare {fmt(best['bare'])}, django-prometheus "
        f"{fmt(best['django_prometheus'])}, ours {fmt(best['ours'])} µs)."
    )

    rendered = ("django_prometheus", "ours")
    render = {c: statistics.median(rd[c]["render_us"] for rd in rounds) for c in rendered}
    print()
    print(
        "| /metrics render (same traffic) | median µs | body bytes | samples "
        "| vs django-prometheus |"
    )
    print("|---|---:|---:|---:|---:|")
    for c in rendered:
        last = rounds[-1][c]
        print(
            f"| {LABELS[c]} | {fmt(render[c])} | {last['render_bytes']:,} | "
            f"{last['render_samples']:,} | {render[c] / render['django_prometheus']:.2f}x |"
        )
    render_verdict = "met" if render["ours"] <= render["django_prometheus"] else "NOT met"
    print()
    print(f"Target: our render no slower than django-prometheus's: {render_verdict}.")

    # The full stacks: tracing and a JSON access log on top of the metrics.
    anchors_added = added["anchors_full"]
    full_paired = [
        (rd["ours_full"]["us_per_request"] - rd["bare"]["us_per_request"])
        / (rd["anchors_full"]["us_per_request"] - rd["bare"]["us_per_request"])
        for rd in rounds
    ]
    print()
    print(
        "| config (full stacks: metrics + request span + JSON access log to a file) "
        "| median µs/request | added µs over bare | added / anchors_full added |"
    )
    print("|---|---:|---:|---:|")
    for c in ("bare", *FULL_CONFIGS):
        ratio = "—" if c == "bare" else f"{added[c] / anchors_added:.2f}x"
        extra = "—" if c == "bare" else f"+{fmt(added[c])}"
        print(f"| {LABELS[c]} | {fmt(median[c])} | {extra} | {ratio} |")
    floor_ratio = added[SPAN_FLOOR] / anchors_added
    log_floor_ratio = added[SPAN_LOG_FLOOR] / anchors_added
    for c in FLOORS:
        print(
            f"| {LABELS[c]} | {fmt(median[c])} | +{fmt(added[c])} "
            f"| {added[c] / anchors_added:.2f}x |"
        )
    full_ratio = added["ours_full"] / anchors_added
    full_verdict = "met" if full_ratio <= TARGET_FULL_RATIO else "NOT met"
    full_best_ratio = (best["ours_full"] - best["bare"]) / (best["anchors_full"] - best["bare"])
    print()
    print(
        "Target: ours_full adds at most one third (0.33x) of what anchors_full adds: "
        f"{full_ratio:.2f}x, {full_verdict}."
    )
    print(
        f"Of the 0.33x budget, the SDK's own span takes {floor_ratio:.2f}x; "
        f"with one plain-text line per request through logging, {log_floor_ratio:.2f}x."
    )
    print(
        f"Cross-checks: median of per-round paired ratios {statistics.median(full_paired):.2f}x "
        f"(range {min(full_paired):.2f}-{max(full_paired):.2f}); from the fastest block of each "
        f"config {full_best_ratio:.2f}x (bare {fmt(best['bare'])}, anchors_full "
        f"{fmt(best['anchors_full'])}, ours_full {fmt(best['ours_full'])}, ours_full_10pct "
        f"{fmt(best['ours_full_10pct'])}, {SPAN_FLOOR} {fmt(best[SPAN_FLOOR])}, "
        f"{SPAN_LOG_FLOOR} {fmt(best[SPAN_LOG_FLOOR])} µs)."
    )
    print()
    print("Verified in every full-stack and floor worker (all rounds):")
    for c in TRACED_CONFIGS:
        summary = verification_summary(
            [rd[c]["verified"] for rd in rounds], plain=c == SPAN_LOG_FLOOR
        )
        print(f"  {c}: {summary}")

    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "machine": info,
                "args": {k: str(v) for k, v in vars(args).items()},
                "seconds": round(time.monotonic() - started, 1),
                "median_us_per_request": median,
                "added_us_over_bare": added,
                "ratio_ours_vs_django_prometheus": ours_ratio,
                "paired_ratios": paired,
                "fastest_block_us": best,
                "ratio_from_fastest_blocks": best_ratio,
                "render_median_us": render,
                "ratio_ours_full_vs_anchors_full": full_ratio,
                "ratio_sdk_span_floor_vs_anchors_full": floor_ratio,
                "ratio_sdk_span_log_floor_vs_anchors_full": log_floor_ratio,
                "paired_ratios_full": full_paired,
                "ratio_full_from_fastest_blocks": full_best_ratio,
                "rounds": rounds,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"\nResults: {out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
