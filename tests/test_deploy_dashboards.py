"""The Grafana dashboards of ``deploy/grafana``: every panel query against a real Prometheus.

The peer test (``-m peers``) starts the example project under gunicorn (two
gthread workers, Prometheus multiprocess mode, a private migrated SQLite
database with one user) with a readiness check that hangs (so readiness
fails) and a check that warns, the example's own Celery worker with beat
embedded (``celery -A example worker --beat``, Kombu's filesystem broker in
the test's folder, beat's ``refresh-stats`` entry every second), a private
``redis-server`` behind the web servers' default cache (``EXAMPLE_REDIS_URL``:
Django's ``RedisCache``), and a real Prometheus scraping both every second,
the worker's ``/metrics`` in a job of its own as docs/workers.md sets it up.
It sends two rounds of traffic with a scrape in between (so that every rate
has an increase to show): every kind of request of the example, 404s, 500s,
slow requests, a request for a disallowed host, logins and failed logins,
audited group creations, a database integrity error, readiness and health
probes, cache reads (misses and hits, Redis GETs and SETs), calls to an
upstream over HTTP (the example's own echo view, one answering 503), and one
report of each kind (one that succeeds, one that fails, one retried once)
enqueued through gunicorn. Then it substitutes the dashboards' variables the
way Grafana does (the tasks dashboard's ``job`` is
the workers' job, as deploy/README.md says to set it) and runs every panel
query: each must parse (not HTTP 400 ``bad_data``) and return at least one
series with a number, except the panels of Django's connection pool (the
example's SQLite database has none), named in ``WITHOUT_DATA_HERE``.

The other tests need no server: the dashboards' structure, that the JSON files
are what ``django_observability.dashboards`` writes, the provisioning
files, and that every metric of the metrics reference (``docs/metrics.md``) is in a
panel.
"""

from __future__ import annotations

import collections
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.register_assert_rewrite("tests.peers", "tests.peers_celery")

from django_observability import dashboards, deploy_assets  # noqa: E402
from tests.peers import (  # noqa: E402
    EXAMPLE_DIR,
    HTTP_TIMEOUT,
    Server,
    free_port,
    http,
    make_gunicorn,
    manage,
    run_prometheus,
    scrape,
    total,
    wait_for,
)
from tests.peers_celery import CeleryWorker, Redis, running_redis  # noqa: E402
from tests.test_peers_example_worker import KINDS, post_report, project_env  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
GRAFANA = DEPLOY / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
METRICS_DOC = REPO / "docs" / "metrics.md"

JOB = "django"  # the job name of deploy/prometheus/prometheus.yml, and of the test's Prometheus
WORKER_JOB = "celery"  # the workers' job of docs/workers.md, and of the test's Prometheus
# The job each dashboard's `job` variable is set to (deploy/README.md: the tasks dashboard's
# is the job that scrapes the workers); the others show the web servers'.
JOB_OF = {"django-tasks.json": WORKER_JOB}
USERNAME = "dash-admin"
PASSWORD = "correct horse battery staple"  # a throwaway user of a temp database

# Grafana's built-in variables, as Grafana would fill them in for "last 10 minutes"
# with a 1 s scrape interval (the test's Prometheus has only seconds of data).
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "10m",
    "__range_s": "600",
    "__range_ms": "600000",
}

REQUEST_DURATION = "http_server_request_duration_seconds"
SCHEDULED_JOB_METRIC = "job_last_success_timestamp_seconds"
# Task runs that end in each (task, outcome) per report of each kind: the flaky task's
# first run asks for a retry, its second succeeds.
TASK_RUNS = {
    (KINDS["report"], "success"),
    (KINDS["fail"], "failure"),
    (KINDS["retry"], "retry"),
    (KINDS["retry"], "success"),
}
BEAT_ENTRY = "refresh-stats"  # the example's beat entry (EXAMPLE_BEAT_SECONDS=1 here)
# Panels (dashboard, title) whose series the stack below cannot make, with the reason:
# their queries must parse, data is not expected. Every other panel must show data.
NO_POOL = "Django's connection pool only: the example's SQLite database has no pool"
WITHOUT_DATA_HERE = {
    ("django-dependencies.json", "Pool connections by alias"): NO_POOL,
    ("django-dependencies.json", "Requests waiting for a connection by alias"): NO_POOL,
    ("django-dependencies.json", "Connection wait per request by alias"): NO_POOL,
}
ARCHIVE = "/api/v1/archive/(?P<year>[0-9]{4})/"
ITEM = "/api/v1/items/<int:pk>/"


# --- the dashboards ---------------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def iter_panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str
    variables: tuple[dict[str, Any], ...]

    @property
    def id(self) -> str:
        return f"{self.dashboard.removesuffix('.json')}/{self.panel}/{self.ref}"


def all_queries() -> list[Query]:
    queries = []
    for name, dash in load_dashboards().items():
        variables = tuple(dash["templating"]["list"])
        for panel in iter_panels(dash["panels"]):
            for tgt in panel.get("targets", []):
                queries.append(Query(name, panel["title"], tgt["refId"], tgt["expr"], variables))
    return queries


QUERIES = all_queries()


def grafana_regex_escape(value: str) -> str:
    """What Grafana's Prometheus datasource does to each value of a multi-value variable.

    (``prometheusSpecialRegexEscape``: a backslash before regex metacharacters,
    itself escaped for the PromQL string literal.)
    """
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value)


def variable_values(variables: Iterable[dict[str, Any]], **chosen: str) -> dict[str, str]:
    """Name -> text substituted: "All" for multi-value variables, JOB, custom defaults."""
    values = dict(BUILTINS)
    for var in variables:
        name = var["name"]
        if var["type"] == "datasource":
            continue
        if name in chosen:
            values[name] = chosen[name]
        elif var["type"] == "custom":
            values[name] = var["current"]["value"]
        elif var.get("includeAll"):
            values[name] = var["allValue"]
        elif name == "job":
            values[name] = JOB
        else:
            raise AssertionError(f"no test value for variable {name!r}")
    return values


# Grafana leaves what names no variable as it is: "$1" in label_replace() stays.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$([A-Za-z_]\w*)")


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]

    out = _VARIABLE.sub(one, expr)
    assert not re.search(r"\$(?!\d)", out), out
    return out


# --- static checks (no server) ------------------------------------------------------


def reference_metrics() -> list[str]:
    """Metric names in the first column of the "Metrics reference" table of docs/metrics.md."""
    text = METRICS_DOC.read_text(encoding="utf-8")
    section = text.split("## Metrics reference", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `([a-z_:][a-z0-9_:]*)` \|", section, flags=re.MULTILINE)
    assert len(names) >= 17, names
    return names


def metric_selectors(expr: str) -> set[str]:
    """Names of the metrics an expression selects (each followed by a ``{`` matcher)."""
    return set(re.findall(r"(?<![\w:])([a-zA-Z_:][\w:]*)\{", expr))


def test_every_reference_metric_is_in_a_panel():
    exprs = [q.expr for q in QUERIES]
    missing = [
        name
        for name in reference_metrics()
        if not any(re.search(rf"(?<![\w:]){name}(_bucket|_count|_sum)?\{{", e) for e in exprs)
    ]
    assert not missing, f"metrics of the reference (docs/metrics.md) without a panel: {missing}"


def test_panels_use_only_metrics_the_app_emits():
    known = {"up"}  # Prometheus's own
    for name in reference_metrics():
        known.update({name, f"{name}_bucket", f"{name}_count", f"{name}_sum"})
    unknown = {
        (q.id, name) for q in QUERIES for name in metric_selectors(q.expr) if name not in known
    }
    assert not unknown, unknown


def test_dashboards_are_what_the_generator_writes():
    rendered = dashboards.render()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARD_DIR.glob("*.json")}
    assert rendered.keys() == on_disk.keys()
    stale = [name for name, text in rendered.items() if on_disk[name] != text]
    assert not stale, f"run manage.py observability_assets (docs/development.md; stale: {stale})"
    # With a namespace every metric name is prefixed, and nothing else changes.
    shop = {
        path.removeprefix("grafana/dashboards/"): text
        for path, text in deploy_assets.render(deploy_assets.AssetOptions(namespace="shop")).items()
        if path.startswith("grafana/dashboards/")
    }
    assert shop.keys() == rendered.keys()
    for name, text in shop.items():
        names = {n for q in json.loads(text)["panels"] for n in _selectors_of(q)}
        assert names, name
        assert all(n.startswith("shop_") or n == "up" for n in names), (name, names)
        assert text.replace("shop_", "") == rendered[name]


def _selectors_of(panel: dict[str, Any]) -> set[str]:
    return {n for t in panel.get("targets", []) for n in metric_selectors(t["expr"])}


def test_dashboard_structure():
    dashboards = load_dashboards()
    assert set(dashboards) == {
        "django-overview.json",
        "django-health.json",
        "django-auth-security.json",
        "django-process-db.json",
        "django-tasks.json",
        "django-dependencies.json",
    }
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for name, dash in dashboards.items():
        assert 36 <= dash["schemaVersion"] <= 41, name
        variables = dash["templating"]["list"]
        first = variables[0]
        assert (first["name"], first["type"], first["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        )
        names = {v["name"] for v in variables}
        assert {"job", "instance"} <= names, name
        for var in variables[1:]:
            if var["type"] == "query":
                assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ids = [p["id"] for p in iter_panels(dash["panels"])]
        assert len(set(ids)) == len(ids), name
        cells: set[tuple[int, int]] = set()
        for panel in iter_panels(dash["panels"]):
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            area = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not area & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= area
            if panel["type"] == "row":
                continue
            where = f"{name}: {panel['title']}"
            # One question per panel, said in its description.
            assert panel["description"].startswith("Answers: "), where
            assert panel["description"].count("?") >= 1, where
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            refs = [t["refId"] for t in panel["targets"]]
            assert refs, where
            assert len(set(refs)) == len(refs), where
            for tgt in panel["targets"]:
                assert tgt["datasource"] == panel["datasource"], where
                expr = tgt["expr"]
                # A scheduled job's gauges carry the job's own name in `job`: every job shows.
                assert 'job="$job"' in expr or SCHEDULED_JOB_METRIC in expr, where
                # Rates over Grafana's interval, never a fixed window.
                windows = re.findall(r"\[([^\]]+)\]", expr)
                assert all(w in ("$__rate_interval", "$__range") for w in windows), (where, expr)
                assert "rate(" not in expr or "[$__rate_interval]" in expr, where


def test_panels_without_data_here_exist():
    """An exemption names a panel of the dashboards (not one renamed or removed since)."""
    panels = {(q.dashboard, q.panel) for q in QUERIES}
    assert set(WITHOUT_DATA_HERE) <= panels, set(WITHOUT_DATA_HERE) - panels


def test_provisioning_files():
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    [prom] = [d for d in sources["datasources"] if d["type"] == "prometheus"]
    assert prom["url"] == "http://prometheus:9090"
    assert prom["isDefault"] is True
    assert re.fullmatch(r"\d+[smh]", prom["jsonData"]["timeInterval"])
    other_uids = {
        d["uid"]
        for f in (GRAFANA / "provisioning/datasources").glob("*.yml")
        for d in yaml.safe_load(f.read_text())["datasources"]
    }
    for dest in prom["jsonData"]["exemplarTraceIdDestinations"]:
        assert dest["datasourceUid"] in other_uids
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


ALERTS_FILE = DEPLOY / "prometheus" / "rules" / "alerts.yml"
DEPLOY_README = DEPLOY / "README.md"


def alert_names() -> set[str]:
    groups = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_every_alert_points_at_a_panel():
    """Panel descriptions name the alerts that fire on what they show; no stale names."""
    described = " ".join(
        panel.get("description", "")
        for dash in load_dashboards().values()
        for panel in iter_panels(dash["panels"])
    )
    named = set(re.findall(r"\bDjango[A-Z]\w+", described))
    alerts = alert_names()
    assert named <= alerts, f"panels name alerts that do not exist: {named - alerts}"
    assert alerts <= named, f"alerts no panel points at: {alerts - named}"


def test_deploy_readme_describes_every_dashboard_panel_and_alert():
    text = DEPLOY_README.read_text(encoding="utf-8")
    for dash in load_dashboards().values():
        assert f"### {dash['title']} (`{dash['uid']}`)" in text, dash["title"]
        section = text.split(f"### {dash['title']} (", 1)[1].split("\n### ", 1)[0]
        for panel in iter_panels(dash["panels"]):
            if panel["type"] != "row":
                assert f"| {panel['title']} |" in section, (dash["title"], panel["title"])
    for alert in alert_names():
        assert alert in text, alert


def test_deploy_readme_gives_the_command_for_a_namespace():
    """With a namespace, the README points at the command (tests/test_deploy_assets.py runs
    promtool on what it writes), not at a text substitution."""
    text = DEPLOY_README.read_text(encoding="utf-8")
    section = text.split("## With `OBSERVABILITY_METRICS_NAMESPACE`", 1)[1].split("\n## ", 1)[0]
    assert "observability_assets" in section
    assert "sed " not in section


# --- the real thing: example project + Prometheus ------------------------------------


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_form(url: str, fields: dict[str, str]) -> int:
    """POST a form (the example's login and group views are CSRF-exempt); the status."""
    req = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(fields).encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with _opener.open(req, timeout=HTTP_TIMEOUT) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        with err:
            err.read()
            return err.code


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    status: int
    host: str | None = None
    form: tuple[tuple[str, str], ...] | None = None

    @property
    def counted(self) -> int:
        """Requests it adds to the request metrics: none for the app's own endpoints, two for
        the upstream view (its call to the example's own echo view is a request too)."""
        if self.path.startswith("/health/"):
            return 0
        return 2 if self.path.startswith("/api/v1/upstream/") else 1


ROUND: tuple[Hit, ...] = (
    # First, while gunicorn's threads are free for the echo requests the upstream calls
    # make: two calls answered 200, one 503 (the view answers 200 and says so), so both
    # outgoing statuses have series. Cache reads (on Redis): a miss, then hits.
    Hit("GET", "/api/v1/upstream/", 200),
    Hit("GET", "/api/v1/upstream/", 200),
    Hit("GET", "/api/v1/upstream/?status=503", 200),
    Hit("GET", "/api/v1/cached/", 200),
    Hit("GET", "/api/v1/cached/", 200),
    Hit("GET", "/api/v1/cached/", 200),
    Hit("GET", "/", 200),
    Hit("GET", "/", 200),
    Hit("GET", "/api/v1/items/", 200),
    Hit("GET", "/api/v1/items/1/", 200),
    Hit("GET", "/api/v1/items/2/", 200),
    Hit("HEAD", "/api/v1/items/3/", 200),
    Hit("GET", "/api/v1/items/99/", 404),  # Http404 in a view: keeps its route
    Hit("GET", "/no/such/page/", 404),  # <unmatched>
    Hit("GET", "/api/v1/archive/2024/", 200),
    Hit("GET", "/boom/", 500),
    Hit("GET", "/boom/", 500),
    Hit("GET", "/api/v1/stats/", 200),
    Hit("GET", "/api/v1/stats/", 200),
    Hit("GET", "/api/v1/stats/", 200),
    Hit("GET", "/slow/?seconds=0.3", 200),
    Hit("GET", "/slow/?seconds=0.8", 200),
    Hit("GET", "/stream/", 200),
    Hit("FOO", "/", 403),  # refused by the CSRF middleware
    Hit("GET", "/", 400, host="evil.example"),  # security event disallowed_host
    Hit("POST", "/api/v1/login/", 200, form=(("username", USERNAME), ("password", PASSWORD))),
    Hit("POST", "/api/v1/login/", 401, form=(("username", USERNAME), ("password", "wrong"))),
    Hit("POST", "/api/v1/login/", 401, form=(("username", "nobody"), ("password", "x"))),
    # Readiness fails (the "slow" check hangs), the full report too.
    Hit("GET", "/health/ready/", 503),
    Hit("GET", "/health/ready/", 503),
    Hit("GET", "/health/ready/", 503),
    Hit("GET", "/health/", 503),
    Hit("GET", "/health/", 503),
)


def send(base_url: str, hit: Hit) -> int:
    if hit.form is not None:
        return post_form(base_url + hit.path, dict(hit.form))
    headers = {"Host": hit.host} if hit.host else {}
    return http(base_url + hit.path, hit.method, headers).status


def send_round(base_url: str, number: int) -> int:
    """One round of traffic; returns how many requests the metrics count."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda h: send(base_url, h), ROUND))
    wrong = [(h.method, h.path, h.status, s) for h, s in zip(ROUND, statuses) if h.status != s]
    assert not wrong, f"unexpected statuses (method, path, expected, got): {wrong}"
    # In order: audited creations; the second "dup" group is an IntegrityError
    # (a 500, a database error), and so is the one of the next round.
    groups = [(f"team-{number}", 201), *([("dup", 201)] if number == 1 else []), ("dup", 500)]
    for name, expected in groups:
        assert post_form(base_url + "/api/v1/groups/", {"name": name}) == expected, name
    return sum(h.counted for h in ROUND) + len(groups)


def prometheus_get(base_url: str, path: str, params: dict[str, Any]) -> tuple[int, dict]:
    resp = http(f"{base_url}{path}?{urllib.parse.urlencode(params, doseq=True)}")
    return resp.status, resp.json()


def instant(base_url: str, expr: str) -> list[dict[str, Any]]:
    status, payload = prometheus_get(base_url, "/api/v1/query", {"query": expr})
    assert status == 200, (expr, status, payload)
    assert payload.get("status") == "success", (expr, payload)
    return payload["data"]["result"]


@dataclass
class Stack:
    app: Server
    worker: CeleryWorker
    prometheus: Server
    target: str  # host:port Prometheus scrapes for the web servers
    worker_target: str  # host:port of the worker's /metrics
    redis: Redis  # the default cache's server


def start_prometheus(workdir: Path, jobs: dict[str, str]) -> Server:
    """A real Prometheus scraping each target every second, under its job (name -> host:port)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in jobs.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    return run_prometheus(workdir, workdir / "prometheus.yml")


def send_reports(base_url: str) -> int:
    """One report of each kind, enqueued through gunicorn (POST /api/v1/reports/?kind=...);
    returns how many requests the metrics count."""
    with ThreadPoolExecutor(max_workers=len(KINDS)) as pool:
        list(pool.map(lambda kind: post_report(base_url, kind), KINDS))
    return len(KINDS)


@pytest.fixture(scope="module")
def stack_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """The Redis server of the stack's default cache (stopped after the stack)."""
    with running_redis(tmp_path_factory.mktemp("dashboards-redis")) as redis:
        yield redis


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_redis: Redis) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("dashboards")
    worker_port = free_port()
    # The example's environment with its broker folder, beat every second and the
    # worker's metrics port (what tests/test_peers_example_worker.py runs).
    env = project_env(workdir, workdir / "db.sqlite3", worker_port)
    app = make_gunicorn("dash-gunicorn", workdir, env, workers=2, worker_class="gthread", threads=4)
    # The upstream view calls this gunicorn's own echo view: with two workers of four
    # threads, a call never waits for the thread that makes it. The default cache is on
    # the private Redis: the cached view's reads and writes (and the readiness check's
    # probe) are Redis commands; the worker keeps the example's memory cache.
    app.env.update(
        EXAMPLE_SLOW_CHECK_SECONDS="30",
        EXAMPLE_INVENTORY_DEGRADED="1",
        EXAMPLE_UPSTREAM_URL=app.url + "/api/v1/echo/",
        EXAMPLE_REDIS_URL=stack_redis.url,
    )
    target = urllib.parse.urlsplit(app.url).netloc
    worker_target = f"127.0.0.1:{worker_port}"
    worker_env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(workdir / "worker-multiproc"))
    worker = CeleryWorker("example", workdir, worker_env, extra=["--beat"], cwd=EXAMPLE_DIR)

    # Prometheus first: its first scrape comes 5-6 s after it starts, meanwhile
    # the database is migrated and the app and the worker start.
    prometheus = start_prometheus(workdir / "prometheus", {JOB: target, WORKER_JOB: worker_target})
    try:
        migrated = manage(env, "migrate", "--noinput")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        user = manage(
            {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
            "createsuperuser", "--noinput", "--username", USERNAME, "--email", "a@example.org",
        )  # fmt: skip
        assert user.returncode == 0, user.stdout + user.stderr
        app.start()
        worker.start()
        app.wait_ready("/health/live/")
        worker.wait_ready()
        prometheus.wait_ready("/-/ready")

        def seen_by_prometheus(expected: float) -> bool:
            result = instant(
                prometheus.url, f'sum({REQUEST_DURATION}_count{{job="{JOB}"}}) >= {expected}'
            )
            return bool(result)

        def runs_seen_by_prometheus(expected: float) -> bool:
            """Every (task, outcome) of the reports counted ``expected`` times, and beat's entry."""
            finished = instant(prometheus.url, f'tasks_finished_total{{job="{WORKER_JOB}"}}')
            counted = {
                (s["metric"]["task"], s["metric"]["outcome"])
                for s in finished
                if float(s["value"][1]) >= expected
            }
            succeeded = instant(prometheus.url, f'{SCHEDULED_JOB_METRIC}{{job="{WORKER_JOB}"}}')
            entries = {s["metric"].get("exported_job") for s in succeeded}
            return counted >= TASK_RUNS and BEAT_ENTRY in entries

        sent = 0
        for number in (1, 2):
            sent += send_reports(app.url) + send_round(app.url, number)
            # Every request is in /metrics, then in Prometheus (a scrape between rounds);
            # so is every task run of this round's reports.
            assert wait_for(lambda: total(scrape(app.url), f"{REQUEST_DURATION}_count") >= sent, 15)
            assert wait_for(lambda: seen_by_prometheus(sent), 20), prometheus.log_tail()
            assert wait_for(lambda: runs_seen_by_prometheus(number), 20), worker.log_tail()
        yield Stack(app, worker, prometheus, target, worker_target, stack_redis)
    finally:
        try:
            # Both take a moment to stop gracefully (gunicorn's workers, Celery's warm
            # shutdown): at the same time.
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(lambda program: program.stop(), (app, worker)))
        finally:
            prometheus.stop()


def _has_number(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(series["value"][1])) for series in result)


@pytest.mark.peers
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_panel_query_returns_data(stack: Stack, query: Query):
    job = JOB_OF.get(query.dashboard, JOB)
    expr = substitute(query.expr, variable_values(query.variables, job=job))
    status, payload = prometheus_get(stack.prometheus.url, "/api/v1/query", {"query": expr})
    assert status == 200, f"{query.id}: Prometheus refused {expr!r}: {payload}"
    assert payload["status"] == "success", payload
    result = payload["data"]["result"]
    if (query.dashboard, query.panel) in WITHOUT_DATA_HERE:
        # Still true? A panel that shows data here needs no exemption.
        assert not result, f"{query.id} has data: drop it from WITHOUT_DATA_HERE"
        return
    assert result, f"{query.id}: no data for {expr}"
    assert _has_number(result), f"{query.id}: only NaN for {expr}: {result}"


@pytest.mark.peers
def test_outgoing_error_ratio_shows_the_failed_call(stack: Stack):
    """Above 0: the upstream call answered 503 is counted as failed, not only the 0 that
    the panel gives a host without errors."""
    [query] = [q for q in QUERIES if q.panel == "Outgoing error ratio by host"]
    result = instant(stack.prometheus.url, substitute(query.expr, variable_values(query.variables)))
    assert {series["metric"]["server_address"] for series in result} == {"127.0.0.1"}, result
    assert all(float(series["value"][1]) > 0 for series in result), result


@pytest.mark.peers
def test_redis_panels_show_the_cache_commands(stack: Stack):
    """The cached view's reads and writes are GETs and SETs sent to the stack's Redis, none
    failed: the error ratio panel shows 0 for the server, not no data."""

    def result_of(title: str) -> list[dict[str, Any]]:
        [query] = [q for q in QUERIES if q.panel == title]
        return instant(
            stack.prometheus.url, substitute(query.expr, variable_values(query.variables))
        )

    commands = result_of("Redis commands by operation and result")
    seen = {(s["metric"]["operation"], s["metric"]["result"]) for s in commands}
    assert {("GET", "ok"), ("SET", "ok")} <= seen, seen
    assert all(result == "ok" for _, result in seen), seen
    ratio = result_of("Redis error ratio by server")
    assert [(s["metric"]["server_address"], float(s["value"][1])) for s in ratio] == [
        ("127.0.0.1", 0.0)
    ], ratio


@pytest.mark.peers
def test_route_variable_as_grafana_escapes_it(stack: Stack):
    """Two routes picked in the multi-value variable, one with regex characters."""
    [query] = [q for q in QUERIES if q.panel == "Request rate by route"]
    route = "(" + "|".join(grafana_regex_escape(r) for r in (ARCHIVE, ITEM)) + ")"
    expr = substitute(query.expr, variable_values(query.variables, route=route))
    result = instant(stack.prometheus.url, expr)
    assert {series["metric"]["route"] for series in result} == {ARCHIVE, ITEM}, expr
    assert all(float(series["value"][1]) > 0 for series in result), result


@pytest.mark.peers
def test_variable_queries_list_values(stack: Stack):
    """Each query variable's label_values() gives the values the panels need."""
    expected = {
        "job": {JOB, WORKER_JOB},
        "instance": {stack.target, stack.worker_target},
        "route": {ARCHIVE, ITEM, "/boom/", "<unmatched>", "/api/v1/login/"},
        "task": {task for task, _ in TASK_RUNS},
        "alias": {"default"},  # CACHES
        "server_address": {"127.0.0.1"},  # the upstream view's calls to the echo view
        "redis_server": {"127.0.0.1"},  # the default cache's Redis
        "db_alias": {"default"},  # DATABASES
    }
    seen: dict[str, set[str]] = collections.defaultdict(set)
    for name, dash in load_dashboards().items():
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"])
            assert match, var["definition"]
            selector = substitute(match.group(1), {"job": JOB_OF.get(name, JOB)})
            status, payload = prometheus_get(
                stack.prometheus.url,
                f"/api/v1/label/{match.group(2)}/values",
                {"match[]": selector, "start": time.time() - 600, "end": time.time()},
            )
            assert status == 200, payload
            seen[var["name"]].update(payload["data"])
    for name, values in expected.items():
        assert values <= seen[name], (name, seen[name])
