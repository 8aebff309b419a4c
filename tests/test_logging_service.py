"""django_observability.logging.service: the service field, cached and reset."""

import pytest
from django.test import override_settings

from django_observability.logging import (
    JsonFormatter,
    service,
)
from tests.logging_support import log_json


@pytest.fixture
def no_otel_env(monkeypatch):
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_otel_env")
def test_service_follows_override_settings():
    formatter = JsonFormatter()
    with override_settings(OBSERVABILITY_SERVICE_NAME="one", OBSERVABILITY_ENVIRONMENT="prod"):
        assert log_json(formatter=formatter)["service"] == {"name": "one", "environment": "prod"}
    with override_settings(OBSERVABILITY_SERVICE_NAME="two"):
        # No environment configured: the field is left out, not empty.
        assert log_json(formatter=formatter)["service"] == {"name": "two"}


def test_broken_settings_do_not_cost_the_line(monkeypatch):
    def broken():
        raise RuntimeError("bad settings")

    monkeypatch.setattr(service, "read", broken)
    service.reset()
    assert log_json()["service"] == {"name": "django"}
    monkeypatch.undo()
    assert log_json()["service"]["name"] != "django"  # read again once the settings are fixed


def test_cached_until_reset():
    first = service.current()
    assert service.current() is first  # callers may key what they derive on it
    service.reset()
    assert service.current() is not first
    assert service.current() == first


def test_an_observability_setting_resets_it():
    first = service.current()
    with override_settings(OBSERVABILITY_ENVIRONMENT="qa"):
        assert service.current()["environment"] == "qa"
    assert service.current() is not first
    with override_settings(DEBUG=True):  # not ours: the cache is kept
        kept = service.current()
        assert service.current() is kept
