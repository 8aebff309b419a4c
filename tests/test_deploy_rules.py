"""The Prometheus and Alertmanager assets of ``deploy/``, checked with the real tools.

* ``promtool check config`` on ``deploy/prometheus/prometheus.yml``,
  ``promtool check rules --lint-fatal`` on the rule files, and every unit test file
  of ``deploy/prometheus/tests/`` through ``promtool test rules`` (run side by side).
* ``amtool check-config`` and ``amtool config routes test`` on
  ``deploy/alertmanager/alertmanager.yml``, then a real Alertmanager with that
  configuration (secrets and receiver URLs pointed at a local HTTP server) delivering
  alerts: routing by severity, the page inhibiting its warning, the templates.
* Cross-checks no tool makes: every metric (and label) a rule reads is in the metrics
  reference (``docs/metrics.md``), so a rule can never name a metric the app does not emit; every
  alert has a severity and a runbook whose anchor exists in ``docs/runbooks.md``; every
  alert rule has a unit test case where it fires and one where it stays silent; the
  latency objective sits on a bucket boundary; the dashboard panels the runbooks send
  people to exist.

A test that needs ``promtool``, ``amtool`` or ``prometheus-alertmanager`` is skipped,
saying so, only when the program is not installed (``make peers`` installs them).
"""

from __future__ import annotations

import glob
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import unicodedata
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.utils import floatToGoString

from django_observability.conf import DEFAULT_LATENCY_BUCKETS

pytestmark = pytest.mark.peers

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
RECORDING_FILE = RULES_DIR / "recording.yml"
ALERTS_FILE = RULES_DIR / "alerts.yml"
RULE_FILES = [RECORDING_FILE, ALERTS_FILE]
UNIT_TEST_FILES = sorted(Path(p) for p in glob.glob(str(PROMETHEUS_DIR / "tests" / "*.yml")))
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOKS = REPO / "docs" / "runbooks.md"
# The metrics reference (a table under "## Metrics reference").
METRICS_DOC = REPO / "docs" / "metrics.md"
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"

# How the runbooks name a panel: **Dashboard SEP Panel** (SEP: a single right angle quote).
SEP = "\u203a"
RUNBOOK_BASE = "https://github.com/your-org/django-observability/blob/main/docs/runbooks.md#"
SEVERITIES = {"page", "ticket", "warning"}
# Series Prometheus makes itself; every other metric must come from the app.
PROMETHEUS_OWN = {"up"}
# Labels Prometheus attaches to every scraped series; `exported_job` is where it keeps a
# series' own `job` label (job_last_success_timestamp_seconds from a worker's /metrics)
# when the scrape job's name takes its place (honor_labels off).
TARGET_LABELS = {"job", "instance", "exported_job"}
PROMTOOL_TIMEOUT = 300
# The method label's values (docs/metrics.md: label rules).
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "_OTHER"}


# --- helpers -------------------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = "prometheus" if name == "promtool" else "prometheus-alertmanager"
        pytest.skip(f"{name} is not installed (Debian package {package}; `make peers`)")
    return path


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT, check=False
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules_of(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules_of(ALERTS_FILE) if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules_of(RECORDING_FILE)}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped,
    spaces to hyphens."""
    text = unicodedata.normalize("NFKC", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors() -> dict[str, str]:
    """Anchor -> heading of every section of docs/runbooks.md."""
    anchors = {}
    for line in RUNBOOKS.read_text().splitlines():
        match = re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
        if match:
            anchors[github_anchor(match.group(2))] = match.group(2)
    return anchors


# The docs' metrics reference: | `name` | type | labels | what |
def reference_metrics() -> dict[str, dict[str, Any]]:
    text = METRICS_DOC.read_text()
    section = text.split("## Metrics reference", 1)[1].split("\n## ", 1)[0]
    metrics: dict[str, dict[str, Any]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.fullmatch(r"`[a-z_:][a-z0-9_:]*`", cells[0]):
            continue
        name = cells[0].strip("`")
        kind = cells[1].split()[0]
        labels = set(re.findall(r"`([a-z_]+)`", cells[2]))
        metrics[name] = {"type": kind, "labels": labels, "row": line}
    assert metrics, "no metrics table under '## Metrics reference' in docs/metrics.md"
    return metrics


def emitted_series() -> dict[str, dict[str, Any]]:
    """Every series name the app emits (histograms as _bucket/_count/_sum), with its
    labels, its row of the metrics reference, and the metric it belongs to."""
    series: dict[str, dict[str, Any]] = {}
    for name, info in reference_metrics().items():
        if info["type"] == "histogram":
            series[f"{name}_bucket"] = {**info, "labels": info["labels"] | {"le"}}
            series[f"{name}_count"] = info
            series[f"{name}_sum"] = info
        else:
            series[name] = info
    return series


KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects (without a PromQL parser:
    strings, label matchers, ranges and grouping clauses removed, then every
    identifier that is not a function call or a keyword)."""
    text = re.sub(r"\{[^}]*\}", " ", expr)
    text = _STRING.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match.group().lower() not in KEYWORDS:
            names.add(match.group())
    return names


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, [(label, operator, value)]) for every selector with matchers."""
    return [(name, _MATCHER.findall(body)) for name, body in _SELECTOR.findall(expr)]


def latency_buckets() -> set[str]:
    """The le values of http_server_request_duration_seconds, as prometheus_client renders them."""
    return {floatToGoString(b) for b in DEFAULT_LATENCY_BUCKETS} | {"+Inf"}


def unit_test_cases() -> list[tuple[Path, str, dict[str, Any]]]:
    """(file, test group name, alert_rule_test case) for every case of every unit test file."""
    cases = []
    for path in UNIT_TEST_FILES:
        for group in load(path).get("tests", []):
            for case in group.get("alert_rule_test", []) or []:
                cases.append((path, group.get("name", ""), case))
    return cases


# --- promtool ----------------------------------------------------------------------


def test_prometheus_config_is_valid() -> None:
    promtool = tool("promtool")
    assert_ok(run([promtool, "check", "config", str(PROMETHEUS_CONFIG)]))


def test_prometheus_config_loads_every_rule_file_and_names_the_alerting_job() -> None:
    config = load(PROMETHEUS_CONFIG)
    loaded = {(PROMETHEUS_DIR / name).resolve() for name in config["rule_files"]}
    assert loaded == {p.resolve() for p in RULES_DIR.glob("*.yml")}
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    named = set(re.findall(r'up\{job="([^"]+)"\}', ALERTS_FILE.read_text()))
    assert named, "no alert names a scrape job"
    assert named <= jobs, f"alerts name jobs {named}, prometheus.yml scrapes {jobs}"
    targets = [
        t
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_files_pass_lint(path: Path) -> None:
    promtool = tool("promtool")
    assert_ok(run([promtool, "check", "rules", "--lint-fatal", str(path)]))


@pytest.fixture(scope="module")
def promtool_unit_runs() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Every unit test file through ``promtool test rules``, started side by side."""
    promtool = tool("promtool")
    procs = {
        path.name: subprocess.Popen(
            [promtool, "test", "rules", f"tests/{path.name}"],
            cwd=PROMETHEUS_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in UNIT_TEST_FILES
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_there_are_unit_tests() -> None:
    names = {p.name for p in UNIT_TEST_FILES}
    assert {
        "recording_test.yml",
        "alerts_test.yml",
        "slo_test.yml",
        "dependencies_test.yml",
    } <= names


@pytest.mark.parametrize("path", UNIT_TEST_FILES, ids=lambda p: p.name)
def test_rule_unit_tests_pass(
    path: Path, promtool_unit_runs: dict[str, subprocess.Popen[str]]
) -> None:
    proc = promtool_unit_runs[path.name]
    output, _ = proc.communicate(timeout=PROMTOOL_TIMEOUT)
    assert proc.returncode == 0, f"promtool test rules tests/{path.name}:\n{output}"
    assert "SUCCESS" in output


def test_unit_test_files_order_every_rule_group() -> None:
    """promtool 2.42 evaluates the groups ``group_eval_order`` leaves out first, in
    random order: every group must be listed, recording rules before alerts."""
    for path in UNIT_TEST_FILES:
        doc = load(path)
        groups: list[str] = []
        kinds: dict[str, str] = {}
        for name in doc["rule_files"]:
            for group in load((path.parent / name).resolve())["groups"]:
                groups.append(group["name"])
                alerting = any("alert" in rule for rule in group["rules"])
                kinds[group["name"]] = "alert" if alerting else "record"
        order = doc.get("group_eval_order", [])
        assert sorted(order) == sorted(groups), f"{path.name}: group_eval_order {order}"
        order_kinds = [kinds[name] for name in order]
        assert order_kinds == sorted(order_kinds, key=lambda k: k == "alert"), (
            f"{path.name}: recording groups must come before alert groups: {order}"
        )


# --- alerts: labels, annotations, runbooks, tests -------------------------------------


def test_every_alert_has_a_severity_annotations_and_a_runbook_section() -> None:
    anchors = runbook_anchors()
    rules = alert_rules()
    assert len(rules) >= 10
    for rule in rules:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key), f"{name}: no {key}"
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), f"{name}: runbook_url {url}"
        anchor = url[len(RUNBOOK_BASE) :]
        assert anchor == name.lower(), f"{name}: anchor {anchor}"
        assert anchor in anchors, f"{name}: docs/runbooks.md has no section #{anchor}"


def test_every_runbook_alert_section_belongs_to_an_alert() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    text = RUNBOOKS.read_text()
    sections = re.findall(r"^## (\S+)\s*$", text, flags=re.M)
    assert set(sections) == names
    for section in sections:
        body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**What it means.**", "**Look first.**", "**Logs.**", "**Traces.**"):
            assert part in body, f"runbook {section}: no {part}"
        assert "**Usual fixes.**" in body, f"runbook {section}: no usual fixes"


def test_every_alert_rule_fires_in_a_test_and_stays_silent_in_another() -> None:
    """For each alert rule (name and severity): a unit test case where it fires, and a
    case where its name is checked and it does not, in a test group whose name says
    "silent" (the groups holding the just-below-the-threshold inputs); and for each
    alert name a case expecting no alert at all."""
    cases = unit_test_cases()
    assert cases
    for rule in alert_rules():
        name, severity = rule["alert"], rule["labels"]["severity"]
        mine = [(group, case) for _, group, case in cases if case["alertname"] == name]

        def fires(case: dict[str, Any], severity: str = severity) -> bool:
            expected = case.get("exp_alerts") or []
            return any((a.get("exp_labels") or {}).get("severity") == severity for a in expected)

        assert any(fires(case) for _, case in mine), f"no unit test where {name} ({severity}) fires"
        assert any("silent" in group.lower() and not fires(case) for group, case in mine), (
            f"no 'silent' unit test group where {name} ({severity}) stays silent"
        )
        assert any(not case.get("exp_alerts") for _, case in mine), (
            f"no unit test expecting no {name} at all"
        )


def test_expected_alerts_carry_their_rules_annotations() -> None:
    """The unit tests compare annotations too; this only makes sure each expected alert
    names a real rule (alertname and severity)."""
    known = {(rule["alert"], rule["labels"]["severity"]) for rule in alert_rules()}
    for path, _, case in unit_test_cases():
        for alert in case.get("exp_alerts") or []:
            severity = (alert.get("exp_labels") or {}).get("severity")
            assert (case["alertname"], severity) in known, f"{path.name}: {case}"


# --- rules only read what the app emits -----------------------------------------------


def test_rules_read_only_metrics_the_app_emits() -> None:
    emitted = emitted_series()
    recorded = recorded_names()
    for path in RULE_FILES:
        for rule in rules_of(path):
            for name in metric_names(rule["expr"]):
                if ":" in name:
                    assert name in recorded, f"{path.name}: {name} is not a recording rule"
                else:
                    assert name in emitted or name in PROMETHEUS_OWN, (
                        f"{path.name}: {rule.get('record') or rule.get('alert')} reads {name}, "
                        "which is not in the metrics reference (docs/metrics.md)"
                    )


def test_the_metric_name_extraction_sees_through_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{le="1.0", x=~"y|z"}[5m])))'
        ' / on () group_left () b:c:d{slo="availability"} > 1 and ignoring (q) up offset 5m'
    )
    assert metric_names(expr) == {"a_bucket", "b:c:d", "up"}
    assert selectors('rate(a_bucket{le="1.0", x=~"y|z"}[5m])') == [
        ("a_bucket", [("le", "=", "1.0"), ("x", "=~", "y|z")])
    ]


def test_rules_match_only_labels_the_app_emits() -> None:
    emitted = emitted_series()
    for path in RULE_FILES:
        for rule in rules_of(path):
            for name, matchers in selectors(rule["expr"]):
                if name not in emitted:
                    continue
                allowed = emitted[name]["labels"] | TARGET_LABELS
                for label, op, value in matchers:
                    assert label in allowed, f"{path.name}: {name} has no label {label}"
                    if op == "=" and label == "le":
                        assert value in latency_buckets(), f"{name}: no bucket le={value!r}"
                    elif op == "=" and label not in TARGET_LABELS:
                        assert f"`{value}`" in emitted[name]["row"], (
                            f"{path.name}: {name}{{{label}={value!r}}}: not a documented value"
                        )


def test_unit_tests_feed_only_metrics_the_app_emits() -> None:
    emitted = emitted_series()
    for path in UNIT_TEST_FILES:
        for group in load(path)["tests"]:
            for item in group.get("input_series", []):
                name = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", item["series"]).group(1)
                assert name in emitted or name in PROMETHEUS_OWN, f"{path.name}: {name}"
                labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', item["series"]))
                if name in emitted:
                    extra = set(labels) - emitted[name]["labels"] - TARGET_LABELS
                    assert not extra, f"{path.name}: {name} has no labels {extra}"
                if "method" in labels:
                    assert labels["method"] in METHODS, f"{path.name}: {item['series']}"
                if "status" in labels:
                    # An HTTP code, or "error" for an outgoing call that got no response.
                    client = name.startswith("http_client_")
                    codes = r"[1-5][0-9][0-9]|error" if client else r"[1-5][0-9][0-9]"
                    assert re.fullmatch(codes, labels["status"]), item["series"]
                le = re.search(r'le="([^"]+)"', item["series"])
                if le and name.startswith("http_server_request_duration_seconds"):
                    assert le.group(1) in latency_buckets(), f"{path.name}: le={le.group(1)}"


def test_latency_objective_sits_on_a_bucket_boundary_used_by_every_latency_sli() -> None:
    rules = rules_of(RECORDING_FILE)
    objectives = [r for r in rules if r.get("record") == "django:slo_objective:ratio"]
    latency = [r for r in objectives if r["labels"]["slo"] == "latency"]
    assert len(objectives) == 2
    assert len(latency) == 1
    le = latency[0]["labels"]["le"]
    assert le in latency_buckets(), f"the latency objective's le={le!r} is not a bucket"
    slis = [r for r in rules if r.get("record", "").startswith("job:slo_latency_errors:ratio_")]
    assert len(slis) == 7
    for rule in slis:
        used = set(re.findall(r'le="([^"]+)"', rule["expr"]))
        assert used == {le}, f"{rule['record']} uses le={used}, the objective le={le!r}"
    for objective in objectives:
        value = float(re.fullmatch(r"vector\(([0-9.]+)\)", objective["expr"]).group(1))
        assert 0.9 <= value < 1, objective


# --- runbooks point at panels that exist ----------------------------------------------


def test_runbooks_name_dashboard_panels_that_exist() -> None:
    if not DASHBOARDS_DIR.is_dir():
        pytest.skip("deploy/grafana/dashboards/ is not there")
    panels: dict[str, set[str]] = {}
    for path in DASHBOARDS_DIR.glob("*.json"):
        dashboard = json.loads(path.read_text())
        titles: set[str] = set()
        stack = list(dashboard.get("panels", []))
        while stack:
            panel = stack.pop()
            titles.add(panel.get("title", ""))
            stack.extend(panel.get("panels", []))
        panels[dashboard["title"]] = titles
    text = re.sub(r"\s+", " ", RUNBOOKS.read_text())
    references = re.findall(rf"\*\*(Django [^*{SEP}]+?) {SEP} ([^*]+?)\*\*", text)
    assert len(references) > 20
    for dashboard, panel in references:
        assert dashboard in panels, f"runbooks name a dashboard {dashboard!r}"
        assert panel in panels[dashboard], f"runbooks name a panel {dashboard!r} {SEP} {panel!r}"


# --- Alertmanager ---------------------------------------------------------------------


def test_alertmanager_config_is_valid() -> None:
    amtool = tool("amtool")
    result = run([amtool, "check-config", str(ALERTMANAGER_CONFIG)])
    assert_ok(result)
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("severity", "receivers"),
    [("page", "pagerduty,slack"), ("ticket", "slack"), ("warning", "slack"), ("", "slack")],
)
def test_alertmanager_routes_by_severity(severity: str, receivers: str) -> None:
    amtool = tool("amtool")
    result = run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"severity={severity}",
            "alertname=DjangoTargetDown",
            "job=django",
        ]
    )
    assert_ok(result)
    assert result.stdout.strip() == receivers


def test_alertmanager_reads_secrets_from_files_only() -> None:
    config = load(ALERTMANAGER_CONFIG)
    receivers = {r["name"]: r for r in config["receivers"]}
    pagerduty = receivers["pagerduty"]["pagerduty_configs"][0]
    slack = receivers["slack"]["slack_configs"][0]
    assert "routing_key" not in pagerduty
    assert pagerduty["routing_key_file"].startswith("/")
    assert "api_url" not in slack
    assert slack["api_url_file"].startswith("/")
    assert config["route"]["group_by"] == ["alertname", "job", "route"]


class _Inbox(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.path, json.loads(body)))
        self.send_response(202 if self.path == "/pagerduty" else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "success"}' if self.path == "/pagerduty" else b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post_json(url: str, payload: Any) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_alertmanager_delivers_pages_to_pagerduty_and_everything_to_slack(
    tmp_path: Path,
) -> None:
    """The shipped configuration, with its secret files and receiver URLs pointed at a
    local inbox: a page reaches PagerDuty (routing key from its file) and Slack, its
    warning twin is inhibited, a warning reaches Slack only, and the templates render
    the summary and the runbook link."""
    # Debian names the server prometheus-alertmanager; upstream's tarball, alertmanager.
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("Alertmanager is not installed (Debian package prometheus-alertmanager)")
    received: list[tuple[str, dict[str, Any]]] = []
    handler = type("Inbox", (_Inbox,), {"received": received})
    inbox = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=inbox.serve_forever, daemon=True).start()
    inbox_url = f"http://127.0.0.1:{inbox.server_address[1]}"

    config = load(ALERTMANAGER_CONFIG)
    receivers = {r["name"]: r for r in config["receivers"]}
    key_file = tmp_path / "pagerduty-routing-key"
    key_file.write_text("0123456789abcdef0123456789abcdef\n")
    url_file = tmp_path / "slack-webhook-url"
    url_file.write_text(f"{inbox_url}/slack\n")
    receivers["pagerduty"]["pagerduty_configs"][0]["routing_key_file"] = str(key_file)
    receivers["pagerduty"]["pagerduty_configs"][0]["url"] = f"{inbox_url}/pagerduty"
    receivers["slack"]["slack_configs"][0]["api_url_file"] = str(url_file)
    config["route"]["group_wait"] = "1s"  # the only changes to the routing: timing
    config["route"]["group_interval"] = "2s"
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config))

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "alertmanager.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"Alertmanager did not start:\n{log_path.read_text()}")
            time.sleep(0.1)

        def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
            rule = next(
                r
                for r in alert_rules()
                if r["alert"] == name and r["labels"]["severity"] == severity
            )
            return {
                "labels": {"alertname": name, "severity": severity, "job": "django", **labels},
                "annotations": {
                    "summary": f"{name} {severity} summary",
                    "description": "what happened",
                    "runbook_url": rule["annotations"]["runbook_url"],
                },
            }

        _post_json(
            f"{base}/api/v2/alerts",
            [
                alert("DjangoNotReady", "page"),
                alert("DjangoNotReady", "warning", instance="app-1:8000"),
                alert("DjangoHighLatency", "warning", route="/api/v1/items/<int:pk>/"),
            ],
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            paths = [path for path, _ in received]
            if paths.count("/slack") >= 2 and paths.count("/pagerduty") >= 1:
                break
            time.sleep(0.2)
        time.sleep(3)  # anything that should not come would have come by now
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        inbox.shutdown()
        inbox.server_close()

    amlog = log_path.read_text()
    pagerduty = [body for path, body in received if path == "/pagerduty"]
    slack = [body for path, body in received if path == "/slack"]
    assert len(pagerduty) == 1, f"PagerDuty got {pagerduty}\n{amlog}"
    event = pagerduty[0]
    assert event["routing_key"] == "0123456789abcdef0123456789abcdef"
    assert event["event_action"] == "trigger"
    assert event["payload"]["severity"] == "critical"
    assert "DjangoNotReady" in event["payload"]["summary"]
    assert [link["href"] for link in event["links"]] == [RUNBOOK_BASE + "djangonotready"]

    titles = sorted(body["attachments"][0]["title"] for body in slack)
    assert titles == [
        "[FIRING:1] DjangoHighLatency (warning) django",
        "[FIRING:1] DjangoNotReady (page) django",  # the warning twin is inhibited
    ], f"{slack}\n{amlog}"
    by_alert = {
        body["attachments"][0]["title"].split()[1]: body["attachments"][0] for body in slack
    }
    latency = by_alert["DjangoHighLatency"]
    assert latency["title_link"] == RUNBOOK_BASE + "djangohighlatency"
    assert "*DjangoHighLatency warning summary*" in latency["text"]
    assert latency["text"].endswith("Runbook: " + RUNBOOK_BASE + "djangohighlatency")
    assert by_alert["DjangoNotReady"]["text"].count("summary*") == 1
    assert all(body["channel"] == "#django-alerts" for body in slack)
