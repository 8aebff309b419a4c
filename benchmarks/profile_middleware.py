"""Where ObservabilityMiddleware spends its time per request.

    .venv/bin/python benchmarks/profile_middleware.py [--requests 20000]
    .venv/bin/python benchmarks/profile_middleware.py --config ours_full

Three views of the ``ours`` configuration (or ``ours_full``: with a server
span sampled at 100% and the JSON access log to a file), in this process:

1. cProfile over the URL mix, restricted to django_observability and
   prometheus_client (the instrumentation's own functions);
2. micro-timings of each step the middleware takes per request, on a real
   request and response from the mix, in nanoseconds;
3. in-situ ablation: handlers with and without the middleware, and with one
   part of it stubbed out at a time, timed in interleaved blocks in the same
   process (so machine drift hits every variant alike). The differences say
   what each part adds in real traffic, where caches are colder than in (2).
   For ``ours_full`` the parts are the span (100% or 10% sampled), the access
   log, and the access log written to /dev/null instead of a file.
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
        "request id: from_meta, no incoming id (new id, pooled OS randomness)": lambda: (
            rid.from_meta(request.META, config.meta_key, True)
        ),
        "  for comparison: uuid.uuid4().hex (one getrandom() each)": lambda: uuid.uuid4().hex,
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
        "_Tracked(...) incl. active gauge inc()": lambda: mw._Tracked(request, metrics, "GET"),
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


def full_step_timings(provider: object) -> list[tuple[str, float]]:
    """Per-step cost of the span and the access log, on a real request (ns per call)."""
    import logging
    import time

    from django.core.handlers.wsgi import WSGIRequest
    from django.urls import resolve

    from benchmarks.traffic import environ
    from django_observability import middleware as mw
    from django_observability.tracing import get_tracer

    env = environ("GET", "/api/v1/items/42/")
    env["wsgi.input"] = io.BytesIO(env.pop("_body"))
    request = WSGIRequest(env)
    request.resolver_match = resolve(request.path_info)
    request.request_id = "0123456789abcdef0123456789abcdef"
    tracer = get_tracer()
    config = mw._get_config()
    tracked = mw._Tracked(request, None, "GET")
    tracked.route, tracked.status, tracked.body_bytes = "/api/v1/items/<int:pk>/", "200", 120
    handler = logging.getLogger("django_observability.access").handlers[0]
    formatter = handler.formatter
    record = logging.LogRecord(
        "django_observability.access",
        logging.INFO,
        __file__,
        1,
        "%s %s %s",
        ("GET", "/", "200"),
        None,
    )
    span = tracer.start_span("GET")
    tracked.span = span
    extra = {
        "http.request.method": "GET",
        "url.path": "/api/v1/items/42/",
        "http.route": "/api/v1/items/<int:pk>/",
        "http.response.status_code": 200,
        "http.response.body.bytes": 120,
        "event.duration": 123456,
        "client.ip": "10.0.0.7",
        "db.queries.count": 0,
        "db.queries.duration": 0,
        "request_id": request.request_id,
        "trace_id": "0123456789abcdef0123456789abcdef",
        "span_id": "0123456789abcdef",
    }
    record.__dict__.update(extra)

    def span_cycle() -> None:
        tokens: list = [None, None, None]  # request id, request, OpenTelemetry context
        t = mw._Tracked(request, None, "GET")
        mw._start_span(request, tracer, t, config, request.request_id, tokens)
        t.route, t.status = "/api/v1/items/<int:pk>/", "200"
        mw._finish_span(t, t.span)
        mw._load_otel().detach(tokens[2])

    def bare_span() -> None:
        tracer.start_span("GET").end()

    steps = {
        "span: _start_span + _finish_span + detach (whole span cycle)": span_cycle,
        "  of which tracer.start_span().end() with no attributes": bare_span,
        "  of which _request_attributes(...)": lambda: mw._request_attributes(
            request, "GET", request.request_id
        ),
        "  of which span.set_attributes(9 attributes)": lambda: span.set_attributes(
            mw._request_attributes(request, "GET", request.request_id)
        ),
        "access log: _access_log(...) (record, filter, format, write)": lambda: mw._access_log(
            tracked, 0.000123
        ),
        "  of which JsonFormatter.format(record)": lambda: formatter.format(record),
        "  of which handler.stream.write + flush (one line)": lambda: (
            handler.stream.write("x" * 686 + "\n"),
            handler.stream.flush(),
        ),
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
    span.end()
    return out


def full_ablation(cycles: int, provider: object) -> list[tuple[str, float, float]]:
    """ours_full with its parts switched on one at a time, in interleaved blocks."""
    import contextlib
    import logging
    import statistics
    import time

    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    from benchmarks.stacks import DiscardingExporter, make_provider
    from benchmarks.traffic import Client, request_sequence
    from django_observability.tracing import use_tracer_provider

    ours = list(settings.MIDDLEWARE)
    saved = settings.MIDDLEWARE
    settings.MIDDLEWARE = ours[1:]
    try:
        bare = Client(WSGIHandler())
    finally:
        settings.MIDDLEWARE = saved
    full = Client(WSGIHandler())
    access = logging.getLogger("django_observability.access")
    handler = access.handlers[0]
    ten_percent = make_provider(0.1, DiscardingExporter())

    @contextlib.contextmanager
    def parts(tracer_provider: object, log: bool, devnull: bool = False):
        use_tracer_provider(tracer_provider)
        access.setLevel(logging.INFO if log else logging.WARNING)
        stream = handler.stream
        if devnull:
            handler.stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        try:
            yield
        finally:
            if devnull:
                handler.stream.close()
                handler.stream = stream
            use_tracer_provider(provider)
            access.setLevel(logging.INFO)

    variants = {
        "bare Django": (bare, (None, False)),
        "+ ours: metrics + request id (no span, no log)": (full, (None, False)),
        "+ ours + span 10%": (full, (ten_percent, False)),
        "+ ours + span 100%": (full, (provider, False)),
        "+ ours + access log": (full, (None, True)),
        "+ ours + span 10% + access log (ours_full_10pct)": (full, (ten_percent, True)),
        "+ ours + span 100% + access log (ours_full)": (full, (provider, True)),
        "+ ours_full, log lines written to /dev/null": (full, (provider, True, True)),
    }
    templates = [t for t, _ in request_sequence()] * 10
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for cycle in range(cycles + 1):
        for name in names[cycle % len(names) :] + names[: cycle % len(names)]:
            client, switches = variants[name]
            with parts(*switches):
                start = time.perf_counter_ns()
                for template in templates:
                    client(template)
                elapsed = (time.perf_counter_ns() - start) / len(templates) / 1000
            if cycle:  # the first cycle warms every variant up
                times[name].append(elapsed)
    ten_percent.shutdown()
    base = statistics.median(times["bare Django"])
    return [(n, statistics.median(times[n]), statistics.median(times[n]) - base) for n in names]


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
        "+ ours, metrics off, request ids from a counter": (
            full,
            (
                mock.patch.object(mw, "get_metrics", nothing),
                mock.patch.object(rid, "new_request_id", cheap_id),
            ),
        ),
        "+ ours": (full, ()),
        "+ ours, request ids from a counter": (
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
    parser.add_argument("--config", choices=("ours", "ours_full"), default="ours")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    os.environ["BENCH_CONFIG"] = args.config
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    provider = None
    if args.config == "ours_full":
        import atexit
        import shutil
        import tempfile

        from benchmarks.stacks import LOG_FILE_ENV, install_tracing

        log_dir = tempfile.mkdtemp(prefix="bench-profile-")
        atexit.register(shutil.rmtree, log_dir, ignore_errors=True)
        os.environ[LOG_FILE_ENV] = os.path.join(log_dir, "access.log")
        provider, _ = install_tracing(args.config)
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
    if args.config == "ours":
        stats.sort_stats("tottime").print_stats(r"django_observability|prometheus_client", args.top)
        print(f"cProfile, {args.requests:,} requests (times include profiler overhead):")
        print(stream.getvalue().split("Ordered by")[1])
    else:
        # What our code costs including what it calls (the SDK, logging, the
        # file), then the functions where that time is spent.
        stats.sort_stats("cumulative").print_stats(r"django_observability", args.top)
        print(f"cProfile, {args.requests:,} requests (times include profiler overhead):")
        print(stream.getvalue().split("Ordered by")[1])
        stream.seek(0)
        stream.truncate()
        stats.sort_stats("tottime").print_stats(
            r"django_observability|prometheus_client|opentelemetry|logging/__init__|json/",
            args.top,
        )
        print(stream.getvalue().split("Ordered by")[1])

    print("Per-step cost, best of 5, in-process (ns per call):")
    steps = step_timings()
    if provider is not None:
        import logging

        # Timed in tight loops, spans outrun the batch processor's queue: expected here.
        logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)
        steps += full_step_timings(provider)
    for name, ns in steps:
        print(f"  {ns:8.0f}  {name}")

    print()
    print(f"In-situ ablation, median of {args.cycles} interleaved blocks of 1,000 requests:")
    rows = ablation(args.cycles) if provider is None else full_ablation(args.cycles, provider)
    for name, us, added in rows:
        print(f"  {us:7.1f} µs  {added:+6.1f}  {name}")
    if provider is not None:
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
