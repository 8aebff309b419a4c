"""The compose stack of ``deploy/`` and the collector and log-shipping configurations, statically.

No container runtime, OpenTelemetry Collector or Grafana Alloy binary can run
here, so these tests check what can be checked without them:

* ``deploy/docker-compose.yml``: every host file or directory it mounts exists;
  every configuration file a service is started with is mounted where the
  command looks for it; every ``host:port`` named in a configuration
  (Prometheus targets, the Alertmanager, Grafana's datasources, the collector's
  exporters, Loki's push URL, the app's OTLP endpoint) is a compose service
  that exposes that port; Grafana's ``$__rate_interval`` basis equals the
  scrape interval.
* ``deploy/Dockerfile``: what it copies exists, and the settings module it
  writes passes Django's system checks with the compose file's environment
  (run for real, in a subprocess, with the example project).
* ``deploy/otel-collector/config.yaml``: pipelines name only defined
  components, every component is used, ``memory_limiter`` comes first.
* ``deploy/alloy/config.alloy``: parsed (a small parser for the subset of the
  Alloy syntax it uses), every component reference resolves, only
  low-cardinality values become Loki labels, and the JSON stage's JMESPath
  expressions pull the right values out of lines written by the app's own
  ``JsonFormatter``.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import posixpath
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jmespath
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
COLLECTOR_FILE = DEPLOY / "otel-collector" / "config.yaml"
ALLOY_FILE = DEPLOY / "alloy" / "config.alloy"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS_FILE = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_FILE = DEPLOY / "alertmanager" / "alertmanager.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"

# Host paths outside the repository a service may mount.
HOST_PATHS = {"/var/run/docker.sock"}

# What may become a Loki label: few distinct values each. Never trace/span/request
# ids, paths, routes, user ids or client addresses.
LOW_CARDINALITY_LABELS = {
    "level",
    "logger",
    "service_name",
    "service_environment",
    "compose_service",
}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@dataclass(frozen=True)
class Mount:
    service: str
    source: str
    target: str


def mounts(services: dict[str, dict[str, Any]]) -> list[Mount]:
    found = []
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            assert isinstance(volume, str), f"{name}: use the short volume syntax"
            source, target = volume.split(":")[:2]
            found.append(Mount(name, source, target))
    return found


def container_ports(svc: dict[str, Any]) -> set[int]:
    """Ports a service listens on inside the network (``expose`` and ``ports``)."""
    ports = {int(str(p).split("/")[0]) for p in svc.get("expose", [])}
    for spec in svc.get("ports", []):
        ports.add(int(str(spec).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def host_port(address: str) -> tuple[str, int]:
    """``http://loki:3100/x`` or ``jaeger:4317`` -> (host, port)."""
    if "://" not in address:
        address = "//" + address
    parts = urlsplit(address)
    assert parts.hostname, address
    assert parts.port, address
    return parts.hostname, parts.port


def assert_reaches(services: dict[str, dict[str, Any]], address: str, where: str) -> None:
    host, port = host_port(address)
    assert host in services, f"{where}: {address} names no compose service ({sorted(services)})"
    assert port in container_ports(services[host]), (
        f"{where}: {address}, but service {host} exposes {sorted(container_ports(services[host]))}"
    )


def in_container(services: dict[str, dict[str, Any]], service: str, path: str) -> Path | None:
    """The host path behind ``path`` inside ``service``'s container (via its bind mounts)."""
    for m in mounts(services):
        if m.service != service or not m.source.startswith("."):
            continue
        if path == m.target or path.startswith(m.target.rstrip("/") + "/"):
            rest = path[len(m.target) :].lstrip("/")
            return (DEPLOY / m.source / rest).resolve()
    return None


def flag(command: list[str], name: str) -> str:
    values = [c.split("=", 1)[1] for c in command if c.startswith(name + "=")]
    assert len(values) == 1, (name, command)
    return values[0]


# --- compose ---------------------------------------------------------------------


def test_compose_services(services):
    assert {
        "app",
        "prometheus",
        "alertmanager",
        "grafana",
        "otel-collector",
        "jaeger",
        "loki",
        "alloy",
    } <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        assert container_ports(svc), f"{name}: say which ports it listens on (expose)"
    build = services["app"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def secret_source(compose: dict[str, Any], service: str, path: str) -> Path | None:
    """The host file of the compose secret a service sees at ``path``."""
    for entry in compose["services"][service].get("secrets", []):
        name = entry if isinstance(entry, str) else entry["source"]
        target = f"/run/secrets/{name}" if isinstance(entry, str) else entry.get("target", name)
        if not target.startswith("/"):
            target = f"/run/secrets/{target}"
        if target == path:
            return (DEPLOY / compose["secrets"][name]["file"]).resolve()
    return None


def prometheus_token_file(services: dict[str, dict[str, Any]]) -> Path | None:
    """The host file behind the django job's ``authorization.credentials_file``."""
    config = load_yaml(PROMETHEUS_FILE)
    [job] = [sc for sc in config["scrape_configs"] if sc["job_name"] == "django"]
    path = job.get("authorization", {}).get("credentials_file")
    if path is None:
        return None
    config_dir = posixpath.dirname(flag(services["prometheus"]["command"], "--config.file"))
    return in_container(services, "prometheus", posixpath.join(config_dir, path))


def test_secret_files_exist(compose):
    for name, secret in (compose.get("secrets") or {}).items():
        assert (DEPLOY / secret["file"]).is_file(), f"secret {name}: {secret['file']}"


def _mount_ids() -> list[str]:
    return [f"{m.service}:{m.source}" for m in mounts(load_yaml(COMPOSE_FILE)["services"])]


@pytest.mark.parametrize("mount", mounts(load_yaml(COMPOSE_FILE)["services"]), ids=_mount_ids())
def test_mounted_path_exists(compose, mount: Mount):
    """Bind mounts name files of this repository (relative to deploy/); volumes are declared.

    deploy/prometheus/ and deploy/alertmanager/ are written alongside these files:
    a missing one fails here until it lands.
    """
    if mount.source.startswith("."):
        path = (DEPLOY / mount.source).resolve()
        assert REPO in path.parents, mount
        assert path.exists(), f"{mount.service} mounts {mount.source}: {path} does not exist"
    elif mount.source.startswith("/"):
        assert mount.source in HOST_PATHS, mount
    else:
        assert mount.source in (compose.get("volumes") or {}), f"undeclared volume {mount}"


def test_services_are_started_with_their_mounted_configs(services):
    prom = services["prometheus"]["command"]
    assert in_container(services, "prometheus", flag(prom, "--config.file")) == PROMETHEUS_FILE
    am = services["alertmanager"]["command"]
    assert in_container(services, "alertmanager", flag(am, "--config.file")) == ALERTMANAGER_FILE
    otel = services["otel-collector"]["command"]
    assert in_container(services, "otel-collector", flag(otel, "--config")) == COLLECTOR_FILE
    alloy = services["alloy"]["command"]
    assert alloy[0] == "run"
    assert in_container(services, "alloy", alloy[-1]) == ALLOY_FILE
    # deploy/prometheus/ and deploy/alertmanager/ are written alongside these files: a
    # missing one fails here until it lands.
    for path in (PROMETHEUS_FILE, ALERTMANAGER_FILE, COLLECTOR_FILE, ALLOY_FILE):
        assert path.is_file(), f"{path.relative_to(REPO)} does not exist"
    # Grafana: provisioning where Grafana looks, dashboards where the provider reads.
    assert in_container(services, "grafana", "/etc/grafana/provisioning/datasources") == (
        DATASOURCES
    )
    [provider] = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    dash_dir = in_container(services, "grafana", provider["options"]["path"])
    assert dash_dir == DEPLOY / "grafana" / "dashboards"
    assert sorted(dash_dir.glob("*.json")), dash_dir
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert in_container(services, "grafana", home).exists()


def test_prometheus_config_matches_compose(services):
    config = load_yaml(PROMETHEUS_FILE)
    jobs = {sc["job_name"]: sc for sc in config["scrape_configs"]}
    assert "django" in jobs, sorted(jobs)
    targets = [
        (sc["job_name"], t)
        for sc in config["scrape_configs"]
        for static in sc.get("static_configs", [])
        for t in static["targets"]
    ]
    assert ("django", "app:8000") in targets, targets
    for job, tgt in targets:
        if host_port(tgt)[0] in services or job == "django":
            assert_reaches(services, tgt, f"prometheus.yml job {job}")
    managers = [
        t
        for am in config.get("alerting", {}).get("alertmanagers", [])
        for static in am.get("static_configs", [])
        for t in static["targets"]
    ]
    assert managers, "prometheus.yml sends alerts nowhere"
    for tgt in managers:
        assert_reaches(services, tgt, "prometheus.yml alertmanagers")
    # Rule files: relative to the config file's directory, inside a mounted directory.
    config_dir = posixpath.dirname(flag(services["prometheus"]["command"], "--config.file"))
    rule_files = config.get("rule_files", [])
    assert rule_files
    for pattern in rule_files:
        in_ctr = posixpath.join(config_dir, pattern)
        host = in_container(services, "prometheus", in_ctr)
        assert host is not None, f"rule_files {pattern} is not mounted into the container"
        assert glob.glob(str(host)), f"rule_files {pattern} matches nothing in {host}"
    # Grafana's $__rate_interval is based on the datasource's timeInterval.
    scrape_interval = config.get("global", {}).get("scrape_interval", "1m")
    [prom] = [d for d in load_yaml(DATASOURCES / "prometheus.yml")["datasources"]]
    assert prom["jsonData"]["timeInterval"] == scrape_interval
    # Credentials, CA files...: inside a mount of the prometheus container.
    for key, path in _file_settings(config):
        host = in_container(services, "prometheus", posixpath.join(config_dir, path))
        assert host is not None, f"prometheus.yml {key}: {path} is not mounted"
        assert host.is_file(), f"prometheus.yml {key}: {host} does not exist"


def _file_settings(node: Any) -> Iterator[tuple[str, str]]:
    """``(key, value)`` of every ``*_file`` setting in a parsed YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("_file") and isinstance(value, str):
                yield key, value
            else:
                yield from _file_settings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _file_settings(item)


def test_alertmanager_secret_files_are_mounted(services):
    """Alertmanager reads secrets from *_file paths: each must be inside a mount."""
    config = load_yaml(ALERTMANAGER_FILE)
    secret_mounts = [
        m.target for m in mounts(services) if m.service == "alertmanager"
    ] + [
        s.get("target", f"/run/secrets/{s.get('source')}") if isinstance(s, dict)
        else f"/run/secrets/{s}"
        for s in services["alertmanager"].get("secrets", [])
    ]  # fmt: skip
    config_dir = posixpath.dirname(flag(services["alertmanager"]["command"], "--config.file"))
    for key, path in _file_settings(config):
        path = posixpath.join(config_dir, path)  # relative to the configuration file
        assert any(path == t or path.startswith(t.rstrip("/") + "/") for t in secret_mounts), (
            f"alertmanager.yml {key}: {path} is not mounted into the alertmanager container"
        )


def test_grafana_datasources_reach_services(services):
    uids = set()
    for path in sorted(DATASOURCES.glob("*.yml")):
        for source in load_yaml(path)["datasources"]:
            uids.add(source["uid"])
            assert_reaches(services, source["url"], f"{path.name} {source['name']}")
    for path in sorted(DATASOURCES.glob("*.yml")):
        text = path.read_text()
        for uid in re.findall(r"datasourceUid: (\S+)", text):
            assert uid in uids, f"{path.name} links to datasource {uid}, not provisioned"


def test_app_environment_matches_the_stack(services, compose):
    env = services["app"]["environment"]
    assert_reaches(services, env["OTEL_EXPORTER_OTLP_ENDPOINT"], "app OTEL_EXPORTER_OTLP_ENDPOINT")
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    # The collector receives OTLP/HTTP on that port.
    collector = load_yaml(COLLECTOR_FILE)
    http_port = host_port(collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"])[1]
    assert host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"]) == ("otel-collector", http_port)
    # /metrics: the app reads its token from the same file Prometheus sends.
    token_file = env["OBSERVABILITY_AUTH_TOKEN_FILE"]
    assert secret_source(compose, "app", token_file) == prometheus_token_file(services)
    # Prometheus asks for Host: app.
    assert "app" in env["DJANGO_ALLOWED_HOSTS"].split(",")
    assert services["app"]["labels"]["logging"] == "json"


# --- Dockerfile ------------------------------------------------------------------


def dockerfile_heredoc(text: str, name: str) -> tuple[str, str]:
    """(destination, body) of ``COPY <<'NAME' dest`` ... ``NAME``."""
    match = re.search(rf"^COPY <<'{name}' (\S+)\n(.*?)^{name}$", text, re.MULTILINE | re.DOTALL)
    assert match, name
    return match.group(1), match.group(2)


def test_dockerfile_copies_what_exists():
    text = DOCKERFILE.read_text()
    for line in re.findall(r"^COPY (?!<<)(.+)$", text, re.MULTILINE):
        *sources, _dest = line.split()
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_docker_settings_pass_system_checks(compose, services, tmp_path):
    """The settings module the image writes, with the compose file's environment."""
    dest, body = dockerfile_heredoc(DOCKERFILE.read_text(), "PY")
    assert dest.endswith("/example_project/example/settings_docker.py"), dest
    module_dir = tmp_path / "extra"
    (module_dir / "example").mkdir(parents=True)
    # A package overlay: example.settings_docker next to the real example package.
    (module_dir / "example" / "settings_docker.py").write_text(body)
    example_dir = REPO / "example_project"
    app_env = {k: str(v) for k, v in services["app"]["environment"].items()}
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DJANGO_SETTINGS_MODULE" and not k.startswith(("OTEL_", "PROMETHEUS_"))
    }
    env.update(app_env)
    token_file = secret_source(compose, "app", app_env["OBSERVABILITY_AUTH_TOKEN_FILE"])
    assert token_file is not None
    env.update(
        OBSERVABILITY_AUTH_TOKEN_FILE=str(token_file),
        DJANGO_SETTINGS_MODULE="example.settings_docker",
        EXAMPLE_DB=str(tmp_path / "db.sqlite3"),
        OTEL_TRACES_EXPORTER="none",  # nothing listens here; the setting is what's tested
        PYTHONPATH=os.pathsep.join([str(example_dir), str(REPO)]),
    )
    script = (
        "import sys, pathlib, example;"
        f"example.__path__.append({str(module_dir / 'example')!r});"
        "import django; from django.conf import settings; django.setup();"
        "from django.core.management import call_command; call_command('check');"
        "import json; print(json.dumps({'hosts': settings.ALLOWED_HOSTS,"
        " 'ips': settings.OBSERVABILITY_ALLOWED_IPS, 'token': settings.OBSERVABILITY_AUTH_TOKEN,"
        " 'formatter': settings.LOGGING['formatters']}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=example_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "app" in out["hosts"]
    assert "127.0.0.1/32" in out["ips"]
    # What Prometheus sends: the file's content without surrounding whitespace.
    assert out["token"] == token_file.read_text().strip()
    assert "JsonFormatter" in json.dumps(out["formatter"])


# --- OpenTelemetry Collector --------------------------------------------------------


def test_collector_pipelines_use_defined_components(services):
    config = load_yaml(COLLECTOR_FILE)
    service = config["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    assert "traces" in service["pipelines"]
    for name, pipeline in service["pipelines"].items():
        for kind in used:
            for component in pipeline.get(kind, []):
                assert component in (config.get(kind) or {}), f"{name} uses undefined {component}"
                used[kind].add(component)
        assert pipeline["processors"][0] == "memory_limiter", "memory_limiter must come first"
        assert "batch" in pipeline["processors"]
    for kind, names in used.items():
        assert set(config.get(kind) or {}) == names, f"{kind} defined but unused"
    for ext in service.get("extensions", []):
        assert ext in config["extensions"]
    # It listens on every interface of its container, on ports compose exposes.
    ports = container_ports(services["otel-collector"])
    for proto in ("grpc", "http"):
        host, port = host_port(config["receivers"]["otlp"]["protocols"][proto]["endpoint"])
        assert host == "0.0.0.0", (proto, host)
        assert port in ports, (proto, port, ports)
    # Exporters point at compose services (Jaeger takes OTLP gRPC on 4317).
    for name, exporter in config["exporters"].items():
        if "endpoint" in exporter:
            assert_reaches(services, exporter["endpoint"], f"collector exporter {name}")
    assert host_port(config["exporters"]["otlp/jaeger"]["endpoint"]) == ("jaeger", 4317)


# --- Grafana Alloy ------------------------------------------------------------------


@dataclass
class Ref:
    """A reference to another component's export: ``loki.write.default.receiver``."""

    name: str


@dataclass
class Block:
    name: str
    label: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def find(self, name: str) -> list[Block]:
        return [b for b in self.blocks if b.name == name]


_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[{}\[\]()=,])
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match, f"cannot read the Alloy config at: {text[pos : pos + 40]!r}"
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


class AlloyParser:
    """The subset of the Alloy configuration syntax the config uses: blocks,
    attributes, strings, numbers, booleans, lists, objects, references, calls."""

    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("eof", "")

    def take(self, kind: str, value: str | None = None) -> str:
        tok_kind, tok = self.peek()
        expected = f"expected {value or kind}, got {tok!r} (token {self.i})"
        assert tok_kind == kind, expected
        assert value is None or tok == value, expected
        self.i += 1
        return tok

    def parse(self) -> Block:
        root = Block("<root>")
        self.body(root, end="eof")
        return root

    def body(self, block: Block, end: str) -> None:
        while self.peek()[0] != end and self.peek()[1] != end:
            name = self.take("ident")
            if self.peek()[1] == "=":
                self.take("punct", "=")
                assert name not in block.attrs, f"{name} set twice"
                block.attrs[name] = self.expr()
                continue
            label = json.loads(self.take("string")) if self.peek()[0] == "string" else None
            child = Block(name, label)
            self.take("punct", "{")
            self.body(child, end="}")
            self.take("punct", "}")
            block.blocks.append(child)

    def expr(self) -> Any:
        kind, tok = self.peek()
        if kind == "string":
            self.i += 1
            return json.loads(tok)
        if kind == "raw":
            self.i += 1
            return tok[1:-1]
        if kind == "number":
            self.i += 1
            return float(tok)
        if kind == "ident":
            self.i += 1
            if tok in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[tok]
            if self.peek()[1] == "(":
                return ("call", tok, self.sequence("(", ")"))
            return Ref(tok)
        if tok == "[":
            return self.sequence("[", "]")
        if tok == "{":
            self.take("punct", "{")
            obj: dict[str, Any] = {}
            while self.peek()[1] != "}":
                key_kind, key = self.peek()
                self.i += 1
                key = json.loads(key) if key_kind == "string" else key
                self.take("punct", "=")
                obj[key] = self.expr()
                if self.peek()[1] == ",":
                    self.take("punct", ",")
            self.take("punct", "}")
            return obj
        raise AssertionError(f"unexpected {tok!r} in an expression")

    def sequence(self, open_: str, close: str) -> list[Any]:
        self.take("punct", open_)
        items = []
        while self.peek()[1] != close:
            items.append(self.expr())
            if self.peek()[1] == ",":
                self.take("punct", ",")
        self.take("punct", close)
        return items


def walk_refs(value: Any) -> Iterator[Ref]:
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from walk_refs(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from walk_refs(item)
    elif isinstance(value, Block):
        for item in value.attrs.values():
            yield from walk_refs(item)
        for child in value.blocks:
            yield from walk_refs(child)


@pytest.fixture(scope="module")
def alloy() -> Block:
    return AlloyParser(ALLOY_FILE.read_text(encoding="utf-8")).parse()


def components(root: Block) -> dict[str, Block]:
    found = {}
    for block in root.blocks:
        assert block.label, f"component {block.name} without a label"
        key = f"{block.name}.{block.label}"
        assert key not in found, f"{key} defined twice"
        found[key] = block
    return found


def test_alloy_references_resolve(alloy):
    defined = components(alloy)
    assert {"loki.source.docker", "loki.process", "loki.write"} <= {
        b.name for b in defined.values()
    }
    for ref in walk_refs(alloy):
        assert any(ref.name.startswith(key + ".") for key in defined), (
            f"{ref.name} refers to no component of the config"
        )
    # Every component's output goes somewhere: each is referenced by another.
    referenced = {key for ref in walk_refs(alloy) for key in defined if ref.name.startswith(key)}
    unreferenced = set(defined) - referenced - {k for k in defined if k.startswith("loki.source")}
    assert not unreferenced, unreferenced


def test_alloy_ships_to_the_compose_loki(alloy, services):
    writers = [b for b in components(alloy).values() if b.name == "loki.write"]
    for writer in writers:
        for endpoint in writer.find("endpoint"):
            url = endpoint.attrs["url"]
            assert_reaches(services, url, "alloy loki.write")
            assert urlsplit(url).path == "/loki/api/v1/push"
    for block in components(alloy).values():
        host = block.attrs.get("host")
        if isinstance(host, str) and host.startswith("unix://"):
            socket = host.removeprefix("unix://")
            assert any(m.service == "alloy" and m.target == socket for m in mounts(services)), (
                f"{socket} is not mounted into the alloy container"
            )
    # The discovery filter selects the app by the label compose gives it.
    [docker] = [b for b in components(alloy).values() if b.name == "discovery.docker"]
    [flt] = docker.find("filter")
    assert flt.attrs["name"] == "label"
    labels = services["app"]["labels"]
    assert any(f"{k}={v}" in flt.attrs["values"] for k, v in labels.items())


def promoted_labels(alloy: Block) -> dict[str, str]:
    """Loki label name -> where it comes from."""
    labels = {}
    for key, block in components(alloy).items():
        for name in block.attrs.get("labels", {}) or {}:
            labels[name] = f"{key}.labels"
        for rule in block.find("rule"):
            if rule.attrs.get("action", "replace") in ("replace", "labelmap"):
                labels[rule.attrs["target_label"]] = f"{key} rule"
        for stage in block.find("stage.labels") + block.find("stage.static_labels"):
            for name in stage.attrs["values"]:
                labels[name] = f"{key} {stage.name}"
    return labels


def test_alloy_labels_are_low_cardinality(alloy):
    labels = promoted_labels(alloy)
    assert {"level", "logger", "service_name"} <= set(labels), labels
    high = set(labels) - LOW_CARDINALITY_LABELS
    assert not high, (
        f"labels outside the low-cardinality allow-list: { {h: labels[h] for h in high} }"
    )
    # The ids are kept, as structured metadata.
    [process] = [b for b in components(alloy).values() if b.name == "loki.process"]
    [metadata] = process.find("stage.structured_metadata")
    assert {"trace_id", "span_id", "request_id"} <= set(metadata.attrs["values"])
    # Labels and metadata come from values the JSON stage extracts.
    [json_stage] = process.find("stage.json")
    extracted = set(json_stage.attrs["expressions"])
    for stage in process.find("stage.labels") + process.find("stage.structured_metadata"):
        for name, source in stage.attrs["values"].items():
            assert (source or name) in extracted, (stage.name, name)
    [ts] = process.find("stage.timestamp")
    assert ts.attrs["source"] in extracted


def app_log_lines() -> list[dict[str, Any]]:
    """Lines as the app writes them: its JsonFormatter, an access and an error record."""
    from django_observability.logging import JsonFormatter

    formatter = JsonFormatter()

    def line(logger: str, level: int, msg: str, extra: dict[str, Any], exc: bool = False):
        record = logging.LogRecord(logger, level, __file__, 1, msg, None, None)
        if exc:
            try:
                raise ValueError("bad value")
            except ValueError:
                record.exc_info = sys.exc_info()
        record.__dict__.update(extra)
        return json.loads(formatter.format(record))

    ids = {
        "request_id": "0af7651916cd43dd8448eb211c80319c",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
    }
    access = {
        "http.request.method": "GET",
        "url.path": "/api/v1/items/1/",
        "http.route": "/api/v1/items/<int:pk>/",
        "http.response.status_code": 200,
        "event.duration": 1_500_000,
        "client.ip": "10.0.0.7",
        "user.id": "42",
    }
    return [
        line("django_observability.access", logging.INFO, "GET /api/v1/items/1/", access | ids),
        line("django.request", logging.ERROR, "Internal Server Error", ids, exc=True),
    ]


def test_alloy_json_stage_reads_the_app_log_lines(alloy, settings):
    settings.OBSERVABILITY_SERVICE_NAME = "example-shop"
    settings.OBSERVABILITY_ENVIRONMENT = "compose"
    [process] = [b for b in components(alloy).values() if b.name == "loki.process"]
    [json_stage] = process.find("stage.json")
    expressions = json_stage.attrs["expressions"]
    access, error = app_log_lines()
    expected = {
        "level": "info",
        "logger": "django_observability.access",
        "service_name": "example-shop",
        "service_environment": "compose",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "request_id": "0af7651916cd43dd8448eb211c80319c",
    }
    got = {name: jmespath.search(expr, access) for name, expr in expressions.items()}
    assert {k: got[k] for k in expected} == expected, access
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", got["timestamp"]), got
    got_error = {name: jmespath.search(expr, error) for name, expr in expressions.items()}
    assert (got_error["level"], got_error["logger"]) == ("error", "django.request")
    assert error["error"]["type"] == "ValueError"
    # Nothing extracted for a label varies per request.
    for name in promoted_labels(alloy):
        if name in got:
            assert got[name] == got_error[name] or name in ("level", "logger"), name


def test_alloy_file_has_no_tabs_or_trailing_spaces():
    """What ``alloy fmt`` would leave alone, as far as whitespace goes."""
    for number, line in enumerate(ALLOY_FILE.read_text().splitlines(), start=1):
        assert "\t" not in line, f"line {number}"
        assert line == line.rstrip(), f"line {number}"
