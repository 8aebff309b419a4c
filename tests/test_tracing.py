from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from django_observability import tracing
from django_observability.tracing import environment, exit_flush, outcomes
from django_observability.tracing import provider as tracing_provider
from django_observability.tracing.processor import processors_of
from tests.clients import AsyncHTTP, SyncHTTP

TOKEN = {"Authorization": "Bearer test-token-0123456789"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


def server_spans(exporter):
    return [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]


@pytest.mark.django_db
def test_health_checks_make_no_spans(http, spans):
    """A probe's database check would otherwise start a one-query trace each time."""
    from django_observability.health.runner import runner

    runner.clear()  # run the checks, not answer from the previous test's cache
    assert http.get("/health/ready/").status_code == 200
    assert http.get("/health/", headers=TOKEN).status_code == 200
    assert spans.get_finished_spans() == ()


def test_exemplars_in_openmetrics(http, spans):
    http.get("/api/v1/items/3/")
    (span,) = server_spans(spans)
    accept = {"Accept": "application/openmetrics-text; version=1.0.0", **TOKEN}
    text = http.get("/metrics", headers=accept).body.decode()
    trace_id = format(span.context.trace_id, "032x")
    lines = [line for line in text.splitlines() if f'trace_id="{trace_id}"' in line]
    assert len(lines) == 1
    assert lines[0].startswith("http_server_request_duration_seconds_bucket{")
    assert f'span_id="{format(span.context.span_id, "016x")}"' in lines[0]


def exemplar_trace_ids(http):
    accept = {"Accept": "application/openmetrics-text; version=1.0.0", **TOKEN}
    text = http.get("/metrics", headers=accept).body.decode()
    return [
        line.split('trace_id="', 1)[1][:32]
        for line in text.splitlines()
        if line.startswith("http_server_request_duration_seconds_bucket{") and "trace_id" in line
    ]


@override_settings(OBSERVABILITY_METRICS_LATENCY_BUCKETS=[60.0])  # one bucket: every request
def test_a_bucket_takes_one_exemplar_per_interval(http, spans, monkeypatch):
    from django_observability import metrics

    clock = [1000.0]
    monkeypatch.setattr(metrics, "_monotonic", lambda: clock[0])
    for _ in range(3):
        http.get("/api/v1/items/3/")
    first, *_ = [format(s.context.trace_id, "032x") for s in server_spans(spans)]
    assert exemplar_trace_ids(http) == [first]  # not the two after it, in the same bucket

    clock[0] += metrics.EXEMPLAR_INTERVAL
    http.get("/api/v1/items/3/")
    newest = format(server_spans(spans)[-1].context.trace_id, "032x")
    assert exemplar_trace_ids(http) == [newest]


def test_unsampled_requests_carry_no_exemplar(http):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        http.get("/")
        accept = {"Accept": "application/openmetrics-text; version=1.0.0", **TOKEN}
        assert "trace_id" not in http.get("/metrics", headers=accept).body.decode()
        assert exporter.get_finished_spans() == ()
    finally:
        tracing.use_tracer_provider(None)


def test_no_provider_no_spans_and_nothing_breaks(http):
    assert tracing.get_tracer() is None
    assert http.get("/api/v1/items/1/").status_code == 200
    with tracing.trace_operation("nothing") as span:
        assert span is None


def test_helpers(spans):
    with tracing.trace_operation("charge", **{"payment.provider": "acme"}) as span:
        assert span.is_recording()

    @tracing.traced()
    def work(x):
        return x * 2

    @tracing.traced("async work")
    async def async_work():
        raise ValueError("nope")

    assert work(2) == 4
    from asgiref.sync import async_to_sync

    with pytest.raises(ValueError, match="nope"):
        async_to_sync(async_work)()
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["charge", "tests.test_tracing.test_helpers.<locals>.work", "async work"]
    failed = spans.get_finished_spans()[-1]
    assert failed.status.status_code == StatusCode.ERROR
    assert spans.get_finished_spans()[0].attributes["payment.provider"] == "acme"


# --- settings and the environment ---------------------------------------------------


def test_exporter_setting_and_environment(monkeypatch, settings):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert tracing.exporter_names() == ()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert tracing.exporter_names() == ("otlp",)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.exporter_names() == ()
    settings.OBSERVABILITY_TRACING_EXPORTER = "console"
    assert tracing.exporter_names() == ("console",)
    settings.OBSERVABILITY_TRACING_EXPORTER = "NONE"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert tracing.exporter_names() == ()  # the setting wins


def test_exporters_listed_in_the_environment(monkeypatch, caplog):
    environment.reset()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", " OTLP , console,otlp,, zipkin ")
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        assert tracing.exporter_names() == ("otlp", "console")
    assert "'zipkin'" in caplog.text
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    provider = tracing.build_provider()
    try:
        processors = provider._active_span_processor._span_processors
        assert len(processors) == 2  # one per exporter
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    ("exporters", "disabled", "installs"),
    [("console", "", True), ("zipkin", "", False), ("console", "TRUE", False)],
)
def test_what_setup_installs(monkeypatch, caplog, exporters, disabled, installs):
    from opentelemetry.trace import ProxyTracerProvider

    assert isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporters)
    monkeypatch.setenv("OTEL_SDK_DISABLED", disabled)
    tracing_provider.reset()
    environment.reset()
    monkeypatch.setattr(atexit, "register", lambda *args: None)
    installed = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    try:
        with caplog.at_level("INFO", logger="django_observability.tracing"):
            tracing.setup()
    finally:
        tracing_provider.reset()
    assert len(installed) == (1 if installs else 0)
    if exporters == "zipkin":
        assert "'zipkin'" in caplog.text


def test_a_provider_under_sdk_disabled_makes_no_spans(monkeypatch):
    """A project's own SDK provider with OTEL_SDK_DISABLED=true hands out no-op
    tracers: the middleware then does no span work at all."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    tracing.use_tracer_provider(TracerProvider())
    try:
        assert tracing.get_tracer() is None
    finally:
        tracing.use_tracer_provider(None)


def test_protocol_is_case_insensitive(monkeypatch, settings, caplog):
    environment.reset()
    settings.OBSERVABILITY_TRACING_OTLP_PROTOCOL = "GRPC"
    assert tracing.otlp_protocol() == "grpc"
    settings.OBSERVABILITY_TRACING_OTLP_PROTOCOL = None
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/Protobuf")
    assert tracing.otlp_protocol() == "http/protobuf"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        assert tracing.otlp_protocol() == "http/protobuf"
    assert "http/json" in caplog.text


def test_endpoint_rules(monkeypatch, settings):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.otlp_endpoint("http/protobuf") is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318/")
    assert tracing.otlp_endpoint("http/protobuf") == "http://env:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://env:4318/custom")
    assert tracing.otlp_endpoint("http/protobuf") == "http://env:4318/custom"
    settings.OBSERVABILITY_TRACING_OTLP_ENDPOINT = "http://setting:4318"
    assert tracing.otlp_endpoint("http/protobuf") == "http://setting:4318/v1/traces"
    assert tracing.otlp_endpoint("grpc") == "http://setting:4318"


def test_sample_ratio(monkeypatch, settings):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert tracing.sample_ratio() == 0.25
    settings.OBSERVABILITY_TRACING_SAMPLE_RATIO = 0.1
    assert tracing.sample_ratio() == 0.1
    provider = tracing.build_provider("none")
    assert isinstance(provider.sampler, ParentBased)
    assert "0.1" in provider.sampler.get_description()
    assert isinstance(TraceIdRatioBased(0.1), TraceIdRatioBased)


@pytest.mark.parametrize(
    ("sampler", "arg", "ratio"),
    [
        ("always_off", None, 0.0),
        ("parentbased_always_off", None, 0.0),
        ("ALWAYS_ON", None, 1.0),
        ("TraceIdRatio", "0.5", 0.5),
        ("traceidratio", "0", 0.0),
        ("traceidratio", None, 1.0),
        ("traceidratio", "nan", 1.0),
        ("traceidratio", "-1", 1.0),
        ("traceidratio", "2", 1.0),
        ("traceidratio", "half", 1.0),
        ("jaeger_remote", None, 1.0),
        (None, None, 1.0),
    ],
)
def test_sample_ratio_from_the_environment(monkeypatch, sampler, arg, ratio):
    for name, value in (("OTEL_TRACES_SAMPLER", sampler), ("OTEL_TRACES_SAMPLER_ARG", arg)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert tracing.sample_ratio() == ratio
    tracing.build_provider(())  # a ratio the sampler accepts, whatever the environment says


_TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


def test_export_timeout_rules(monkeypatch, settings, caplog):
    for name in _TIMEOUT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert tracing.export_timeout() == tracing.DEFAULT_EXPORT_TIMEOUT == 5.0
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "7")
    assert tracing.export_timeout() == 7.0
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", " 2.5 ")
    assert tracing.export_timeout() == 2.5  # the traces variable first
    settings.OBSERVABILITY_TRACING_EXPORT_TIMEOUT = 1
    assert tracing.export_timeout() == 1.0  # the setting wins


@pytest.mark.parametrize("raw", ["soon", "0", "-3", "inf", "nan"])
def test_export_timeout_from_a_bad_variable(monkeypatch, caplog, raw):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", raw)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        assert tracing.export_timeout() == tracing.DEFAULT_EXPORT_TIMEOUT
    assert "OTEL_EXPORTER_OTLP_TIMEOUT" in caplog.text


def test_the_exporter_and_batching_follow_the_environment(monkeypatch, settings):
    """What build_provider() hands the SDK: the resolved timeout, and no batch
    options of its own (so the OTEL_BSP_* variables apply, as the SDK reads them)."""
    from opentelemetry.exporter.otlp.proto.http import trace_exporter
    from opentelemetry.sdk.trace import export

    made = []

    class RecordingExporter(trace_exporter.OTLPSpanExporter):
        def __init__(self, **kwargs):
            made.append(("exporter", kwargs))
            super().__init__(**kwargs)

    class RecordingProcessor(export.BatchSpanProcessor):
        def __init__(self, exporter, **kwargs):
            made.append(("processor", kwargs))
            super().__init__(exporter, **kwargs)

    monkeypatch.setattr(trace_exporter, "OTLPSpanExporter", RecordingExporter)
    monkeypatch.setattr(export, "BatchSpanProcessor", RecordingProcessor)
    for name in _TIMEOUT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    settings.OBSERVABILITY_TRACING_OTLP_ENDPOINT = "http://127.0.0.1:9"
    for setting, expected in ((None, 3.0), (0.5, 0.5)):
        settings.OBSERVABILITY_TRACING_EXPORT_TIMEOUT = setting
        made.clear()
        provider = tracing.build_provider("otlp")
        try:
            (ours,) = provider._active_span_processor._span_processors
            ours._current()  # makes this process's exporter and processor
        finally:
            provider.shutdown()
        assert made == [
            ("exporter", {"endpoint": "http://127.0.0.1:9/v1/traces", "timeout": expected}),
            ("processor", {}),
        ]


def test_resource(settings):
    settings.OBSERVABILITY_SERVICE_NAME = "shop"
    settings.OBSERVABILITY_SERVICE_VERSION = "2.0"
    settings.OBSERVABILITY_ENVIRONMENT = "staging"
    attributes = tracing.build_provider("none").resource.attributes
    assert attributes["service.name"] == "shop"
    assert attributes["service.version"] == "2.0"
    assert attributes["deployment.environment.name"] == "staging"
    assert attributes["service.instance.id"]  # the SDK's, one per process


def test_console_exporter_writes_one_json_line_per_span():
    import io
    import json

    exporter = tracing_provider.make_exporter("console")()
    exporter.out = io.StringIO()  # stdout as it was when the SDK was imported, else
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        pass
    lines = exporter.out.getvalue().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["inner", "outer"]


def test_service_from_the_environment(monkeypatch, settings):
    from django_observability.conf import conf

    settings.OBSERVABILITY_SERVICE_NAME = None
    settings.OBSERVABILITY_SERVICE_VERSION = None
    settings.OBSERVABILITY_ENVIRONMENT = None
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=billing%20api, service.version=1.2%2B3,deployment.environment.name=prod%2Ceu",
    )
    assert conf.SERVICE_NAME == "billing api"
    assert conf.SERVICE_VERSION == "1.2+3"
    assert conf.ENVIRONMENT == "prod,eu"
    attributes = tracing.build_provider(()).resource.attributes
    assert attributes["service.name"] == "billing api"
    assert attributes["service.version"] == "1.2+3"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-svc")
    assert conf.SERVICE_NAME == "billing-svc"  # OTEL_SERVICE_NAME first, as the SDK has it
    settings.OBSERVABILITY_SERVICE_NAME = "shop"
    assert conf.SERVICE_NAME == "shop"  # the setting wins
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    settings.OBSERVABILITY_SERVICE_NAME = None
    assert conf.SERVICE_NAME == "tests"  # the settings module's package


SETUP_SCRIPT = textwrap.dedent(
    """
    import django, os
    from django.conf import settings
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_observability",
        ],
        ROOT_URLCONF="tests.urls",
        ALLOWED_HOSTS=["testserver"],
        MIDDLEWARE=["django_observability.middleware.ObservabilityMiddleware"],
        OBSERVABILITY_SERVICE_NAME="setup-test",
        OBSERVABILITY_TRACING_EXPORTER="console",
    )
    django.setup()
    from django_observability import tracing
    from opentelemetry import trace
    first = trace.get_tracer_provider()
    assert tracing.setup() is first  # idempotent
    from django.test import Client
    assert Client().get("/api/v1/items/1/").status_code == 200
    """
)


def test_setup_from_settings_exports_on_exit():
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("OTEL_TRACES_EXPORTER", None)
    result = subprocess.run(
        [sys.executable, "-c", SETUP_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # The console exporter printed the span when the process flushed at exit.
    assert '"name": "GET /api/v1/items/<int:pk>/"' in result.stdout
    assert '"service.name": "setup-test"' in result.stdout


def test_existing_provider_is_kept():
    script = SETUP_SCRIPT.replace(
        "django.setup()",
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "mine = TracerProvider()\n"
        "trace.set_tracer_provider(mine)\n"
        "django.setup()\n"
        "assert trace.get_tracer_provider() is mine",
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "GET' not in result.stdout  # our console exporter was not installed


# --- flush_on_exit: a bounded flush as the process exits ------------------------------


class ScriptedExporter:
    """An exporter doing, call after call, what its script says, then ``then``.

    Steps: ``"ok"`` (keeps the spans), ``"fail"`` (returns FAILURE, as the
    OTLP exporters do once their timeout passed), ``"raise"``, ``"block"``
    (waits until the test ends, like a collector that never answers), or a
    number of seconds to wait before failing.
    """

    def __init__(self, *script, then="ok"):
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.script = list(script)
        self.then = then
        self.calls = 0
        self.exported = []
        self.shut_down = False
        self.release = threading.Event()
        self._result = SpanExportResult

    def export(self, spans):
        self.calls += 1
        step = self.script.pop(0) if self.script else self.then
        if step == "block":
            self.release.wait(60)
            return self._result.FAILURE
        if step == "fail":
            return self._result.FAILURE
        if step == "raise":
            raise ConnectionError("collector gone")
        if isinstance(step, float):
            time.sleep(step)
            return self._result.FAILURE
        self.exported.extend(spans)
        return self._result.SUCCESS

    def shutdown(self):
        self.shut_down = True

    def force_flush(self, timeout_millis=30000):
        return True


@pytest.fixture
def exiting(monkeypatch):
    """Installs a provider of ours exporting to a ScriptedExporter; yields a factory.

    ``exiting(exporter)`` returns a tracer of that provider. The process has
    not flushed yet, and no export of any earlier test counts as its last.
    """
    made = []

    def install(exporter, name="otlp"):
        monkeypatch.setattr(tracing_provider, "make_exporter", lambda _name: lambda: exporter)
        provider = tracing.build_provider(name)
        exit_flush.watch(provider)
        made.append((exporter, provider))
        return provider.get_tracer("tests")

    exit_flush.reset()
    outcomes.reset()
    yield install
    # Let the exports left waiting end, and their outcomes land, before the
    # next test starts from a clean record.
    for exporter, provider in made:
        exporter.release.set()
        for processor in processors_of(provider):
            recorder = processor.recorder
            deadline = time.monotonic() + 5
            while recorder is not None and recorder.in_flight and time.monotonic() < deadline:
                time.sleep(0.01)
    exit_flush.reset()
    outcomes.reset()


def end_spans(tracer, count):
    for _ in range(count):
        tracer.start_span("work").end()


def timed_flush(timeout=None):
    start = time.monotonic()
    result = tracing.flush_on_exit(timeout)
    return result, time.monotonic() - start


def test_flush_on_exit_exports_every_span(exiting, caplog):
    exporter = ScriptedExporter()
    end_spans(exiting(exporter), 1200)  # more than a batch (512)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(5.0)
    assert result is True
    assert len(exporter.exported) == 1200
    assert exporter.shut_down
    assert elapsed < 2.0
    assert "dropped" not in caplog.text


def test_flush_on_exit_is_bounded_when_the_collector_never_answers(exiting, caplog):
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 10)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(0.3)
    assert result is False
    assert 0.3 <= elapsed < 0.8
    assert exporter.calls == 1  # it tried
    assert "the collector did not answer within 0.3 s; 10 spans dropped at exit" in caplog.text


def test_no_wait_at_all_when_the_last_export_failed(exiting, caplog):
    exporter = ScriptedExporter("fail", then="block")
    tracer = exiting(exporter)
    end_spans(tracer, 3)
    assert exit_flush.watched().force_flush()  # the export that fails
    end_spans(tracer, 7)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(5.0)
    assert result is False
    assert elapsed < 0.2
    assert exporter.calls == 1  # no second try
    assert "the last export failed; 7 spans dropped at exit" in caplog.text


def test_a_flush_that_ran_out_of_time_counts_as_a_failed_export(exiting):
    """The next worker to exit (the replacement of this one, forked from the same
    master) does not wait for a collector that just let a flush time out."""
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 3)
    (processor,) = processors_of(exit_flush.watched())
    assert not processor.last_export_failed
    assert tracing.flush_on_exit(0.2) is False
    assert processor.last_export_failed


def test_an_old_failure_is_forgotten(exiting, monkeypatch):
    """Workers that exit before their first scheduled export would otherwise
    never find out that the collector is back."""
    exporter = ScriptedExporter("fail", then="ok")
    tracer = exiting(exporter)
    end_spans(tracer, 2)
    exit_flush.watched().force_flush()
    (processor,) = processors_of(exit_flush.watched())
    assert processor.last_export_failed
    monkeypatch.setattr(outcomes, "FAILURE_MEMORY", 0.05)
    time.sleep(0.1)
    assert not processor.last_export_failed
    end_spans(tracer, 5)
    assert tracing.flush_on_exit(5.0) is True
    assert len(exporter.exported) == 5


def test_an_exception_counts_as_a_failed_export(exiting):
    exporter = ScriptedExporter("raise", then="block")
    tracer = exiting(exporter)
    end_spans(tracer, 2)
    exit_flush.watched().force_flush()
    end_spans(tracer, 2)
    result, elapsed = timed_flush(5.0)
    assert result is False
    assert elapsed < 0.2


def test_a_success_since_the_failure_means_waiting_again(exiting):
    exporter = ScriptedExporter("fail", "ok", then="ok")
    tracer = exiting(exporter)
    end_spans(tracer, 2)
    exit_flush.watched().force_flush()
    end_spans(tracer, 3)
    exit_flush.watched().force_flush()
    end_spans(tracer, 4)
    assert tracing.flush_on_exit(5.0) is True
    assert len(exporter.exported) == 7


def test_an_export_failing_during_the_wait_ends_it(exiting, caplog):
    # Two batches: the first fails after 0.2 s; the second would take another.
    exporter = ScriptedExporter(then=0.2)
    end_spans(exiting(exporter), 600)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(5.0)
    assert result is False
    assert 0.2 <= elapsed < 0.35  # not 0.4: the second batch is not waited for
    assert "an export failed at exit; 600 spans dropped at exit" in caplog.text


def test_flush_on_exit_runs_once(exiting):
    exporter = ScriptedExporter(then="block")
    tracer = exiting(exporter)
    end_spans(tracer, 5)
    assert tracing.flush_on_exit(0.2) is False
    end_spans(tracer, 5)
    calls = exporter.calls
    result, elapsed = timed_flush(5.0)
    assert result is False  # the first call's answer
    assert elapsed < 0.05
    assert exporter.calls == calls


def test_flush_on_exit_takes_the_setting(exiting, settings):
    settings.OBSERVABILITY_TRACING_EXIT_TIMEOUT = 0.2
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 1)
    result, elapsed = timed_flush()
    assert result is False
    assert 0.2 <= elapsed < 0.6


def test_a_zero_timeout_does_not_wait(exiting, caplog):
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 4)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(0)
    assert result is False
    assert elapsed < 0.1
    assert "no time to wait (timeout 0); 4 spans dropped" in caplog.text


def test_nothing_to_flush(exiting):
    assert tracing.flush_on_exit() is True  # no provider of ours
    exporter = ScriptedExporter(then="block")
    exiting(exporter)  # a provider, but no span ended in this process
    provider = exit_flush.watched()
    exit_flush.reset()  # the flush above counted: this process flushes again
    exit_flush.watch(provider)
    result, elapsed = timed_flush(5.0)
    assert result is True
    assert elapsed < 0.2
    assert exporter.calls == 0


def test_flush_on_exit_never_raises(exiting, monkeypatch, caplog):
    exporter = ScriptedExporter()
    end_spans(exiting(exporter), 1)

    def broken(timeout):
        raise RuntimeError("boom")

    monkeypatch.setattr(exit_flush, "_flush_within", broken)
    with caplog.at_level("ERROR", logger="django_observability.tracing"):
        assert tracing.flush_on_exit() is False
    assert "flush at exit failed" in caplog.text


def test_bounded_without_a_thread_to_spare(exiting, monkeypatch):
    """Python 3.12.0/3.12.1 start no thread in atexit: the shutdown then runs in the
    caller, with the SDK's own timeout on joining its export thread."""
    monkeypatch.setattr(exit_flush._Flush, "start", lambda self: False)
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 6)
    result, elapsed = timed_flush(0.3)
    assert result is False
    assert 0.3 <= elapsed < 0.8


def test_everything_exported_without_a_thread_to_spare(exiting, monkeypatch):
    monkeypatch.setattr(exit_flush._Flush, "start", lambda self: False)
    exporter = ScriptedExporter()
    end_spans(exiting(exporter), 600)
    assert tracing.flush_on_exit(2.0) is True
    assert len(exporter.exported) == 600


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_export_outcomes_are_shared_with_forked_workers():
    """A worker forked from the master sees how its siblings' last exports ended."""
    outcomes.reset()
    try:
        pid = os.fork()
        if pid == 0:  # the child: a worker whose export failed
            outcomes.record(outcomes.slot_for("otlp"), outcomes.OUTCOME_FAILED)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        processor = tracing.PerProcessSpanProcessor(lambda: None, name="otlp")
        assert processor.last_export_failed
        assert not tracing.PerProcessSpanProcessor(lambda: None, name="console").last_export_failed
    finally:
        outcomes.reset()


@pytest.mark.parametrize("value", [0, -1, "1", None, float("inf"), float("nan"), True])
def test_exit_timeout_setting_is_checked(settings, caplog, value):
    from django.core.checks import run_checks

    settings.OBSERVABILITY_TRACING_EXIT_TIMEOUT = value
    (message,) = [m for m in run_checks() if m.id == "django_observability.E048"]
    assert "OBSERVABILITY_TRACING_EXIT_TIMEOUT" in message.msg
    with caplog.at_level("ERROR", logger="django_observability"):
        assert tracing.exit_timeout() == 1.0  # the default, with an error line
    assert "OBSERVABILITY_TRACING_EXIT_TIMEOUT" in caplog.text


def test_exit_timeout_setting(settings):
    from django.core.checks import run_checks

    assert tracing.exit_timeout() == 1.0
    settings.OBSERVABILITY_TRACING_EXIT_TIMEOUT = 2.5
    assert tracing.exit_timeout() == 2.5
    assert not [m for m in run_checks() if m.id == "django_observability.E048"]


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import django
    from django.conf import settings
    settings.configure(
        INSTALLED_APPS=["django_observability"],
        OBSERVABILITY_SERVICE_NAME="exit-test",
        OBSERVABILITY_TRACING_EXPORTER="otlp",
        OBSERVABILITY_TRACING_OTLP_ENDPOINT=sys.argv[1],
        OBSERVABILITY_TRACING_EXPORT_TIMEOUT=5.0,
        OBSERVABILITY_TRACING_EXIT_TIMEOUT=0.5,
    )
    django.setup()
    from opentelemetry import trace
    tracer = trace.get_tracer("exit-test")
    for _ in range(600):  # a batch goes out at once and hangs; the rest is queued
        tracer.start_span("work").end()
    time.sleep(0.2)
    print(time.time(), flush=True)  # then the interpreter exits: atexit flushes
    """
)


def test_the_atexit_flush_is_bounded_with_a_silent_collector(tmp_path):
    """A real OTLP/HTTP exporter, a loopback port that accepts and never answers:
    the process ends within the exit timeout, not after the export timeouts
    (5 s for the batch in flight, 5 s more for the one queued behind it)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshakes; nobody reads
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        for name in ("DJANGO_SETTINGS_MODULE", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
            env.pop(name, None)
        result = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, endpoint],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        ended = time.time()
    assert result.returncode == 0, result.stderr
    exiting_at = float(result.stdout.split()[-1])
    assert ended - exiting_at < 0.5 + 1.0, result.stderr  # the bound, and slack to exit
    assert "the collector did not answer within 0.5 s; 600 spans dropped at exit" in (result.stderr)
