"""metrics.py: the instruments (declared once) and the label rules."""

import multiprocessing
from types import SimpleNamespace

import pytest
from django.test import override_settings
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from django_observability.conf import SETTINGS
from django_observability.metrics import (
    CAPPED_LABELS,
    HEALTH_READY,
    INSTRUMENTS,
    SETTINGS_USED,
    CappedLabel,
    Metrics,
    exception_name,
    get_metrics,
    method_label,
    route_label,
)

# --- the instruments ---------------------------------------------------------------

# The public contract (docs/metrics.md, deploy/): name, type, labels, multiprocess mode.
CONTRACT = {
    "http_server_request_duration_seconds": (Histogram, ("method", "route", "status"), None),
    "http_server_active_requests": (Gauge, ("method",), "livesum"),
    "http_server_response_body_size_bytes": (Histogram, ("method", "route"), None),
    "http_server_exceptions": (Counter, ("route", "exception"), None),
    "django_observability_build_info": (
        Gauge,
        ("version", "django_version", "python_version", "service_version"),
        "livemostrecent",
    ),
    "health_check_status": (Gauge, ("check",), "livemostrecent"),
    "health_check_duration_seconds": (Gauge, ("check",), "livemostrecent"),
    "django_process_resident_memory_bytes": (Gauge, (), "liveall"),
    "django_process_cpu_seconds": (Gauge, (), "liveall"),
    "django_process_open_fds": (Gauge, (), "liveall"),
    "django_process_threads": (Gauge, (), "liveall"),
    "db_client_operation_duration_seconds": (Histogram, ("alias", "operation"), None),
    "cache_operations": (Counter, ("alias", "operation", "result"), None),
    "cache_operation_duration_seconds": (Histogram, ("alias", "operation"), None),
    "db_client_errors": (Counter, ("alias", "error"), None),
    "auth_events": (Counter, ("event",), None),
    "audit_events": (Counter, ("action", "target"), None),
    "security_events": (Counter, ("type",), None),
    "tasks_enqueued": (Counter, ("task",), None),
    "tasks_finished": (Counter, ("task", "outcome"), None),
    "task_duration_seconds": (Histogram, ("task", "outcome"), None),
    "task_queue_wait_seconds": (Histogram, ("task",), None),
    "tasks_active": (Gauge, ("task",), "livesum"),
    "job_last_success_timestamp_seconds": (Gauge, ("job",), "max"),
    "job_expected_interval_seconds": (Gauge, ("job",), "max"),
    "http_client_request_duration_seconds": (
        Histogram,
        ("method", "server_address", "status"),
        None,
    ),
    "redis_command_duration_seconds": (
        Histogram,
        ("operation", "server_address", "result"),
        None,
    ),
    "db_client_connections_created": (Counter, ("alias",), None),
    "db_client_connection_errors": (Counter, ("alias",), None),
    "db_client_connection_timeouts": (Counter, ("alias",), None),
    "db_client_connection_count": (Gauge, ("alias", "state"), "livesum"),
    "db_client_connection_max": (Gauge, ("alias",), "livesum"),
    "db_client_connection_pending_requests": (Gauge, ("alias",), "livesum"),
    "db_client_connection_requests": (Counter, ("alias",), None),
    "db_client_connection_queued_requests": (Counter, ("alias",), None),
    "db_client_connection_wait_time_seconds": (Counter, ("alias",), None),
    "health_ready": (Gauge, (), "livemin"),
}


def test_declared_instruments_are_the_contract():
    declared = {
        i.name: (i.kind, i.labels, i.multiprocess_mode) for i in (*INSTRUMENTS, HEALTH_READY)
    }
    assert declared == CONTRACT
    attrs = [i.attr for i in (*INSTRUMENTS, HEALTH_READY)] + list(CAPPED_LABELS)
    assert len(attrs) == len(set(attrs))


def test_every_declared_instrument_is_made_and_unregistered():
    registry = CollectorRegistry()
    metrics = Metrics(namespace="shop", registry=registry)
    assert {family.name for family in registry.collect()} == {
        f"shop_{instrument.name}" for instrument in INSTRUMENTS
    }
    assert metrics.health_ready is None  # made on the first readiness evaluation
    metrics.set_ready(True)
    assert registry.get_sample_value("shop_health_ready") == 1.0
    metrics.unregister()
    assert list(registry.collect()) == []
    # Once unregistered, the same names can be made again in that registry.
    Metrics(namespace="shop", registry=registry).unregister()


def test_bucket_layouts():
    registry = CollectorRegistry()
    metrics = Metrics(latency_buckets=(0.5, 2.0), size_buckets=(10.0,), registry=registry)
    metrics.observe("GET", "/", "200", 0.1, 5)
    metrics.observe_query("default", "SELECT", 0.0007)
    labels = {"method": "GET", "route": "/", "status": "200"}
    le = {**labels, "le": "0.5"}
    assert registry.get_sample_value("http_server_request_duration_seconds_bucket", le) == 1
    size = {"method": "GET", "route": "/", "le": "10.0"}
    assert registry.get_sample_value("http_server_response_body_size_bytes_bucket", size) == 1
    db = {"alias": "default", "operation": "SELECT", "le": "0.001"}
    assert registry.get_sample_value("db_client_operation_duration_seconds_bucket", db) == 1
    metrics.unregister()


def test_capped_labels_share_the_setting():
    metrics = Metrics(label_cap=2, registry=None)
    for attr in CAPPED_LABELS:
        label = getattr(metrics, attr)
        assert [label(v) for v in "abc"] == ["a", "b", "_other"]


def test_a_metrics_setting_change_makes_new_instruments():
    assert set(SETTINGS) >= SETTINGS_USED
    assert get_metrics().namespace == ""
    with override_settings(OBSERVABILITY_METRICS_NAMESPACE="shop"):
        assert get_metrics().namespace == "shop"
    assert get_metrics().namespace == ""
    with override_settings(OBSERVABILITY_METRICS_ENABLED=False):
        assert get_metrics() is None


# --- the label rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "label"),
    [
        ("", "/"),
        ("items/<int:pk>/", "/items/<int:pk>/"),
        ("^archive/(?P<year>[0-9]{4})/$", "/archive/(?P<year>[0-9]{4})/"),
        ("api/archive/(?P<year>[0-9]{4})/$", "/api/archive/(?P<year>[0-9]{4})/"),
        ("^legacy/(?P<code>[a-z]+)\\Z", "/legacy/(?P<code>[a-z]+)"),
        ("^price/\\$$", "/price/\\$"),
        ("en/about/", "/en/about/"),
    ],
)
def test_route_from_pattern(route, label):
    assert route_label(SimpleNamespace(route=route)) == label


def test_unresolved_route():
    assert route_label(None) == "<unmatched>"
    assert route_label(SimpleNamespace(route=None)) == "<unmatched>"


def test_methods():
    assert method_label("GET") == "GET"
    assert method_label("CONNECT") == "CONNECT"
    assert method_label("PROPFIND") == "_OTHER"
    assert method_label("get") == "_OTHER"
    assert method_label("") == "_OTHER"
    assert method_label(None) == "_OTHER"


def test_exception_name():
    class Local(Exception):
        pass

    assert exception_name(ValueError("x")) == "ValueError"
    assert exception_name(Local()) == "tests.test_metrics.test_exception_name.<locals>.Local"
    assert exception_name(KeyError) == "KeyError"


def test_cap_in_one_process():
    cap = CappedLabel("m", 3)
    assert [cap(v) for v in "abcde"] == ["a", "b", "c", "_other", "_other"]
    assert cap("a") == "a"


def _admit(path, values, queue):
    cap = CappedLabel("exception", 5, path)
    queue.put([cap(v) for v in values])


def test_cap_shared_by_processes(tmp_path):
    """Workers writing to one multiprocess directory agree on one set of values."""
    ctx = multiprocessing.get_context("spawn")  # not fork: this test process has threads
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_admit, args=(str(tmp_path), [f"w{w}-{i}" for i in range(4)], queue))
        for w in range(3)
    ]
    for p in workers:
        p.start()
    results = [queue.get(timeout=20) for _ in workers]
    for p in workers:
        p.join(timeout=20)
    admitted = {v for result in results for v in result if v != "_other"}
    assert len(admitted) == 5
    # A process started later (a restarted worker) sees the same full set.
    late = CappedLabel("exception", 5, str(tmp_path))
    assert late("new-value") == "_other"
    assert all(late(v) == v for v in admitted)
    # Nothing but the admitted values is in the shared file.
    assert set((tmp_path / "labels_exception.txt").read_text().split()) == admitted


# --- tasks ------------------------------------------------------------------------


def test_task_recording():
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry, label_cap=2)
    metrics.count_enqueued("shop.mail")
    metrics.task_started("shop.mail", queue_wait=0.3)
    assert registry.get_sample_value("tasks_active", {"task": "shop.mail"}) == 1
    metrics.task_finished("shop.mail", "success", 1.5)
    metrics.task_started("shop.mail", queue_wait=None)  # a message without our header
    metrics.task_finished("shop.mail", "retry", 0.1)
    metrics.task_finished("shop.mail", "revoked", None, started=False)

    def value(name, **labels):
        return registry.get_sample_value(name, labels)

    assert value("tasks_enqueued_total", task="shop.mail") == 1
    assert value("tasks_active", task="shop.mail") == 0
    assert value("task_queue_wait_seconds_count", task="shop.mail") == 1
    assert value("task_queue_wait_seconds_bucket", task="shop.mail", le="0.5") == 1
    assert value("tasks_finished_total", task="shop.mail", outcome="success") == 1
    assert value("tasks_finished_total", task="shop.mail", outcome="retry") == 1
    assert value("tasks_finished_total", task="shop.mail", outcome="revoked") == 1
    assert value("task_duration_seconds_sum", task="shop.mail", outcome="success") == 1.5
    assert value("task_duration_seconds_count", task="shop.mail", outcome="revoked") is None
    # Tasks run up to an hour.
    assert value("task_duration_seconds_bucket", task="shop.mail", outcome="success", le="3600.0")
    # The outcome is a fixed set; the task label capped.
    with pytest.raises(ValueError, match="not a task outcome"):
        metrics.task_finished("shop.mail", "STARTED", 0.1)
    for name in ("a", "b", "c"):
        metrics.count_enqueued(name)
    assert value("tasks_enqueued_total", task="a") == 1
    assert value("tasks_enqueued_total", task="_other") == 2
    metrics.unregister()
