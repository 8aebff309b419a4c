"""conf.py: each setting declared once, read lazily, validated the same way everywhere."""

from __future__ import annotations

import ast
import logging
import os
import re

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_observability.conf import (
    DEFAULT_HEALTH_CHECKS,
    DEFAULT_LATENCY_BUCKETS,
    PREFIX,
    SETTINGS,
    Setting,
    Settings,
    conf,
    valid_or_default,
    validate,
)

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")


class _Rejected:
    """A value no validator accepts: not a bool, number, string, list, dict or path."""

    def __repr__(self) -> str:
        return "<rejected>"


def _check_messages(name):
    return [
        m
        for m in run_checks()
        if m.id.startswith("django_observability.E") and PREFIX + name in m.msg
    ]


# --- the declarations ------------------------------------------------------------


def test_every_setting_is_declared_with_a_default_a_validator_and_a_check_id():
    assert len(SETTINGS) == 53
    for name, setting in SETTINGS.items():
        assert isinstance(setting, Setting)
        assert setting.name == name
        assert setting.setting == PREFIX + name
        assert callable(setting.validator)
        assert re.fullmatch(r"E(0[1-9][0-9]|1[0-9][0-9])", setting.check_id), name
        # The default is itself a valid value: falling back to it never loops.
        assert setting.validate(setting.default) is None, name


def test_check_ids_are_unique():
    ids = [setting.check_id for setting in SETTINGS.values()]
    assert len(ids) == len(set(ids))


def test_the_table_is_the_class_attributes():
    names = [n for n, v in vars(Settings).items() if isinstance(v, Setting)]
    assert list(SETTINGS) == names
    assert Settings.HEALTH_TIMEOUT is SETTINGS["HEALTH_TIMEOUT"]


def test_documented_names_defaults_and_check_ids():
    """docs/settings.md and docs/checks.md describe exactly the declared settings."""
    with open(os.path.join(DOCS, "settings.md"), encoding="utf-8") as fh:
        rows = re.findall(
            r"^\| `OBSERVABILITY_(\w+)` \| [^|]*(?:\\\|[^|]*)* \| (.*?) \|", fh.read(), re.M
        )
    documented = dict(rows)
    assert set(documented) == set(SETTINGS)
    for name, default_text in documented.items():
        code = re.match(r"`([^`]*)`", default_text)
        if code is None:  # described in words (the health checks)
            continue
        try:
            value = ast.literal_eval(code.group(1))
        except (ValueError, SyntaxError):
            continue
        declared = SETTINGS[name].default
        if isinstance(value, (list, tuple)):
            value, declared = list(value), list(declared)
        assert value == declared, name
    with open(os.path.join(DOCS, "checks.md"), encoding="utf-8") as fh:
        checks = fh.read()
    for name, setting in SETTINGS.items():
        line = re.search(rf"^\| `django_observability\.{setting.check_id}` \|.*$", checks, re.M)
        assert line is not None, setting.check_id
        assert f"`{PREFIX}{name}`" in line.group(0)


# --- reading -------------------------------------------------------------------------


def test_defaults_when_unset(settings):
    del settings.OBSERVABILITY_AUTH_TOKEN  # tests/settings.py sets one
    assert conf.METRICS_NAMESPACE == ""
    assert conf.METRICS_LATENCY_BUCKETS == DEFAULT_LATENCY_BUCKETS
    assert conf.METRICS_LABEL_CAP == 50
    assert conf.REQUEST_ID_HEADER == "X-Request-ID"
    assert conf.AUTH_TOKEN is None
    assert conf.ALLOWED_IPS == ()
    assert conf.HEALTH_CHECKS == DEFAULT_HEALTH_CHECKS
    assert conf.HEALTH_SHOW_DETAILS == "authorized"
    assert conf.TRACING_EXPORTER is None
    assert conf.AUDIT_LOG_USERNAMES is False


def test_read_lazily_so_override_settings_works():
    assert conf.HEALTH_TIMEOUT == 0.5
    with override_settings(OBSERVABILITY_HEALTH_TIMEOUT=2.0):
        assert conf.HEALTH_TIMEOUT == 2.0
        assert valid_or_default("HEALTH_TIMEOUT") == 2.0
    assert conf.HEALTH_TIMEOUT == 0.5


@override_settings(
    OBSERVABILITY_AUTH_TOKEN="",
    OBSERVABILITY_ALLOWED_IPS=None,
    OBSERVABILITY_METRICS_NAMESPACE=None,
    OBSERVABILITY_METRICS_ENABLED=0,
)
def test_empty_values_read_as_unset():
    assert conf.AUTH_TOKEN is None
    assert conf.ALLOWED_IPS == ()
    assert conf.METRICS_NAMESPACE == ""
    assert conf.METRICS_ENABLED is False


def test_environment_defaults(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "service.version=1.2,deployment.environment.name=prod%20eu"
    )
    assert conf.SERVICE_NAME == "from-env"
    assert conf.SERVICE_VERSION == "1.2"
    assert conf.ENVIRONMENT == "prod eu"
    assert conf.HEALTH_DRAIN_FILE.endswith("django-observability-from-env.draining")
    with override_settings(OBSERVABILITY_SERVICE_NAME="shop"):
        assert conf.SERVICE_NAME == "shop"


# --- validation: the system checks and the run-time fallback agree ------------------------


@pytest.mark.parametrize("name", list(SETTINGS))
def test_checks_and_valid_or_default_agree(name, caplog):
    """A value the system check reports is the value valid_or_default replaces by the default."""
    setting = SETTINGS[name]
    expected = setting.default if setting.read is None else setting.read(setting.default)
    with override_settings(**{PREFIX + name: _Rejected()}):
        messages = _check_messages(name)
        with caplog.at_level(logging.ERROR, logger="django_observability"):
            value = valid_or_default(name)
    assert [m.id for m in messages] == [f"django_observability.{setting.check_id}"]
    assert value == expected
    assert f"{PREFIX}{name} " in caplog.text
    assert "see the system checks" in caplog.text


@pytest.mark.parametrize("name", list(SETTINGS))
def test_a_valid_value_passes_both(name, caplog):
    default = SETTINGS[name].default
    with override_settings(**{PREFIX + name: default}):
        assert _check_messages(name) == []
        with caplog.at_level(logging.ERROR, logger="django_observability"):
            valid_or_default(name)
    assert caplog.text == ""


def test_validate():
    assert validate("METRICS_LABEL_CAP", 10) is None
    assert "positive integer" in validate("METRICS_LABEL_CAP", 0)


@override_settings(OBSERVABILITY_HEALTH_TIMEOUT=-1)
def test_the_old_second_argument_is_ignored(caplog):
    """Callers that still pass a default get the declared one."""
    with caplog.at_level(logging.ERROR, logger="django_observability"):
        assert valid_or_default("HEALTH_TIMEOUT", 99) == 0.5
    assert "using 0.5 instead" in caplog.text


@override_settings(OBSERVABILITY_HEALTH_CHECKS={"db": "x.Check"})
def test_readiness_names_are_checked_against_the_configured_checks():
    assert validate("HEALTH_READINESS_CHECKS", ["db"]) is None
    assert "not in OBSERVABILITY_HEALTH_CHECKS" in validate("HEALTH_READINESS_CHECKS", ["database"])
    assert valid_or_default("HEALTH_READINESS_CHECKS") == ("database", "cache", "migrations")
