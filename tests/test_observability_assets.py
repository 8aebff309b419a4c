"""``manage.py observability_assets``: the assets for the project's own settings."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from django_observability import deploy_assets


def assets(tmp_path, *args: str) -> str:
    out = io.StringIO()
    call_command("observability_assets", "--output", str(tmp_path), *args, stdout=out)
    return out.getvalue()


def test_defaults_come_from_the_settings(tmp_path, settings):
    settings.OBSERVABILITY_METRICS_NAMESPACE = "shop"
    settings.OBSERVABILITY_SERVICE_NAME = "shop-web"
    output = assets(tmp_path)
    assert "namespace shop, job shop-web" in output
    expected = deploy_assets.render(deploy_assets.AssetOptions(namespace="shop", job="shop-web"))
    written = {
        str(path.relative_to(tmp_path)): path.read_text(encoding="utf-8")
        for path in tmp_path.rglob("*")
        if path.is_file()
    }
    assert written == expected
    alerts = written["prometheus/rules/alerts.yml"]
    assert 'max by (job) (up{job="shop-web"}) == 0' in alerts
    assert "shop_health_ready" in alerts
    assert (
        "shop_http_server_request_duration_seconds_bucket"
        in (written["grafana/dashboards/django-overview.json"])
    )


def test_options_win_over_the_settings(tmp_path, settings):
    settings.OBSERVABILITY_METRICS_NAMESPACE = "shop"
    output = assets(
        tmp_path,
        "--namespace",
        "",
        "--job",
        "web",
        "--availability-objective",
        "0.995",
        "--latency-objective",
        "0.95",
        "--latency-threshold",
        "1",
        "--runbook-url",
        "https://wiki.example.com/runbooks",
    )
    recording = (tmp_path / "prometheus/rules/recording.yml").read_text()
    objectives = {
        rule["labels"]["slo"]: rule
        for group in yaml.safe_load(recording)["groups"]
        for rule in group["rules"]
        if rule.get("record") == "django:slo_objective:ratio"
    }
    assert objectives["availability"]["expr"] == "vector(0.995)"
    assert objectives["latency"]["expr"] == "vector(0.95)"
    assert objectives["latency"]["labels"]["le"] == "1.0"  # as prometheus_client renders it
    assert "shop_" not in recording
    assert 'up{job="web"}' in (tmp_path / "prometheus/rules/alerts.yml").read_text()
    assert (
        "https://wiki.example.com/runbooks#djangotargetdown"
        in (tmp_path / "prometheus/rules/alerts.yml").read_text()
    )
    assert not (tmp_path / "prometheus/tests/slo_test.yml").exists()
    assert "left out" in output


def test_latency_threshold_must_be_a_bucket_bound(tmp_path, settings):
    settings.OBSERVABILITY_METRICS_LATENCY_BUCKETS = [0.1, 0.3, 1.0]
    with pytest.raises(CommandError, match="not a bound of OBSERVABILITY_METRICS_LATENCY_BUCKETS"):
        assets(tmp_path)
    assets(tmp_path, "--latency-threshold", "0.3")
    assert 'le: "0.3"' in (tmp_path / "prometheus/rules/recording.yml").read_text()


def test_invalid_options_are_command_errors(tmp_path):
    with pytest.raises(CommandError, match="not between 0 and 1"):
        assets(tmp_path, "--availability-objective", "99.9")
    with pytest.raises(CommandError, match="not a Prometheus name"):
        assets(tmp_path, "--namespace", "my-shop")
    with pytest.raises(CommandError, match="not a plain job name"):
        assets(tmp_path, "--job", "my shop")
    assert not any(tmp_path.iterdir())


def test_edited_files_are_kept_unless_forced(tmp_path):
    assets(tmp_path)
    alerts = tmp_path / "prometheus/rules/alerts.yml"
    alerts.write_text("# edited\n")
    with pytest.raises(CommandError, match="--force"):
        assets(tmp_path)
    assert alerts.read_text() == "# edited\n"
    assets(tmp_path, "--force")
    assert alerts.read_text() != "# edited\n"
