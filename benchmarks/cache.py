"""What a cache operation costs with our cache metrics vs. django-prometheus's cache backend.

    .venv/bin/python benchmarks/cache.py [--rounds 5] [--blocks 30] [--ops 5000] [--requests 200]

Issue 17's target: **our cache metrics cost no more per operation than
django-prometheus's** (ratio of the added µs <= 1.00x).

One Django project with three ``CACHES`` aliases, all ``LocMemCache`` underneath:

``bare``               Django's ``LocMemCache``, not instrumented (our wrappers removed).
``django_prometheus``  ``django_prometheus.cache.backends.locmem.LocMemCache`` (the
                       backend swap it asks for: counters of gets, hits and misses).
``ours``               Django's ``LocMemCache`` as ``caches[...]`` makes it with
                       ``django_observability`` installed: ``cache_operations_total``,
                       ``cache_operation_duration_seconds`` and the request's hit/miss
                       counts; tracing off (no provider), as in the django-prometheus stack.

Every alias is filled with the same 80 keys and read in the same order over 100 keys
(80% hits). Two measures, each round in a fresh process:

* **per operation**: ``caches[alias].get(key)`` in a loop, outside any request; blocks
  of ``--ops`` gets, the three aliases' blocks interleaved (their order rotating from
  block to block) so that each block of one is timed beside a block of the others;
  median µs per get.
* **in a view**: ``WSGIHandler`` (no sockets) serving ``GET /get/<alias>/``, a view that
  makes 20 gets on that alias, behind ``ObservabilityMiddleware`` and Django's
  ``CommonMiddleware`` for all three (so the request's own cost is the same; only the
  cache differs); blocks of ``--requests`` requests, interleaved likewise; median µs per
  request, and the added µs per get = (request - bare's request) / 20.

"added" is a configuration's median minus ``bare``'s. The ratio ours / django-prometheus
is reported per measure, from the medians over the rounds and per round (paired). A run
fails (exit 1) if a stack did not record what it was sent: our counters must hold every
get made on ``ours`` as hits and misses (and nothing for the others), django-prometheus's
``django_cache_get_total`` every get made on its alias, and the access line of a
``/get/ours/`` request 16 hits and 4 misses. JSON in ``benchmarks/results/cache-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = ("bare", "django_prometheus", "ours")
LABELS = {
    "bare": "bare LocMemCache",
    "django_prometheus": "django-prometheus's LocMemCache",
    "ours": "LocMemCache + django-observability",
}
KEYS = [f"key-{i}" for i in range(100)]
STORED = KEYS[:80]  # 80% of the reads hit
VIEW_KEYS = KEYS[::5]  # key-0, key-5 ... key-95: 16 stored, 4 not
GETS_PER_VIEW = len(VIEW_KEYS)
TARGET_RATIO = 1.0


# --- the project (child processes) ------------------------------------------------------


def view(request: Any, alias: str) -> Any:
    from django.core.cache import caches
    from django.http import HttpResponse

    get = caches[alias].get
    for key in VIEW_KEYS:
        get(key)
    return HttpResponse(b"ok")


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("get/<str:alias>/", view)]


def configure() -> None:
    import django
    from django.conf import settings

    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    settings.configure(
        SECRET_KEY="benchmarks-only-not-secret",
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="benchmarks.cache",
        USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_observability",
        ],
        MIDDLEWARE=[
            "django_observability.middleware.ObservabilityMiddleware",
            "django.middleware.common.CommonMiddleware",
        ],
        CACHES={
            "bare": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "b"},
            "django_prometheus": {
                "BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache",
                "LOCATION": "p",
            },
            "ours": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "o"},
        },
        OBSERVABILITY_TRACING_EXPORTER="none",
        LOGGING_CONFIG=None,
    )
    django.setup()


class _Lines:
    """Keeps the access records' cache fields (the last one per path)."""

    def __init__(self) -> None:
        import logging

        class Handler(logging.Handler):
            def emit(inner, record: logging.LogRecord) -> None:
                self.last[record.__dict__["url.path"]] = (
                    record.__dict__.get("cache.hits"),
                    record.__dict__.get("cache.misses"),
                )

        self.last: dict[str, tuple[Any, Any]] = {}
        logger = logging.getLogger("django_observability.access")
        logger.handlers[:] = [Handler()]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def child(args: argparse.Namespace) -> int:
    configure()
    from django.core.cache import caches
    from django.core.handlers.wsgi import WSGIHandler
    from prometheus_client import REGISTRY

    from django_observability import cache as ours

    backends = {config: caches[config] for config in CONFIGS}
    for config in ("bare", "django_prometheus"):
        ours.uninstrument(backends[config])
    assert ours.is_instrumented(backends["ours"])
    assert not ours.is_instrumented(backends["bare"])
    for backend in backends.values():
        for key in STORED:
            backend.set(key, key)
    lines = _Lines()
    handler = WSGIHandler()
    gets = dict.fromkeys(CONFIGS, 0)

    def ops_block(config: str, n: int) -> float:
        get = backends[config].get
        keys = (KEYS * (n // len(KEYS) + 1))[:n]
        start = time.perf_counter()
        for key in keys:
            get(key)
        seconds = time.perf_counter() - start
        gets[config] += n
        return seconds / n * 1e6

    def view_block(config: str, n: int) -> float:
        env = _environ(f"/get/{config}/")
        start = time.perf_counter()
        for _ in range(n):
            response = handler(dict(env), _start_response)
            for _chunk in response:
                pass
            response.close()
        seconds = time.perf_counter() - start
        gets[config] += n * GETS_PER_VIEW
        return seconds / n * 1e6

    for config in CONFIGS:  # warm-up
        ops_block(config, args.ops)
        view_block(config, max(args.requests // 4, 10))
    per_op: dict[str, list[float]] = {c: [] for c in CONFIGS}
    per_request: dict[str, list[float]] = {c: [] for c in CONFIGS}
    shift = args.round
    for block in range(args.blocks):
        order = _rotated(CONFIGS, shift + block)
        for config in order:
            per_op[config].append(ops_block(config, args.ops))
        for config in order:
            per_request[config].append(view_block(config, args.requests))

    problems = []
    hits = REGISTRY.get_sample_value(
        "cache_operations_total", {"alias": "ours", "operation": "get", "result": "hit"}
    )
    misses = REGISTRY.get_sample_value(
        "cache_operations_total", {"alias": "ours", "operation": "get", "result": "miss"}
    )
    if (hits or 0) + (misses or 0) != gets["ours"]:
        problems.append(f"ours counted {hits} hits + {misses} misses of {gets['ours']} gets")
    for alias in ("bare", "django_prometheus"):
        counted = REGISTRY.get_sample_value(
            "cache_operations_total", {"alias": alias, "operation": "get", "result": "hit"}
        )
        if counted:
            problems.append(f"our metrics counted gets on {alias}")
    prometheus_gets = REGISTRY.get_sample_value("django_cache_get_total", {"backend": "locmem"})
    if prometheus_gets != gets["django_prometheus"]:
        problems.append(
            f"django-prometheus counted {prometheus_gets} of {gets['django_prometheus']} gets"
        )
    expected_line = (sum(k in STORED for k in VIEW_KEYS), sum(k not in STORED for k in VIEW_KEYS))
    if lines.last.get("/get/ours/") != expected_line:
        problems.append(f"the access line of /get/ours/ has {lines.last.get('/get/ours/')}")
    if lines.last.get("/get/bare/") != (0, 0):
        problems.append(f"the access line of /get/bare/ has {lines.last.get('/get/bare/')}")
    print(
        json.dumps(
            {
                "per_op_us": {c: statistics.median(v) for c, v in per_op.items()},
                "per_op_fastest_us": {c: min(v) for c, v in per_op.items()},
                "per_request_us": {c: statistics.median(v) for c, v in per_request.items()},
                "gets": gets,
                "recorded": {"ours_hits": hits, "ours_misses": misses, "dp_gets": prometheus_gets},
                "problems": problems,
            }
        )
    )
    return 0


def _rotated(items: tuple[str, ...], shift: int) -> tuple[str, ...]:
    k = shift % len(items)
    return items[k:] + items[:k]


def _environ(path: str) -> dict[str, Any]:
    import io

    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "testserver",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
    if not status.startswith("200"):
        raise RuntimeError(f"the view answered {status}")


# --- the run (parent) --------------------------------------------------------------------


def ratio(ours: float, anchor: float) -> float | None:
    return None if anchor <= 0 else ours / anchor


def added(figures: dict[str, float]) -> dict[str, float]:
    return {c: figures[c] - figures["bare"] for c in CONFIGS}


def run(args: argparse.Namespace) -> int:
    rounds = []
    for number in range(args.rounds):
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            f"--round={number}",
            f"--blocks={args.blocks}",
            f"--ops={args.ops}",
            f"--requests={args.requests}",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DJANGO_"))}
        env["PYTHONPATH"] = str(ROOT)
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rounds.append(result)
        print(
            f"round {number + 1}/{args.rounds}: per get "
            + ", ".join(f"{c} {result['per_op_us'][c]:.3f}" for c in CONFIGS)
            + " µs; per request "
            + ", ".join(f"{c} {result['per_request_us'][c]:.1f}" for c in CONFIGS)
            + " µs",
            flush=True,
        )

    per_op = {c: statistics.median(r["per_op_us"][c] for r in rounds) for c in CONFIGS}
    per_request = {c: statistics.median(r["per_request_us"][c] for r in rounds) for c in CONFIGS}
    op_added = added(per_op)
    view_added = {c: v / GETS_PER_VIEW for c, v in added(per_request).items()}
    op_ratio = ratio(op_added["ours"], op_added["django_prometheus"])
    view_ratio = ratio(view_added["ours"], view_added["django_prometheus"])
    paired_op = [
        ratio(*(added(r["per_op_us"])[c] for c in ("ours", "django_prometheus"))) for r in rounds
    ]
    paired_view = [
        ratio(*(added(r["per_request_us"])[c] for c in ("ours", "django_prometheus")))
        for r in rounds
    ]
    fastest = {c: min(r["per_op_fastest_us"][c] for r in rounds) for c in CONFIGS}
    fastest_added = added(fastest)
    fastest_ratio = ratio(fastest_added["ours"], fastest_added["django_prometheus"])

    def fmt(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}x"

    print()
    print(f"Per get, outside a request (median of {args.rounds} rounds, µs):")
    print()
    print("| config | µs per get | added µs over bare | added vs django-prometheus's |")
    print("|---|---:|---:|---:|")
    for c in CONFIGS:
        share = "—" if c == "bare" else fmt(ratio(op_added[c], op_added["django_prometheus"]))
        print(f"| {LABELS[c]} | {per_op[c]:.3f} | {op_added[c]:+.3f} | {share} |")
    print()
    print(
        f"In a view making {GETS_PER_VIEW} gets, behind ObservabilityMiddleware "
        f"(median of {args.rounds} rounds):"
    )
    print()
    print("| config | µs per request | added µs per get over bare | added vs django-prometheus's |")
    print("|---|---:|---:|---:|")
    for c in CONFIGS:
        share = "—" if c == "bare" else fmt(ratio(view_added[c], view_added["django_prometheus"]))
        print(f"| {LABELS[c]} | {per_request[c]:.1f} | {view_added[c]:+.3f} | {share} |")
    print()
    print(f"Target: ours / django-prometheus <= {TARGET_RATIO:.2f}x per operation.")
    print(
        "Paired per-round ratios, per get: "
        + ", ".join(fmt(r) for r in paired_op)
        + "; in a view: "
        + ", ".join(fmt(r) for r in paired_view)
        + f". Fastest blocks, per get: {fmt(fastest_ratio)}."
    )
    problems = [p for r in rounds for p in r["problems"]]
    for problem in problems:
        print(f"PROBLEM: {problem}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.results) if args.results else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / time.strftime("cache-%Y%m%d-%H%M%S.json")
    path.write_text(
        json.dumps(
            {
                "args": vars(args),
                "per_op_us": per_op,
                "per_request_us": per_request,
                "added_per_get_us": op_added,
                "added_per_get_in_view_us": view_added,
                "ratio_per_get": op_ratio,
                "ratio_in_view": view_ratio,
                "paired_per_get": paired_op,
                "paired_in_view": paired_view,
                "rounds": rounds,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"Results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--results", default="")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        return child(args)
    return run(args)


# The URLconf (ROOT_URLCONF = "benchmarks.cache") when Django imports this module.
if __name__ != "__main__":
    urlpatterns = _urlpatterns()

if __name__ == "__main__":
    sys.exit(main())
