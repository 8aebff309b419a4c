import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from django_observability import tracing
from django_observability.metrics import reset_metrics


@pytest.fixture(scope="session", autouse=True)
def json_field_support_known(django_db_setup, django_db_blocker):
    """Ask the test database once, up front, whether it supports JSONField.

    Django's model checks ask it for every JSONField (django-tasks-db's task
    table has one), and the answer is kept on the connection's features. A
    test that runs the system checks before any test has used the database
    would otherwise be refused the query by pytest-django. Asked once the test
    database exists: an in-memory SQLite connection opened before would stay
    on another, empty database.
    """
    from django.db import connections

    with django_db_blocker.unblock():
        for connection in connections.all():
            _ = connection.features.supports_json_field


@pytest.fixture(autouse=True)
def fresh_metrics():
    """Every test starts from new instruments (zero counts) and a fresh middleware config.

    The config holds what the middleware learned (paths of exempt views).
    """
    from django_observability.middleware import reset_config

    reset_metrics()
    reset_config()
    yield
    reset_metrics()
    reset_config()


class Samples:
    """Read the default registry the way a scrape would."""

    def value(self, name, **labels):
        return REGISTRY.get_sample_value(name, labels)

    def count(self, route, method="GET", status="200", prefix=""):
        return self.value(
            f"{prefix}http_server_request_duration_seconds_count",
            method=method,
            route=route,
            status=status,
        )

    def series(self, name):
        """Label dicts of every sample called ``name``."""
        return [s.labels for metric in REGISTRY.collect() for s in metric.samples if s.name == name]

    def total(self, name):
        return sum(
            s.value for metric in REGISTRY.collect() for s in metric.samples if s.name == name
        )


@pytest.fixture
def samples():
    return Samples()


@pytest.fixture
def spans():
    """The app's spans, made with a provider of their own and kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)
