"""``django_observability.deploy_assets``: the packaged assets, written for a project.

* ``deploy/`` is exactly what it writes for the example stack (job ``django``,
  no namespace): the rules, tests, dashboards and Alertmanager example are kept
  once, in the package.
* With a namespace, every metric name in rules, tests and dashboards is
  prefixed, and only metric names; with a job, ``up{job=...}`` and the tests
  follow; with other objectives, the objective rules and the SLI bucket change.
* With the real promtool (peers): the written rules pass ``promtool check rules``
  and the written tests pass ``promtool test rules``, for the default, a custom
  namespace and job, and custom objectives; amtool accepts the Alertmanager file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from django_observability import deploy_assets
from django_observability.deploy_assets import AssetOptions

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
PROMTOOL_TIMEOUT = 300

# The directories of deploy/ that hold the command's output (and nothing else).
GENERATED_DIRS = ("prometheus/rules", "prometheus/tests", "grafana/dashboards")

# PromQL metric names in an expression: words not followed by "(" (functions) nor
# preceded by "{"/"," (label names), skipping strings.
_WORD = re.compile(r"(?<![\w:.\"$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()")
_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
}


def example_options() -> AssetOptions:
    return AssetOptions(job="django")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (strings, label matchers and keywords left out)."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return {w for w in _WORD.findall(expr) if w not in _PROMQL_WORDS}


def rules(text: str) -> list[dict]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def input_series_names(text: str) -> set[str]:
    names = set()
    for test in yaml.safe_load(text)["tests"]:
        for series in test.get("input_series", []):
            names.add(series["series"].split("{", 1)[0])
    return names


# --- deploy/ is the command's output ---------------------------------------------------


def test_deploy_is_what_the_command_writes_for_the_example_stack():
    files = deploy_assets.render(example_options())
    stale = [
        path for path, text in files.items() if (DEPLOY / path).read_text(encoding="utf-8") != text
    ]
    assert not stale, (
        "deploy/ differs from the packaged assets; run "
        "`cd example_project && ../.venv/bin/python manage.py observability_assets "
        f"--output ../deploy --job django --force` (stale: {stale})"
    )
    on_disk = {
        str(path.relative_to(DEPLOY))
        for sub in GENERATED_DIRS
        for path in (DEPLOY / sub).iterdir()
        if path.is_file()
    }
    expected = {path for path in files if path.startswith(GENERATED_DIRS)}
    assert on_disk == expected, "files in deploy/ that the command does not write"


def test_render_writes_every_kind_of_asset():
    files = deploy_assets.render(AssetOptions())
    assert {"prometheus/rules/recording.yml", "prometheus/rules/alerts.yml"} <= files.keys()
    assert "alertmanager/alertmanager.yml" in files
    assert sum(p.startswith("prometheus/tests/") for p in files) == 6
    assert sum(p.startswith("grafana/dashboards/") for p in files) == 6


# --- namespace, job, objectives ------------------------------------------------------


def test_namespace_prefixes_every_metric_name_and_nothing_else():
    plain = deploy_assets.render(AssetOptions(job="django"))
    shop = deploy_assets.render(AssetOptions(namespace="shop", job="django"))
    assert plain.keys() == shop.keys()
    for path in ("prometheus/rules/recording.yml", "prometheus/rules/alerts.yml"):
        recorded = {r["record"] for r in rules(shop["prometheus/rules/recording.yml"])}
        for rule in rules(shop[path]):
            for name in metric_names(rule["expr"]) - recorded - {"up", "vector", "time"}:
                assert name.startswith("shop_"), (path, rule.get("record") or rule["alert"], name)
    for path, text in shop.items():
        if path.startswith("prometheus/tests/"):
            names = input_series_names(text)
            assert names, path
            assert all(n.startswith("shop_") or n == "up" for n in names), (path, names)
        assert (
            text.replace("shop_", "").replace(
                '(OBSERVABILITY_METRICS_NAMESPACE = "shop")',
                "(default, empty OBSERVABILITY_METRICS_NAMESPACE)",
            )
            == plain[path]
        ), path
    assert "shop_django_observability_build_info" in shop["grafana/dashboards/django-overview.json"]
    assert "shop_django_observability_metrics_store_writable" in shop["prometheus/rules/alerts.yml"]


def test_job_names_the_scrape_job_in_rules_and_tests():
    files = deploy_assets.render(AssetOptions(job="shop-web"))
    alerts = files["prometheus/rules/alerts.yml"]
    assert 'up{job="shop-web"} == 0' in alerts
    assert 'max by (job) (up{job="shop-web"}) == 0' in alerts
    for path, text in files.items():
        if path.startswith("prometheus/"):
            assert 'job="django"' not in text, path
            assert "job: 'django'" not in text, path
    assert "job: 'shop-web'" in files["prometheus/tests/alerts_test.yml"]
    # A job spelled like a metric keeps its name under a namespace.
    odd = deploy_assets.render(AssetOptions(namespace="shop", job="health_ready"))
    assert 'up{job="health_ready"} == 0' in odd["prometheus/rules/alerts.yml"]
    # Group names and the objective rules' names keep "django".
    assert "name: django-slo" in files["prometheus/rules/recording.yml"]
    assert "record: django:slo_objective:ratio" in files["prometheus/rules/recording.yml"]


def test_objectives_and_latency_threshold():
    files = deploy_assets.render(
        AssetOptions(availability_objective=0.995, latency_objective=0.95, latency_threshold="1.0")
    )
    recording = rules(files["prometheus/rules/recording.yml"])
    objectives = {
        r["labels"]["slo"]: r for r in recording if r["record"] == "django:slo_objective:ratio"
    }
    assert objectives["availability"]["expr"] == "vector(0.995)"
    assert objectives["latency"]["expr"] == "vector(0.95)"
    assert objectives["latency"]["labels"]["le"] == "1.0"
    slis = [r for r in recording if r["record"].startswith("job:slo_latency_errors:ratio_rate")]
    assert len(slis) == 7
    assert all('le="1.0"' in r["expr"] and 'le="0.5"' not in r["expr"] for r in slis)
    # The SLO scenarios count bad requests against the default budgets: left out.
    assert not set(deploy_assets.SLO_TEST_FILES) & files.keys()
    recording_test = files[deploy_assets.RECORDING_TEST]
    assert "slo_objective" not in recording_test
    assert "job_route:http_server_requests:rate5m" in recording_test
    yaml.safe_load(recording_test)
    assert (
        '"current": {\n          "selected": true,\n          "text": "1.0"'
        in (files["grafana/dashboards/django-overview.json"])
    )


def test_runbook_url():
    files = deploy_assets.render(AssetOptions(runbook_url="https://wiki.example.com/django.md"))
    alerts = rules(files["prometheus/rules/alerts.yml"])
    assert all(
        a["annotations"]["runbook_url"].startswith("https://wiki.example.com/django.md#")
        for a in alerts
        if "alert" in a
    )
    assert deploy_assets.DEFAULT_RUNBOOK_URL not in files["prometheus/tests/alerts_test.yml"]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (AssetOptions(namespace="9shop"), "namespace"),
        (AssetOptions(job='a"b'), "job"),
        (AssetOptions(job="it's"), "job"),
        (AssetOptions(availability_objective=1.0), "availability objective"),
        (AssetOptions(latency_objective=0), "latency objective"),
        (AssetOptions(runbook_url="ftp://x"), "runbook URL"),
        (AssetOptions(runbook_url="https://x/'a"), "runbook URL"),
    ],
)
def test_invalid_options_are_refused(options, problem):
    assert any(problem in p for p in deploy_assets.validate(options))
    with pytest.raises(ValueError, match=problem):
        deploy_assets.render(options)


def test_write_refuses_to_change_a_file_unless_told(tmp_path):
    files = {"prometheus/rules/alerts.yml": "new\n", "alertmanager/alertmanager.yml": "am\n"}
    (tmp_path / "prometheus" / "rules").mkdir(parents=True)
    (tmp_path / "prometheus" / "rules" / "alerts.yml").write_text("edited by hand\n")
    with pytest.raises(FileExistsError, match=r"alerts\.yml"):
        deploy_assets.write(tmp_path, files)
    assert not (tmp_path / "alertmanager").exists()
    written = deploy_assets.write(tmp_path, files, overwrite=True)
    assert written == [tmp_path / path for path in files]
    assert (tmp_path / "prometheus" / "rules" / "alerts.yml").read_text() == "new\n"
    # The same content again is no change.
    deploy_assets.write(tmp_path, files)


# --- with the real promtool and amtool --------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (`make peers`)")
    return path


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT, check=False
    )


CASES = {
    "default": AssetOptions(),
    "namespace-and-job": AssetOptions(namespace="shop", job="shop-web"),
    "objectives": AssetOptions(
        namespace="shop", availability_objective=0.995, latency_objective=0.95
    ),
}


@pytest.mark.peers
def test_written_rules_pass_promtool(tmp_path):
    promtool = tool("promtool")
    amtool = tool("amtool")
    runs = []
    for case, options in CASES.items():
        out = tmp_path / case
        deploy_assets.write(out, deploy_assets.render(options))
        prom = out / "prometheus"
        tests = sorted(str(p.relative_to(prom)) for p in (prom / "tests").glob("*.yml"))
        rule_files = sorted(str(p.relative_to(prom)) for p in (prom / "rules").glob("*.yml"))
        runs.append((case, [promtool, "check", "rules", "--lint-fatal", *rule_files], prom))
        runs.extend((case, [promtool, "test", "rules", test], prom) for test in tests)
        runs.append((case, [amtool, "check-config", "alertmanager/alertmanager.yml"], out))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda r: (r[0], run(r[1], r[2])), runs))
    failed = [
        f"{case}: {' '.join(result.args)} exited {result.returncode}\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        for case, result in results
        if result.returncode != 0
    ]
    assert not failed, "\n\n".join(failed)
    # Every case ran its tests: 6 files, or 4 with other objectives (no SLO tests).
    counts = {
        case: sum(" test rules " in " ".join(r.args) for c, r in results if c == case)
        for case in CASES
    }
    assert counts == {"default": 6, "namespace-and-job": 6, "objectives": 4}
