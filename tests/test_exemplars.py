"""Exemplars in Prometheus multiprocess mode: each process's file, merged by /metrics."""

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from django_observability import exemplars
from django_observability.exemplars import SharedExemplars, attach, read

METRIC = "http_server_request_duration_seconds"
TRACE_A, SPAN_A = "a" * 32, "1" * 16
TRACE_B, SPAN_B = "b" * 32, "2" * 16
KEY = ("GET", "/api/v1/items/<int:pk>/", "200")
TOKEN = {"Authorization": "Bearer test-token-0123456789"}


def files(directory):
    return sorted(p.name for p in Path(directory).iterdir())


def wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_process_keeps_its_latest_exemplar_per_bucket_and_writes_them(tmp_path):
    store = SharedExemplars(str(tmp_path), METRIC)
    store.record(KEY, "0.01", TRACE_A, SPAN_A, 0.004)
    store.record(KEY, "0.01", TRACE_B, SPAN_B, 0.006)  # the same bucket: replaces
    store.record(KEY, "0.1", TRACE_A, SPAN_A, 0.05)
    store.write()
    merged = read(str(tmp_path), METRIC)
    assert merged[(*KEY, "0.01")][:3] == (TRACE_B, SPAN_B, 0.006)
    assert merged[(*KEY, "0.1")][:3] == (TRACE_A, SPAN_A, 0.05)
    assert files(tmp_path) == [f"exemplars_{os.getpid()}.json"]  # no temporary file left
    assert not store.dirty


def test_the_request_path_does_no_io_and_a_thread_writes_soon_after(tmp_path, monkeypatch):
    """An exemplar is written within the interval even if the process then serves nothing."""
    monkeypatch.setattr(exemplars, "WRITE_INTERVAL", 0.05)
    store = SharedExemplars(str(tmp_path), METRIC)
    store.record(KEY, "0.01", TRACE_A, SPAN_A, 0.004)
    assert files(tmp_path) == []  # recorded in memory only
    assert wait_for(lambda: (*KEY, "0.01") in read(str(tmp_path), METRIC))
    store.record(KEY, "0.1", TRACE_B, SPAN_B, 0.05)  # later ones too, by the same thread
    assert wait_for(lambda: (*KEY, "0.1") in read(str(tmp_path), METRIC))


def test_exemplars_older_than_the_max_age_are_not_written(tmp_path, monkeypatch):
    store = SharedExemplars(str(tmp_path), METRIC)
    store.record(KEY, "0.01", TRACE_A, SPAN_A, 0.004)
    later = time.time() + exemplars.MAX_AGE + 1
    monkeypatch.setattr(exemplars.time, "time", lambda: later)
    store.record(KEY, "0.1", TRACE_B, SPAN_B, 0.05)
    store.write()
    with open(tmp_path / f"exemplars_{os.getpid()}.json", encoding="utf-8") as fh:
        rows = json.load(fh)["exemplars"]
    assert [row[3] for row in rows] == ["0.1"]


def test_a_failed_write_leaves_no_temporary_file_and_is_retried(tmp_path, caplog):
    directory = tmp_path / "gone"
    store = SharedExemplars(str(directory), METRIC)
    store.record(KEY, "0.01", TRACE_A, SPAN_A, 0.004)
    store.write()
    store.write()
    assert store.dirty  # kept for the next attempt
    assert len([r for r in caplog.records if "could not write exemplars" in r.message]) == 1
    directory.mkdir()
    store.write()
    assert files(directory) == [f"exemplars_{os.getpid()}.json"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_writes_only_its_own_exemplars(tmp_path):
    store = SharedExemplars(str(tmp_path), METRIC)
    store.record(KEY, "0.01", TRACE_A, SPAN_A, 0.004)  # the parent's, not written yet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
        pid = os.fork()
    if pid == 0:  # the child: record, write, leave without running pytest's exit
        try:
            store.record(KEY, "0.1", TRACE_B, SPAN_B, 0.05)
            store.write()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    with open(tmp_path / f"exemplars_{pid}.json", encoding="utf-8") as fh:
        rows = json.load(fh)["exemplars"]
    assert [row[3:6] for row in rows] == [["0.1", TRACE_B, SPAN_B]]
    assert not (tmp_path / f"exemplars_{os.getpid()}.json").exists()


def write_file(directory, pid, rows, metric=METRIC):
    path = Path(directory) / f"exemplars_{pid}.json"
    path.write_text(json.dumps({"metric": metric, "exemplars": rows}), encoding="utf-8")
    return path


def test_the_newest_exemplar_of_each_bucket_wins_across_processes(tmp_path):
    now = time.time()
    write_file(tmp_path, 1, [[*KEY, "0.01", TRACE_A, SPAN_A, 0.004, now - 5]])
    write_file(tmp_path, 2, [[*KEY, "0.01", TRACE_B, SPAN_B, 0.007, now - 1]])
    assert read(str(tmp_path), METRIC)[(*KEY, "0.01")] == (TRACE_B, SPAN_B, 0.007, now - 1)


def test_bad_files_and_rows_are_skipped(tmp_path):
    now = time.time()
    good = [*KEY, "0.01", TRACE_A, SPAN_A, 0.004, now]
    write_file(
        tmp_path,
        1,
        [
            good,
            [*KEY, "0.1", "not-a-trace-id", SPAN_A, 0.05, now],  # never rendered
            [*KEY, "0.25", TRACE_A, 'x"} 1\nevil 1', 0.2, now],
            [*KEY, "0.5", TRACE_A, SPAN_A, float("nan"), now],
            [*KEY, "0.5", TRACE_A, SPAN_A, 10**400, now],  # float() overflows
            [*KEY, "0.5", TRACE_A, SPAN_A, True, now],
            [*KEY, "0.5", TRACE_A, SPAN_A, 0.3, now + 10**6],  # would always win
            [*KEY, "1.0", TRACE_A, SPAN_A],
            "junk",
        ],
    )
    write_file(tmp_path, 2, [[*KEY, "0.1", TRACE_B, SPAN_B, 0.05, now]], metric="other_metric")
    (tmp_path / "exemplars_3.json").write_text("{truncated", encoding="utf-8")
    (tmp_path / "exemplars_4.json").write_text("[" * 100_000, encoding="utf-8")  # too deep
    (tmp_path / "exemplars_5.json").write_text(" " * (exemplars.MAX_FILE_BYTES + 1))
    os.mkfifo(tmp_path / "exemplars_6.json")  # would block a plain open()
    os.symlink(tmp_path / "exemplars_1.json", tmp_path / "exemplars_7.json")
    (tmp_path / "exemplars_x.json").write_text("{}", encoding="utf-8")
    (tmp_path / "counter_3.db").write_bytes(b"\0" * 16)  # prometheus_client's own
    assert read(str(tmp_path), METRIC) == {(*KEY, "0.01"): (TRACE_A, SPAN_A, 0.004, now)}


def test_old_files_are_skipped_and_removed_once_their_process_is_gone(tmp_path):
    now = time.time()
    dead = 2**22 + 12345  # above the usual pid_max: no such process
    gone = write_file(tmp_path, dead, [[*KEY, "0.01", TRACE_A, SPAN_A, 0.004, now - 1000]])
    idle = write_file(tmp_path, os.getpid(), [[*KEY, "0.1", TRACE_B, SPAN_B, 0.05, now - 1000]])
    stale = tmp_path / f"exemplars_{dead}.json.tmp"  # a write cut short by SIGKILL
    stale.write_text("{", encoding="utf-8")
    old = now - exemplars.MAX_AGE - 10
    for path in (gone, idle, stale):
        os.utime(path, (old, old))
    assert read(str(tmp_path), METRIC) == {}
    assert not gone.exists()
    assert not stale.exists()
    assert idle.exists()  # its process lives: it writes again when it has something new
    assert read(str(tmp_path / "missing"), METRIC) == {}


def test_exemplars_go_on_the_matching_buckets_in_openmetrics():
    family = HistogramMetricFamily(METRIC, "Duration.", labels=["method", "route", "status"])
    family.add_metric(list(KEY), buckets=[("0.01", 1), ("0.1", 3), ("+Inf", 3)], sum_value=0.1)
    entries = {(*KEY, "0.1"): (TRACE_A, SPAN_A, 0.05, 1700000000.5)}
    (out,) = attach([family], METRIC, entries)
    text = generate_latest(type("R", (), {"collect": lambda self: [out]})()).decode()
    line = next(ln for ln in text.splitlines() if 'le="0.1"' in ln)
    assert line.endswith(f' # {{span_id="{SPAN_A}",trace_id="{TRACE_A}"}} 0.05 1700000000.5')
    assert " # " not in next(ln for ln in text.splitlines() if 'le="0.01"' in ln)


WORKER = """
import json, sys
import django
from django.test.utils import setup_test_environment
django.setup()
setup_test_environment()
from django.test import Client
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from django_observability import tracing

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracing.use_tracer_provider(provider)
client = Client()
for _ in range(int(sys.argv[2])):
    assert client.get(sys.argv[1]).status_code == 200
print(json.dumps([format(s.context.span_id, "016x") for s in exporter.get_finished_spans()]))
"""


def test_metrics_carries_every_workers_exemplars(tmp_path, monkeypatch):
    """Two processes in multiprocess mode serve requests; /metrics shows their exemplars."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    spans = {}
    for path in ("/api/v1/items/1/", "/posts/hello/"):
        done = subprocess.run(
            [sys.executable, "-c", WORKER, path, "5"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        spans[path] = set(json.loads(done.stdout.strip().splitlines()[-1]))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    response = Client().get(
        "/metrics", headers={**TOKEN, "Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status_code == 200
    (family,) = [
        f for f in text_string_to_metric_families(response.content.decode()) if f.name == METRIC
    ]
    found = {}
    for sample in family.samples:
        if sample.exemplar is not None:
            found.setdefault(sample.labels["route"], set()).add(sample.exemplar.labels["span_id"])
            assert set(sample.exemplar.labels) == {"trace_id", "span_id"}
            assert sample.value >= 1  # on a bucket that counted the request
    assert found.keys() == {"/api/v1/items/<int:pk>/", "/posts/<slug:slug>/"}
    assert found["/api/v1/items/<int:pk>/"] <= spans["/api/v1/items/1/"]
    assert found["/posts/<slug:slug>/"] <= spans["/posts/hello/"]
    # Both processes' counts are aggregated as before.
    counts = {s.labels["route"]: s.value for s in family.samples if s.name == METRIC + "_count"}
    assert counts["/api/v1/items/<int:pk>/"] == 5
    assert counts["/posts/<slug:slug>/"] == 5


def test_a_text_format_scrape_does_not_read_exemplars(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(exemplars, "read", lambda *args: calls.append(args) or {})
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert Client().get("/metrics", headers=TOKEN).status_code == 200
    assert calls == []
    openmetrics = {**TOKEN, "Accept": "application/openmetrics-text; version=1.0.0"}
    assert Client().get("/metrics", headers=openmetrics).status_code == 200
    assert len(calls) == 1
