"""Where ObservabilityMiddleware spends its time per request.

    .venv/bin/python benchmarks/profile_middleware.py [--requests 20000]

Three views of the ``ours`` configuration, in this process:

1. cProfile over the URL mix, restricted to django_observability and
   prometheus_client (the instrumentation's own functions);
2. micro-timings of each step the middleware takes per request, on a real
   request and response from the mix, in nanoseconds;
3. in-situ ablation: handlers with and without the middleware, and with one
   part of it stubbed out at a time, timed in interleaved blocks in the same
   process (so machine drift hits every variant alike). The differences say
   what each part adds in real traffic, where caches are colder than in (2).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def step_timings() -> list[tuple[str, float]]:
    import time
    import uuid

    from django.core.handlers.wsgi import WSGIRequest
    from django.urls import resolve

    from benchmarks.traffic import environ
    from benchmarks.views import data
    from django_observability import middleware as mw
    from django_observability import request_id as rid
    from django_observability.metrics import get_metrics, method_label, route_label

    env = environ("GET", "/api/v1/items/42/")
    env["wsgi.input"] = io.BytesIO(env.pop("_body"))
    request = WSGIRequest(env)
    request.resolver_match = resolve(request.path_info)
    response = data(request, pk=42)
    metrics = get_metrics()
    config = mw._get_config()
    child = metrics._duration_children.get(("GET", "/api/v1/items/<int:pk>/", "200"))
    schild = metrics._size_children.get(("GET", "/api/v1/items/<int:pk>/"))
    active = metrics.active_child("GET")
    token_var = rid._current
    meta_with_id = dict(request.META, HTTP_X_REQUEST_ID="lb-7f3a9c")
    wrapped = mw.ObservabilityMiddleware(lambda request: response)

    def whole() -> None:
        response.headers.pop(config.header, None)
        wrapped(request)

    def ctx() -> None:
        token_var.reset(token_var.set("x"))

    def echo() -> None:
        response.headers.pop(config.header, None)
        response.headers.setdefault(config.header, "0123456789abcdef0123456789abcdef")

    def echo_set() -> None:
        response.headers.pop(config.header, None)
        response.headers[config.header] = "0123456789abcdef0123456789abcdef"

    steps = {
        "ObservabilityMiddleware.__call__ around a no-op inner stack": whole,
        "request id: from_meta, no incoming id (uuid4().hex)": lambda: rid.from_meta(
            request.META, config.meta_key, True
        ),
        "  of which uuid.uuid4().hex": lambda: uuid.uuid4().hex,
        "  for comparison: os.urandom(16).hex()": lambda: os.urandom(16).hex(),
        "request id: from_meta, valid incoming id (regex)": lambda: rid.from_meta(
            meta_with_id, config.meta_key, True
        ),
        "request id: ContextVar set + reset": ctx,
        "request id: headers.pop + setdefault (header absent)": echo,
        "  of which headers.pop (reference)": lambda: response.headers.pop(config.header, None),
        "  for comparison: headers.pop + plain set": echo_set,
        "get_metrics()": get_metrics,
        "method_label(request.method)": lambda: method_label(request.method),
        "_Tracked(...) incl. active gauge inc()": lambda: mw._Tracked(metrics, "GET"),
        "active gauge dec()": active.dec,
        "route_label(request.resolver_match)": lambda: route_label(request.resolver_match),
        "  of which resolver_match.route": lambda: request.resolver_match.route,
        "str(response.status_code)": lambda: str(response.status_code),
        "len(response.content) (joins the body)": lambda: len(response.content),
        "Metrics.observe(...) (both histograms)": lambda: metrics.observe(
            "GET", "/api/v1/items/<int:pk>/", "200", 0.0001, 120
        ),
        "  of which duration child.observe()": lambda: child.observe(0.0001),
        "  of which size child.observe()": lambda: schild.observe(120),
        "time.perf_counter() x2": lambda: (time.perf_counter(), time.perf_counter()),
    }
    out = []
    for name, fn in steps.items():
        timer = timeit.Timer(fn)
        try:
            n, _ = timer.autorange()
            best = min(timer.repeat(repeat=5, number=n)) / n
        except Exception as exc:  # the app's internals moved on: say so, keep going
            print(f"  (skipped {name!r}: {exc!r})")
            continue
        out.append((name, best * 1e9))
    return out


class Passthrough:
    """A middleware that does nothing: the cost of one more layer in the chain."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


def ablation(cycles: int) -> list[tuple[str, float, float]]:
    import contextlib
    import statistics
    import time
    from unittest import mock

    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    from benchmarks.traffic import Client, request_sequence
    from django_observability import middleware as mw
    from django_observability import request_id as rid
    from django_observability.metrics import get_metrics

    instruments = type(get_metrics())  # the class holding observe(), whatever its name
    ours = list(settings.MIDDLEWARE)
    stack = ours[1:]

    def handler(middleware: list[str]) -> Client:
        saved = settings.MIDDLEWARE
        settings.MIDDLEWARE = middleware
        try:
            return Client(WSGIHandler())
        finally:
            settings.MIDDLEWARE = saved

    counter = iter(range(10**12))

    def cheap_id() -> str:
        return f"{next(counter):032x}"

    def nothing(*args: object) -> None:
        # A plain function, not a Mock: a Mock's own cost would swamp the part removed.
        return None

    bare, full = handler(stack), handler(ours)
    variants = {
        "bare Django": (bare, ()),
        "+ pass-through middleware (one more layer)": (
            handler([f"{__name__}.Passthrough", *stack]),
            (),
        ),
        "+ ours, metrics off (request id only)": (
            full,
            (mock.patch.object(mw, "get_metrics", nothing),),
        ),
        "+ ours, metrics off, uuid4 replaced by a counter": (
            full,
            (
                mock.patch.object(mw, "get_metrics", nothing),
                mock.patch.object(rid, "new_request_id", cheap_id),
            ),
        ),
        "+ ours": (full, ()),
        "+ ours, uuid4 replaced by a counter": (
            full,
            (mock.patch.object(rid, "new_request_id", cheap_id),),
        ),
        "+ ours, Metrics.observe a no-op (histograms)": (
            full,
            (mock.patch.object(instruments, "observe", nothing),),
        ),
    }
    templates = [t for t, _ in request_sequence()] * 10
    for client, _ in variants.values():
        for template in templates:
            client(template)
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for cycle in range(cycles):
        for name in names[cycle % len(names) :] + names[: cycle % len(names)]:
            client, patches = variants[name]
            with contextlib.ExitStack() as stack_:
                for patch in patches:
                    stack_.enter_context(patch)
                start = time.perf_counter_ns()
                for template in templates:
                    client(template)
                times[name].append((time.perf_counter_ns() - start) / len(templates) / 1000)
    base = statistics.median(times["bare Django"])
    return [(n, statistics.median(times[n]), statistics.median(times[n]) - base) for n in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cycles", type=int, default=15, help="ablation: blocks per variant")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ["BENCH_CONFIG"] = "ours"
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django
    from django.core.handlers.wsgi import WSGIHandler

    from benchmarks.traffic import Client, request_sequence

    django.setup()
    client = Client(WSGIHandler())
    templates = [t for t, _ in request_sequence()]
    for i in range(2_000):
        client(templates[i % len(templates)])

    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(args.requests):
        client(templates[i % len(templates)])
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(r"django_observability|prometheus_client", args.top)
    print(f"cProfile, {args.requests:,} requests (times include profiler overhead):")
    print(stream.getvalue().split("Ordered by")[1])

    print("Per-step cost, best of 5, in-process (ns per call):")
    for name, ns in step_timings():
        print(f"  {ns:8.0f}  {name}")

    print()
    print(f"In-situ ablation, median of {args.cycles} interleaved blocks of 1,000 requests:")
    for name, us, added in ablation(args.cycles):
        print(f"  {us:7.1f} µs  {added:+6.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
