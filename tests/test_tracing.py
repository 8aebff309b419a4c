from __future__ import annotations

import atexit
import os
import subprocess
import sys
import textwrap

import pytest
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import StatusCode

from django_observability import tracing
from django_observability.tracing import environment
from django_observability.tracing import provider as tracing_provider
from tests.clients import AsyncHTTP, SyncHTTP
from tests.spans import server_spans

TOKEN = {"Authorization": "Bearer test-token-0123456789"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(params=["sync", "async"])
def http(request):
    return SyncHTTP() if request.param == "sync" else AsyncHTTP()


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
