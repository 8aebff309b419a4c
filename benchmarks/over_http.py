"""What each stack costs over real HTTP: gunicorn on loopback, loaded by wrk.

    .venv/bin/python benchmarks/over_http.py [--seconds 10] [--rounds 3] [--configs bare,ours]

One gunicorn (one sync worker) per configuration serves the benchmark
project (``benchmarks.wsgi``) on 127.0.0.1; the stacks are the in-process
ones of ``run.py``: bare Django, django-prometheus, ours, and the full stacks
(``anchors_full``, ``ours_full``: metrics, a server span per request and a JSON
access-log line). Each round loads every server in turn, in an order that
rotates, for ``--seconds`` with the URL mix of ``traffic.py`` (HEAD sent as
GET: wrk cannot read a HEAD response), after a short warm-up.

The load comes from ``wrk`` (Debian package ``wrk``). Without it the script
says so and uses a small single-threaded Python client instead, whose own
cost per request is larger and noisier: the ratios stay comparable, the
absolute figures do not.

Each server first answers every URL of the mix with its expected status.
After each timed load the requests its instrumentation counted (its
``/metrics``) and the access-log lines it wrote must cover every request the
load generator completed, so no stack wins by dropping work. A failed check
makes the run exit non-zero; slowness never does.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METRICS_CONFIGS = ("bare", "django_prometheus", "ours")
FULL_CONFIGS = ("anchors_full", "ours_full")
CONFIGS = (*METRICS_CONFIGS, *FULL_CONFIGS)
# The anchor each configuration's added cost is divided by.
ANCHOR = {"django_prometheus": "django_prometheus", "ours": "django_prometheus"}
ANCHOR.update(dict.fromkeys(FULL_CONFIGS, "anchors_full"))
# Where each configuration counts requests: (metrics path, counter sample name).
COUNTERS = {
    "django_prometheus": ("/dp/metrics", "django_http_requests_total_by_method_total"),
    "anchors_full": ("/dp/metrics", "django_http_requests_total_by_method_total"),
    "ours": ("/metrics", "http_server_request_duration_seconds_count"),
    "ours_full": ("/metrics", "http_server_request_duration_seconds_count"),
}
LOGGED = frozenset(FULL_CONFIGS)
LABELS = {
    "bare": "bare Django",
    "django_prometheus": "django-prometheus",
    "ours": "django-observability",
    "anchors_full": "anchors_full (django-prometheus + OTel instrumentation + JSON log)",
    "ours_full": "ours_full (django-observability: metrics + span + access log)",
}

# wrk reads the mix from this script and reports its summary as one JSON line.
WRK_SCRIPT = """
local requests = {
%s
}
local i = 0
request = function()
  i = i %% #requests + 1
  return requests[i]
end
done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout))
end
"""


# (method, target with its query string, body, headers)
Request = tuple[str, str, bytes, dict[str, str]]


def http_request(method: str, path: str, query: str, body: bytes, extra: dict[str, str]) -> Request:
    """One entry of ``traffic.MIX`` over HTTP (``HTTP_X_REQUEST_ID``: ``X-Request-Id``)."""
    headers = {key[5:].replace("_", "-").title(): value for key, value in extra.items()}
    if body:
        headers["Content-Type"] = "application/json"
    return method, f"{path}?{query}" if query else path, body, headers


def load_requests() -> list[Request]:
    """The shuffled 100-request mix of ``traffic.py``, HEAD sent as GET (wrk cannot read it)."""
    from benchmarks.traffic import MIX

    sequence = []
    for method, path, query, body, extra, _, weight in MIX:
        method = "GET" if method == "HEAD" else method
        sequence += [http_request(method, path, query, body, extra)] * weight
    random.Random(3333).shuffle(sequence)
    return sequence


def lua_string(text: str) -> str:
    """``text`` as a Lua string literal (a JSON string is one, for ASCII text)."""
    return json.dumps(text)


def wrk_script(requests: list[Request]) -> str:
    """A wrk Lua script that cycles through ``requests`` and prints a JSON summary."""
    lines = []
    for method, target, body, headers in requests:
        table = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
        lua_body = lua_string(body.decode()) if body else "nil"
        lines.append(
            f"  wrk.format({lua_string(method)}, {lua_string(target)}, {{{table}}}, {lua_body}),"
        )
    return WRK_SCRIPT % "\n".join(lines)


def run_wrk(port: int, seconds: int, connections: int, script: str) -> dict[str, Any]:
    """Load ``port`` with wrk for ``seconds``; its summary (µs, requests, socket errors)."""
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "-s",
        script,
        f"http://127.0.0.1:{port}/",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_python(port: int, seconds: float, requests: list[Request]) -> dict[str, Any]:
    """The fallback load: one connection at a time, one request each, for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    deadline = start + seconds
    i = 0
    while (began := time.perf_counter()) < deadline:
        method, target, body, headers = requests[i % len(requests)]
        i += 1
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, target, body=body or None, headers=headers)
            conn.getresponse().read()
        except OSError:
            errors += 1
            continue
        finally:
            conn.close()
        latencies.append(time.perf_counter() - began)
    duration = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "duration_us": int(duration * 1e6),
        "p50_us": int(latencies[len(latencies) // 2] * 1e6) if latencies else 0,
        "p99_us": int(latencies[int(len(latencies) * 0.99)] * 1e6) if latencies else 0,
        "errors": errors,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One gunicorn (one sync worker) serving the benchmark project with ``config``."""

    def __init__(self, config: str, workdir: Path) -> None:
        self.config = config
        self.port = free_port()
        self.log_file = workdir / f"{config}-access.log" if config in LOGGED else None
        self.error_log = workdir / f"{config}-gunicorn.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "DJANGO_", "BENCH_"))
            and k.lower() != "prometheus_multiproc_dir"
        }
        env.update(BENCH_CONFIG=config, DJANGO_SETTINGS_MODULE="benchmarks.settings")
        if self.log_file is not None:
            env["BENCH_LOG_FILE"] = str(self.log_file)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                f"--bind=127.0.0.1:{self.port}",
                "--workers=1",
                "--worker-class=sync",
                "--log-level=warning",
                f"--error-logfile={self.error_log}",
                f"--chdir={ROOT}",
                "benchmarks.wsgi:application",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.get("/ping/")
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"FAILED: gunicorn for {self.config} did not start:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.error_log.read_text(encoding="utf-8")[-2000:]
        except OSError:
            return "(no gunicorn log)"

    def get(
        self, target: str, method: str = "GET", body: bytes = b"", headers: dict | None = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, target, body=body or None, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def check_statuses(self) -> list[str]:
        """Every URL of the mix (HEAD included) answers with its expected status."""
        from benchmarks.traffic import MIX

        problems = []
        for method, path, query, body, extra, expected, _ in MIX:
            _, target, _, headers = http_request(method, path, query, body, extra)
            status, _ = self.get(target, method, body, headers)
            if status != expected:
                problems.append(f"{method} {target}: status {status}, expected {expected}")
        return problems

    def counted(self) -> float | None:
        """Requests the instrumentation has counted so far (``None``: it counts none)."""
        if self.config not in COUNTERS:
            return None
        from prometheus_client.parser import text_string_to_metric_families

        path, sample_name = COUNTERS[self.config]
        status, body = self.get(path)
        if status != 200:
            raise SystemExit(f"FAILED: GET {path} on {self.config}: status {status}")
        return sum(
            sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
            if sample.name == sample_name
        )

    def log_lines(self) -> int | None:
        if self.log_file is None:
            return None
        with open(self.log_file, "rb") as fh:
            return sum(1 for _ in fh)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(
    server: Server, load: Callable[[int], dict[str, Any]], connections: int
) -> tuple[dict[str, Any], list[str]]:
    """One timed load of ``server``; the load's summary and what the server failed to record."""
    counted_before, lines_before = server.counted(), server.log_lines()
    summary = load(server.port)
    problems = []
    done = summary["requests"]
    if summary["errors"]:
        problems.append(f"{summary['errors']} socket errors during the load")
    # The server may have served up to one request per connection more than the
    # client completed (cut off at the deadline), plus the scrape itself.
    slack = connections + 1
    for what, before, after in (
        ("requests counted", counted_before, server.counted()),
        ("access-log lines", lines_before, server.log_lines()),
    ):
        if before is None:
            continue
        recorded = after - before
        summary[what.replace(" ", "_").replace("-", "_")] = recorded
        if not done <= recorded <= done + slack:
            problems.append(f"{what}: {recorded:g} for {done} requests completed")
    return summary, problems


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print the tables and write the results JSON; 0 unless a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="timed load per config and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="seconds of untimed load first")
    parser.add_argument("--connections", type=int, default=1, help="wrk's open connections")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    parser.add_argument(
        "--load", choices=("wrk", "python"), default="wrk", help="load generator (python: fallback)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args(argv)
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    if "bare" not in configs:
        raise SystemExit("--configs must include bare: every figure is relative to it")

    from benchmarks.run import machine

    requests = load_requests()
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    tool = args.load
    if tool == "wrk" and shutil.which("wrk") is None:
        print(
            "wrk not found (Debian: apt-get install wrk); using the Python load generator "
            "instead: its own cost per request is larger, compare ratios, not absolute figures.",
            flush=True,
        )
        tool = "python"
    if tool == "wrk":
        script = workdir / "mix.lua"
        script.write_text(wrk_script(requests), encoding="utf-8")

        def load(port: int, seconds: int) -> dict[str, Any]:
            return run_wrk(port, seconds, args.connections, str(script))
    else:
        args.connections = 1

        def load(port: int, seconds: int) -> dict[str, Any]:
            return run_python(port, seconds, requests)

    info = machine()
    print(
        f"Machine: {info['cpu']}, nproc {info['nproc']}; Python {info['python']}, "
        f"Django {info['django']}; gunicorn 1 sync worker per config on 127.0.0.1; "
        f"load: {tool}, {args.connections} connection(s), {args.warmup} s warm-up + "
        f"{args.seconds} s timed per config and round, {args.rounds} rounds, order rotating; "
        f"{len(requests)}-request mix",
        flush=True,
    )
    started = time.monotonic()
    servers: dict[str, Server] = {}
    rounds: list[dict[str, dict[str, Any]]] = []
    problems: list[str] = []
    try:
        for config in configs:
            servers[config] = Server(config, workdir)
        for config, server in servers.items():
            server.wait_ready()
            problems += [f"{config}: {p}" for p in server.check_statuses()]
            load(server.port, args.warmup)
        if problems:
            raise SystemExit("FAILED:\n  " + "\n  ".join(problems))
        for r in range(args.rounds):
            shift = r % len(configs)
            order = configs[shift:] + configs[:shift]
            results = {}
            for config in order:
                summary, found = measure(
                    servers[config], lambda port: load(port, args.seconds), args.connections
                )
                summary["req_per_s"] = summary["requests"] / summary["duration_us"] * 1e6
                results[config] = summary
                problems += [f"{config} round {r + 1}: {p}" for p in found]
            rounds.append(results)
            print(
                f"  round {r + 1}/{args.rounds}: "
                + ", ".join(
                    f"{c} {results[c]['req_per_s']:,.0f} req/s, p50 {results[c]['p50_us']} µs"
                    for c in configs
                ),
                flush=True,
            )
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def median(config: str, key: str) -> float:
        return statistics.median(rd[config][key] for rd in rounds)

    # The median latency, not throughput, measures the added cost: on a shared
    # machine a burst of other work stalls a few requests for milliseconds,
    # which moves the mean (and req/s) far more than the median.
    p50 = {c: median(c, "p50_us") for c in configs}
    added = {c: p50[c] - p50["bare"] for c in configs}
    # None when the anchor added nothing measurable (a very short or disturbed run).
    ratios = {
        c: added[c] / added[ANCHOR[c]] if added[ANCHOR[c]] > 0 else None
        for c in configs
        if c in ANCHOR and ANCHOR[c] in configs
    }
    for title, group in (("metrics only", METRICS_CONFIGS[1:]), ("full stacks", FULL_CONFIGS)):
        shown = [c for c in ("bare", *group) if c in configs]
        if len(shown) < 2:
            continue
        anchor = "anchors_full's" if group is FULL_CONFIGS else "django-prometheus's"
        print()
        print(
            f"| over HTTP, {title} | req/s | p50 µs | p99 µs "
            f"| added p50 µs over bare | added vs {anchor} |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for c in shown:
            extra = "—" if c == "bare" else f"{added[c]:+,.0f}"
            ratio = "—" if ratios.get(c) is None else f"{ratios[c]:.2f}x"
            print(
                f"| {LABELS[c]} | {median(c, 'req_per_s'):,.0f} | {p50[c]:,.0f} "
                f"| {median(c, 'p99_us'):,.0f} | {extra} | {ratio} |"
            )
    print()
    print(
        "Medians over rounds. p50/p99: the load generator's latency per request (connect, "
        "send, receive); added: the p50's difference to bare's."
    )
    if problems:
        print("\nFAILED checks:\n  " + "\n  ".join(problems), file=sys.stderr)
    else:
        checked = [c for c in configs if c in COUNTERS or c in LOGGED]
        print(
            "Verified every round: each server counted every completed request"
            + (" and wrote one access-log line for each" if LOGGED & set(configs) else "")
            + f" ({', '.join(checked) or 'nothing to check'})."
        )

    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"http-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "machine": info,
                "load": tool,
                "args": {k: str(v) for k, v in vars(args).items()},
                "seconds": round(time.monotonic() - started, 1),
                "p50_us": p50,
                "added_p50_us_over_bare": added,
                "ratios_vs_anchor": ratios,
                "problems": problems,
                "rounds": rounds,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"\nResults: {out} ({time.monotonic() - started:.0f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
