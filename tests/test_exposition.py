"""Our memoizing encoders write exactly what prometheus_client's write."""

from functools import partial

import pytest
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.exposition import generate_latest as text_generate
from prometheus_client.openmetrics.exposition import generate_latest as om_generate

from django_observability.exposition import fast_encoder

NASTY = ["plain", 'quote"inside', "back\\slash", "new\nline", "ünïcødé ✓", "", "{braces}", "a=b,c"]


class Timestamped:
    def collect(self):
        family = GaugeMetricFamily("stamped", "Samples with timestamps.", labels=["k"])
        family.add_metric(["a"], 1.5, timestamp=1700000000.25)
        yield family


def populated():
    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs done.", ["kind"], registry=registry)
    gauge = Gauge("temp", "Temperature\nwith a \\ in help.", ["room"], registry=registry)
    histogram = Histogram(
        "latency_seconds", "Latency.", ["route"], unit="seconds", registry=registry
    )
    sizes = Histogram("body_bytes", "Sizes.", ["m"], buckets=[1, 10], registry=registry)
    # A unit and no exemplar: the fast path, with _created gauges after it.
    timed = Histogram("timed_seconds", "Timed.", ["m"], unit="seconds", registry=registry)
    Counter("ops_bytes", "Bytes moved.", ["m"], unit="bytes", registry=registry).labels("x").inc()
    summary = Summary("sizes", "Sizes.", registry=registry)
    Info("build", "Build info.", registry=registry).info({"version": "1.2", "odd": 'x"y'})
    Enum("state", "State.", states=["a", "b"], registry=registry).state("b")
    Gauge("plain_gauge", "No labels.", registry=registry).set(float("inf"))
    for i, value in enumerate(NASTY):
        counter.labels(value).inc(i + 0.5)
        gauge.labels(value).set(-i * 1e-9)
        histogram.labels(value).observe(i / 10)
        sizes.labels(value).observe(i)
        timed.labels(value).observe(i / 100)
    summary.observe(3)
    histogram.labels("exemplar").observe(0.2, {"trace_id": "abc"})
    registry.register(Timestamped())
    return registry, counter, histogram


ENCODERS = [
    text_generate,
    partial(text_generate, escaping="underscores"),
    om_generate,
    partial(om_generate, escaping="underscores", version="1.0.0"),
]


@pytest.mark.parametrize("library", ENCODERS)
def test_same_bytes_as_prometheus_client(library):
    registry, counter, histogram = populated()
    ours = fast_encoder(library)
    assert ours is not library
    assert ours(registry) == library(registry)
    # Again with new values and new series, through the memoized prefixes.
    counter.labels("plain").inc(41)
    counter.labels("brand new").inc()
    histogram.labels("plain").observe(123.0)
    assert ours(registry) == library(registry)


def test_other_escapings_use_the_library():
    encoder = partial(text_generate, escaping="allow-utf-8")
    assert fast_encoder(encoder) is encoder


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "text/plain",
        "application/openmetrics-text",
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
        "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ],
)
def test_what_scrapers_ask_for_gets_the_fast_path(accept):
    encoder, _ = choose_encoder(accept)
    registry, _, _ = populated()
    ours = fast_encoder(encoder)
    assert ours is not encoder
    assert ours(registry) == encoder(registry)
