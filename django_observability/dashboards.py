"""The six Grafana dashboards, as Grafana's JSON (default, empty metrics namespace).

Every panel uses the same datasource variable, the same label selectors and
``$__rate_interval``. ``manage.py observability_assets`` writes them with the
project's namespace (:mod:`django_observability.deploy_assets` prefixes the
metric names); ``deploy/grafana/dashboards/`` is what it writes for the example
project. ``tests/test_deploy_dashboards.py`` runs every panel query against a
real Prometheus that scraped the example project.
"""

from __future__ import annotations

import json
from typing import Any

SCHEMA_VERSION = 39
TAG = "django-observability"
DS = {"type": "prometheus", "uid": "${datasource}"}

# Label selectors every panel narrows by (job: one Django service; instance: its hosts).
SEL = 'job="$job", instance=~"$instance"'
ROUTE_SEL = SEL + ', route=~"$route"'
RATE = "[$__rate_interval]"

REQ = "http_server_request_duration_seconds"
SIZE = "http_server_response_body_size_bytes"
DB = "db_client_operation_duration_seconds"
STORE = "django_observability_metrics_store"

# Thresholds of the metrics store alerts (assets/prometheus/rules/alerts.yml).
STORE_LOW_SPACE_BYTES = 32 * 1024 * 1024
STORE_TOO_MANY_FILES = 1000


# --- variables -------------------------------------------------------------------


def datasource_var() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_var(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool,
    description: str,
) -> dict[str, Any]:
    var: dict[str, Any] = {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {},
        "hide": 0,
        "includeAll": multi,
        "multi": multi,
        "options": [],
        "refresh": 2,  # on time range change: new hosts and routes show up
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }
    if multi:
        # "All" is the regex .* (not the list of values: that list can be long).
        var["allValue"] = ".*"
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return var


def custom_var(
    name: str, label: str, values: list[str], default: str, description: str
) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "custom",
        "query": ",".join(values),
        "current": {"selected": True, "text": default, "value": default},
        "options": [
            {"selected": value == default, "text": value, "value": value} for value in values
        ],
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "skipUrlSync": False,
    }


def job_var() -> dict[str, Any]:
    return query_var(
        "job",
        "Job",
        "label_values(django_observability_build_info, job)",
        multi=False,
        description="The Prometheus job that scrapes the Django service (one service at a time).",
    )


def instance_var() -> dict[str, Any]:
    return query_var(
        "instance",
        "Instance",
        'label_values(django_observability_build_info{job="$job"}, instance)',
        multi=True,
        description="Scrape targets (one per gunicorn/uvicorn host) of the job.",
    )


def route_var() -> dict[str, Any]:
    return query_var(
        "route",
        "Route",
        f'label_values({REQ}_count{{job="$job"}}, route)',
        multi=True,
        description=(
            "URL patterns as the route label spells them (`/api/v1/items/<int:pk>/`); "
            "`<unmatched>` is every request that never reached a view."
        ),
    )


# Bucket bounds as prometheus_client renders them (le="0.5"), for the latency objective.
LATENCY_LE = ["0.1", "0.25", "0.5", "1.0", "2.5"]
DEFAULT_LATENCY_THRESHOLD = "0.5"


def le_var(threshold: str) -> dict[str, Any]:
    values = sorted({*LATENCY_LE, threshold}, key=float)
    return custom_var(
        "latency_le",
        "Latency objective (s)",
        values,
        threshold,
        "Bucket bound of the latency objective, spelled as prometheus_client renders it "
        "(a value of OBSERVABILITY_METRICS_LATENCY_BUCKETS). Keep it equal to the "
        "latency SLO of the Prometheus rules.",
    )


# --- panels ----------------------------------------------------------------------


def target(
    expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table: bool = False
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "editorMode": "code",
    }
    if table:
        t["format"] = "table"
    return t


def targets(*specs: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(specs)]


def panel(
    kind: str,
    title: str,
    question: str,
    tgts: list[dict[str, Any]],
    *,
    w: int,
    h: int = 8,
    unit: str = "short",
    extra_description: str = "",
    defaults: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    alert_line: float | None = None,
) -> dict[str, Any]:
    description = f"Answers: {question}"
    if extra_description:
        description += " " + extra_description
    field_defaults: dict[str, Any] = {"unit": unit}
    if kind == "timeseries":
        field_defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
        }
    if alert_line is not None:
        # The alert's threshold, drawn as a dashed red line.
        field_defaults["custom"]["thresholdsStyle"] = {"mode": "dashed"}
        field_defaults.update(thresholds((None, "transparent"), (alert_line, "red")))
    field_defaults.update(defaults or {})
    p: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
        "targets": tgts,
    }
    if kind == "timeseries" and not options:
        p["options"] = {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if kind == "stat" and not options:
        p["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    return p


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"h": 1}}


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps],
        }
    }


def value_mappings(*items: tuple[float, str, str]) -> dict[str, Any]:
    return {
        "mappings": [
            {
                "type": "value",
                "options": {
                    str(value): {"text": text, "color": color, "index": i}
                    for i, (value, text, color) in enumerate(items)
                },
            }
        ]
    }


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Left to right, top to bottom on Grafana's 24-column grid; ids 1, 2, ..."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        w, h = (24, 1) if p["type"] == "row" else (p["gridPos"]["w"], p["gridPos"]["h"])
        if p["type"] == "row" or x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x += w
        row_h = max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + 1, 0
    return panels


def dashboard(
    uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG, "django"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": True,
                "title": "Django dashboards",
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": [datasource_var(), *variables]},
        "panels": layout(panels),
    }


def quantile(q: str, metric: str, by: str, sel: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{sel}}}{RATE})))"


# --- the six dashboards ------------------------------------------------------------


def overview(latency_threshold: str = DEFAULT_LATENCY_THRESHOLD) -> dict[str, Any]:
    count = f"{REQ}_count"
    panels = [
        row("Now"),
        panel(
            "stat",
            "Targets up",
            "are all scrape targets of this job answering /metrics?",
            targets((f"sum(up{{{SEL}}})", "up"), (f"count(up{{{SEL}}})", "scraped")),
            w=4,
            extra_description="'up' below 'scraped' means a host is down or /metrics refuses "
            "Prometheus (wrong token): alert DjangoTargetDown points here.",
        ),
        panel(
            "stat",
            "Request rate",
            "how many requests per second are the selected routes serving?",
            [target(f"sum(rate({count}{{{ROUTE_SEL}}}{RATE}))", "req/s")],
            w=5,
            unit="reqps",
        ),
        panel(
            "stat",
            "5xx ratio",
            "what share of requests end in a server error (5xx)?",
            [
                target(
                    f'(sum(rate({count}{{{ROUTE_SEL}, status=~"5.."}}{RATE})) or vector(0))'
                    f" / sum(rate({count}{{{ROUTE_SEL}}}{RATE}))",
                    "5xx / all",
                )
            ],
            w=5,
            unit="percentunit",
            defaults=thresholds((None, "green"), (0.01, "orange"), (0.05, "red")),
            extra_description="Over all selected routes; the availability SLO alert "
            "DjangoAvailabilityBudgetBurn fires when this ratio burns the error budget too fast.",
        ),
        panel(
            "stat",
            "Latency p95",
            "how long do 95% of requests to the selected routes take at most?",
            [target(quantile("0.95", REQ, "job", ROUTE_SEL), "p95")],
            w=5,
            unit="s",
            defaults=thresholds((None, "green"), (0.5, "orange"), (1, "red")),
        ),
        panel(
            "stat",
            "Within latency objective",
            "what share of requests finish within the latency objective ($latency_le s)?",
            [
                target(
                    f'sum(rate({REQ}_bucket{{{ROUTE_SEL}, le="$latency_le"}}{RATE}))'
                    f" / sum(rate({count}{{{ROUTE_SEL}}}{RATE}))",
                    "fast / all",
                )
            ],
            w=5,
            unit="percentunit",
            defaults={"decimals": 2},
            extra_description="The latency SLO alert DjangoLatencyBudgetBurn watches the rest "
            "(requests slower than the objective); the objective is a bucket bound, chosen in "
            "the variable above (the Prometheus rules use the same bound).",
        ),
        row("Traffic and errors by route"),
        panel(
            "timeseries",
            "Request rate by route",
            "which routes get how many requests per second?",
            [target(f"sum by (route) (rate({count}{{{ROUTE_SEL}}}{RATE}))", "{{route}}")],
            w=12,
            unit="reqps",
        ),
        panel(
            "timeseries",
            "Responses by status",
            "which status codes are the selected routes answering with?",
            [target(f"sum by (status) (rate({count}{{{ROUTE_SEL}}}{RATE}))", "{{status}}")],
            w=12,
            unit="reqps",
        ),
        panel(
            "timeseries",
            "5xx ratio by route",
            "which routes fail, and for what share of their requests?",
            [
                target(
                    f'sum by (route) (rate({count}{{{ROUTE_SEL}, status=~"5.."}}{RATE}))'
                    f" / sum by (route) (rate({count}{{{ROUTE_SEL}}}{RATE}))",
                    "{{route}}",
                )
            ],
            w=12,
            unit="percentunit",
            alert_line=0.05,
            extra_description="Only routes that had a 5xx in the window appear. Alert "
            "DjangoHighErrorRatio fires above 5% (dashed line) for 10 minutes.",
        ),
        panel(
            "timeseries",
            "Exceptions by class",
            "which exception classes turn into 500 responses, and on which routes?",
            [
                target(
                    "sum by (exception, route) "
                    f"(rate(http_server_exceptions_total{{{ROUTE_SEL}}}{RATE}))",
                    "{{exception}} on {{route}}",
                )
            ],
            w=12,
            unit="ops",
            extra_description="The class names are capped (OBSERVABILITY_METRICS_LABEL_CAP); "
            "'_other' is every class past the cap. Find the tracebacks in the logs: "
            '{service_name="..."} | json | error_type="<class>".',
        ),
        panel(
            "timeseries",
            "Client errors (4xx) by route",
            "which routes answer 4xx (not found, refused, bad requests), and how often?",
            [
                target(
                    f'sum by (route, status) (rate({count}{{{ROUTE_SEL}, status=~"4.."}}{RATE}))',
                    "{{status}} {{route}}",
                )
            ],
            w=24,
            unit="reqps",
            extra_description="404s from the URL resolver are on route <unmatched>; an Http404 "
            "raised in a view keeps its route.",
        ),
        row("Latency and size"),
        panel(
            "timeseries",
            "Latency p50 / p95 / p99 by route",
            "how long do requests to each route take (median, 95th and 99th percentile)?",
            targets(
                (quantile("0.5", REQ, "route", ROUTE_SEL), "p50 {{route}}"),
                (quantile("0.95", REQ, "route", ROUTE_SEL), "p95 {{route}}"),
                (quantile("0.99", REQ, "route", ROUTE_SEL), "p99 {{route}}"),
            ),
            w=24,
            h=10,
            unit="s",
            alert_line=1.0,
            extra_description="Estimated from the histogram buckets (linear interpolation "
            "inside a bucket). Alert DjangoHighLatency fires when a route's p95 stays above "
            "1 s (dashed line) for 10 minutes.",
        ),
        panel(
            "timeseries",
            "In-flight requests by method",
            "how many requests are being served right now (queueing, slow dependencies)?",
            [
                target(
                    f"sum by (method) (http_server_active_requests{{{SEL}}})",
                    "{{method}}",
                )
            ],
            w=12,
            extra_description="Summed over workers. Compare with workers x threads: when they "
            "are all busy, new requests queue in front of the server.",
        ),
        panel(
            "timeseries",
            "Response body size p95 by route",
            "how large are the responses of each route (95th percentile)?",
            [target(quantile("0.95", SIZE, "route", ROUTE_SEL), "{{route}}")],
            w=12,
            unit="bytes",
        ),
    ]
    return dashboard(
        "django-overview",
        "Django overview",
        "Requests of a Django service by route: rate, errors, latency, in-flight, sizes "
        "(django-observability).",
        [job_var(), instance_var(), route_var(), le_var(latency_threshold)],
        panels,
    )


def health() -> dict[str, Any]:
    status_mappings = value_mappings(
        (1, "pass", "green"), (0.5, "warn", "yellow"), (0, "fail", "red")
    )
    panels = [
        panel(
            "stat",
            "Ready",
            "does every instance pass its readiness checks right now?",
            [target(f"min(health_ready{{{SEL}}})", "ready")],
            w=6,
            defaults={
                **value_mappings((1, "READY", "green"), (0, "NOT READY", "red")),
                **thresholds((None, "red"), (1, "green")),
            },
            extra_description="The minimum over instances and their workers (1 pass or warn, "
            "0 fail). Alert DjangoNotReady points here.",
        ),
        panel(
            "stat",
            "Checks not passing",
            "how many checks are failing or warning right now?",
            [target(f"count(min by (check) (health_check_status{{{SEL}}}) < 1) or vector(0)")],
            w=6,
            defaults=thresholds((None, "green"), (1, "orange")),
            extra_description="Alerts DjangoHealthCheckFailing (fail for 5 minutes) and "
            "DjangoHealthCheckDegraded (warn for 30 minutes) point here; which checks: below.",
        ),
        panel(
            "bargauge",
            "Slowest checks now",
            "which checks take longest (latest run)?",
            [
                target(
                    f"max by (check) (health_check_duration_seconds{{{SEL}}})",
                    "{{check}}",
                    instant=True,
                )
            ],
            w=12,
            unit="s",
            defaults=thresholds((None, "green"), (0.25, "orange"), (0.5, "red")),
            options={
                "orientation": "horizontal",
                "displayMode": "gradient",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
            },
            extra_description="A check at OBSERVABILITY_HEALTH_TIMEOUT (0.5 s in the example) "
            "timed out, and counts as failed.",
        ),
        panel(
            "state-timeline",
            "Readiness by instance",
            "when was each instance ready or not ready?",
            [target(f"min by (instance) (health_ready{{{SEL}}})", "{{instance}}")],
            w=24,
            h=6,
            defaults={
                **value_mappings((1, "ready", "green"), (0, "not ready", "red")),
                "color": {"mode": "thresholds"},
                **thresholds((None, "red"), (1, "green")),
            },
            options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
        ),
        panel(
            "state-timeline",
            "Status of each check",
            "which checks passed, warned or failed, and when?",
            [target(f"min by (check) (health_check_status{{{SEL}}})", "{{check}}")],
            w=24,
            h=9,
            defaults={
                **status_mappings,
                "color": {"mode": "thresholds"},
                **thresholds((None, "red"), (0.5, "yellow"), (1, "green")),
            },
            options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
            extra_description="The worst instance per check (1 pass, 0.5 warn, 0 fail). A "
            "check only reports when a probe or the full report runs it. Alerts "
            "DjangoHealthCheckFailing and DjangoHealthCheckDegraded name the check.",
        ),
        panel(
            "timeseries",
            "Check duration by check",
            "how long does each check take, and is one getting close to its timeout?",
            [
                target(
                    f"max by (check) (health_check_duration_seconds{{{SEL}}})",
                    "{{check}}",
                )
            ],
            w=24,
            unit="s",
            extra_description="Duration of the latest run, the slowest instance per check.",
        ),
    ]
    return dashboard(
        "django-health",
        "Django health",
        "Readiness and every health check of a Django service (django-observability).",
        [job_var(), instance_var()],
        panels,
    )


def auth_security() -> dict[str, Any]:
    auth = "auth_events_total"
    panels = [
        panel(
            "stat",
            "Failed logins",
            "how many logins failed in the selected time range?",
            [
                target(
                    f'sum(increase({auth}{{{SEL}, event="login_failed"}}[$__range])) or vector(0)',
                    instant=True,
                )
            ],
            w=8,
            defaults={"decimals": 0, **thresholds((None, "green"), (20, "orange"), (100, "red"))},
            extra_description="Alert DjangoFailedLoginSpike (over 0.5 failed logins per second "
            "for 5 minutes) points here.",
        ),
        panel(
            "stat",
            "Security events",
            "how many security events (refused hosts, CSRF failures, ...) happened in "
            "the time range?",
            [
                target(
                    f"sum(increase(security_events_total{{{SEL}}}[$__range])) or vector(0)",
                    instant=True,
                )
            ],
            w=8,
            defaults={"decimals": 0, **thresholds((None, "green"), (10, "orange"), (100, "red"))},
            extra_description="Alert DjangoSecurityEventSpike points here; which types: below.",
        ),
        panel(
            "stat",
            "Audited changes",
            "how many audited actions happened in the time range?",
            [
                target(
                    f"sum(increase(audit_events_total{{{SEL}}}[$__range])) or vector(0)",
                    instant=True,
                )
            ],
            w=8,
            defaults={"decimals": 0},
        ),
        panel(
            "timeseries",
            "Auth events by event",
            "how many logins, logouts and failed logins per second?",
            [target(f"sum by (event) (rate({auth}{{{SEL}}}{RATE}))", "{{event}}")],
            w=12,
            unit="ops",
            extra_description="Alert DjangoFailedLoginSpike fires when login_failed stays "
            "above 0.5 per second for 5 minutes.",
        ),
        panel(
            "timeseries",
            "Failed login share",
            "what share of login attempts fail (password guessing, broken login form)?",
            [
                target(
                    f'sum(rate({auth}{{{SEL}, event="login_failed"}}{RATE}))'
                    f' / sum(rate({auth}{{{SEL}, event=~"login|login_failed"}}{RATE}))',
                    "failed / attempts",
                )
            ],
            w=12,
            unit="percentunit",
            extra_description="Usernames are not labels; the audit log records the failures "
            '({logger="django_observability.audit"} in Loki).',
        ),
        panel(
            "timeseries",
            "Security events by type",
            "which kinds of security events happen (disallowed_host, csrf_failure, ...)?",
            [target(f"sum by (type) (rate(security_events_total{{{SEL}}}{RATE}))", "{{type}}")],
            w=12,
            unit="ops",
            alert_line=0.2,
            extra_description="From Django's own django.security.* loggers and signals; custom "
            "types are capped, with '_other' past the cap. Alert DjangoSecurityEventSpike fires "
            "when one type stays above 0.2 per second (dashed line) for 5 minutes.",
        ),
        panel(
            "timeseries",
            "Refused requests (401/403) by route",
            "which routes refuse callers (not authenticated, permission denied, CSRF), "
            "and how often?",
            [
                target(
                    f'sum by (route, status) (rate({REQ}_count{{{SEL}, status=~"401|403"}}{RATE}))',
                    "{{status}} {{route}}",
                )
            ],
            w=12,
            unit="reqps",
        ),
        panel(
            "timeseries",
            "Audit events by action and target",
            "which audited actions happen on which models, and how often?",
            [
                target(
                    f"sum by (action, target) (rate(audit_events_total{{{SEL}}}{RATE}))",
                    "{{action}} {{target}}",
                )
            ],
            w=12,
            unit="ops",
            extra_description="create/update/delete of OBSERVABILITY_AUDIT_MODELS and your "
            "record_event() calls (capped).",
        ),
        panel(
            "table",
            "Audit events in the time range",
            "how many times did each audited action happen on each model in the time range?",
            [
                target(
                    "sort_desc(sum by (action, target) "
                    f"(increase(audit_events_total{{{SEL}}}[$__range])))",
                    instant=True,
                    table=True,
                )
            ],
            w=12,
            defaults={"decimals": 0},
            options={"showHeader": True, "cellHeight": "sm"},
            overrides=[],
        ),
    ]
    return dashboard(
        "django-auth-security",
        "Django auth & security",
        "Logins, failed logins, security events and audited changes of a Django service "
        "(django-observability).",
        [job_var(), instance_var()],
        panels,
    )


def process_db() -> dict[str, Any]:
    per_worker = "{{instance}} pid {{pid}}"
    panels = [
        row("Workers"),
        panel(
            "stat",
            "Worker processes",
            "how many worker processes report metrics right now?",
            [target(f"count(django_process_resident_memory_bytes{{{SEL}}})", "workers")],
            w=6,
            extra_description="One series per live worker (pid label) in multiprocess mode.",
        ),
        panel(
            "table",
            "Build info",
            "which versions of the service, django-observability, Django and Python run where?",
            [
                target(
                    "max by (instance, service_version, version, django_version, python_version) "
                    f"(django_observability_build_info{{{SEL}}})",
                    instant=True,
                    table=True,
                )
            ],
            w=18,
            options={"showHeader": True, "cellHeight": "sm"},
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "Value"},
                    "properties": [{"id": "custom.hidden", "value": True}],
                },
                {
                    "matcher": {"id": "byName", "options": "Time"},
                    "properties": [{"id": "custom.hidden", "value": True}],
                },
            ],
        ),
        panel(
            "timeseries",
            "Resident memory per worker",
            "how much memory does each worker use, and does it keep growing (a leak)?",
            [target(f"django_process_resident_memory_bytes{{{SEL}}}", per_worker)],
            w=12,
            unit="bytes",
        ),
        panel(
            "timeseries",
            "CPU per worker",
            "how busy is each worker's CPU (1 = one core)?",
            [target(f"rate(django_process_cpu_seconds{{{SEL}}}{RATE})", per_worker)],
            w=12,
            unit="short",
            extra_description="A worker refreshes its figure when it serves a scrape and at most "
            "every 10 s while it serves requests.",
        ),
        panel(
            "timeseries",
            "Open file descriptors per worker",
            "is a worker leaking file descriptors or connections?",
            [target(f"django_process_open_fds{{{SEL}}}", per_worker)],
            w=12,
        ),
        panel(
            "timeseries",
            "Threads per worker",
            "how many threads does each worker run (gthread pools, hung health checks)?",
            [target(f"django_process_threads{{{SEL}}}", per_worker)],
            w=12,
        ),
        row("Metrics store"),
        panel(
            "state-timeline",
            "Metrics store writable by instance",
            "can the workers of each instance still store their metrics?",
            [target(f"min by (instance) ({STORE}_writable{{{SEL}}})", "{{instance}}")],
            w=24,
            h=6,
            defaults={
                **value_mappings((1, "writable", "green"), (0, "cannot write", "red")),
                "color": {"mode": "thresholds"},
                **thresholds((None, "red"), (1, "green")),
            },
            options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
            extra_description="Multiprocess mode only (PROMETHEUS_MULTIPROC_DIR), computed at "
            "each scrape by the worker that answers it: 'cannot write' means no file could be "
            "made there with its space reserved (full, read-only or missing) or that worker "
            "holds values it could not store. Requests are still served and the values wait "
            "in the workers' memory, so counters look flat until they are written. Alert "
            "DjangoMetricsStoreNotWritable fires after 5 minutes of 'cannot write'.",
        ),
        panel(
            "timeseries",
            "Metrics store free space",
            "how much room is left on the file system of each instance's metrics store?",
            [target(f"{STORE}_free_bytes{{{SEL}}}", "{{instance}}")],
            w=8,
            unit="bytes",
            alert_line=STORE_LOW_SPACE_BYTES,
            extra_description="Shared with everything else on that file system (/dev/shm: "
            "64 MiB by default in Docker). Alert DjangoMetricsStoreLowSpace fires below "
            "32 MiB (dashed line) for 10 minutes; the metrics_store health check warns "
            "below 16 MiB.",
        ),
        panel(
            "timeseries",
            "Metrics store files",
            "is the number of files in each instance's metrics store bounded?",
            [target(f"{STORE}_files{{{SEL}}}", "{{instance}}")],
            w=8,
            alert_line=STORE_TOO_MANY_FILES,
            extra_description="A few per live worker plus one archive per kind: a level line "
            "means exited workers are compacted (gunicorn's child_exit hook, or each scrape); "
            "a line that keeps growing means their files pile up and every scrape reads "
            "them all. Alert DjangoMetricsStoreTooManyFiles fires above 1000 (dashed line) "
            "for 30 minutes.",
        ),
        panel(
            "timeseries",
            "Metrics store size",
            "how much space does each instance's metrics store take, and does it keep growing?",
            [target(f"{STORE}_size_bytes{{{SEL}}}", "{{instance}}")],
            w=8,
            unit="bytes",
            extra_description="Space allocated on the file system (every file reserves its "
            "space, 64 KiB at least). It grows with the number of series and steps up when "
            "a file doubles; a steady climb with steady traffic is files piling up "
            "(Metrics store files).",
        ),
        row("Database"),
        panel(
            "timeseries",
            "Queries per second by alias and operation",
            "how many database queries per second, of which kind, on which connection?",
            [
                target(
                    f"sum by (alias, operation) (rate({DB}_count{{{SEL}}}{RATE}))",
                    "{{alias}} {{operation}}",
                )
            ],
            w=12,
            unit="ops",
        ),
        panel(
            "timeseries",
            "Query latency p95 by alias and operation",
            "how long do 95% of the database queries take, per connection and kind?",
            [quantile_target("0.95", DB, "alias, operation", SEL, "{{alias}} {{operation}}")],
            w=12,
            unit="s",
        ),
        panel(
            "timeseries",
            "Database errors by alias and error",
            "which database errors happen (integrity, operational, ...) and how often?",
            [
                target(
                    f"sum by (alias, error) (rate(db_client_errors_total{{{SEL}}}{RATE}))",
                    "{{alias}} {{error}}",
                )
            ],
            w=12,
            unit="ops",
            alert_line=0.1,
            extra_description="Exception class names, capped like the exception label. Alert "
            "DjangoDatabaseErrors fires when an alias stays above 0.1 errors per second "
            "(dashed line) for 5 minutes.",
        ),
        panel(
            "timeseries",
            "Queries per request",
            "how many database queries does an average request make (N+1 queries)?",
            [
                target(
                    f"sum(rate({DB}_count{{{SEL}}}{RATE})) / sum(rate({REQ}_count{{{SEL}}}{RATE}))",
                    "queries / request",
                )
            ],
            w=12,
            extra_description="Queries outside requests (management commands in the same "
            "process, health checks) count too.",
        ),
    ]
    return dashboard(
        "django-process-db",
        "Django process & database",
        "Worker processes (memory, CPU, file descriptors, threads), their metrics store, "
        "database queries and what is running (django-observability).",
        [job_var(), instance_var()],
        panels,
    )


# Background tasks: narrowed by the task variable too.
TASK_SEL = SEL + ', task=~"$task"'
# Thresholds of the task and job alerts (assets/prometheus/rules/alerts.yml).
TASK_FAILURE_RATIO = 0.1
TASK_QUEUE_WAIT_SECONDS = 60
JOB_LATE_INTERVALS = 1.5


def task_var() -> dict[str, Any]:
    return query_var(
        "task",
        "Task",
        'label_values(tasks_finished_total{job="$job"}, task)',
        multi=True,
        description="Registered task names (`shop.tasks.send_report`); `_other` past the cap.",
    )


def scheduled(metric: str) -> str:
    """A scheduled job's gauge, one series per job named in ``job``.

    Not narrowed by the dashboard's job: the series come from the Pushgateway
    (``job`` is the scheduled job's name) or from a worker (the scheduled job's
    name in ``exported_job``, as the recording rules of ``django-jobs`` read it).
    """
    return f'max by (job) (label_replace({metric}{{}}, "job", "$1", "exported_job", "(.+)"))'


def tasks() -> dict[str, Any]:
    finished = "tasks_finished_total"
    last_success = scheduled("job_last_success_timestamp_seconds")
    interval = scheduled("job_expected_interval_seconds")
    panels = [
        row("Throughput and failures"),
        panel(
            "timeseries",
            "Task runs by outcome",
            "how many task runs end each second, and how?",
            [target(f"sum by (outcome) (rate({finished}{{{TASK_SEL}}}{RATE}))", "{{outcome}}")],
            w=12,
            unit="ops",
            extra_description="A retry is a run that asked to run again (a new message); "
            "revoked runs were revoked, expired or terminated.",
        ),
        panel(
            "timeseries",
            "Failure ratio by task",
            "which tasks fail, and how often?",
            [
                target(
                    f'sum by (task) (rate({finished}{{{TASK_SEL}, outcome="failure"}}{RATE}))'
                    f" / sum by (task) (rate({finished}{{{TASK_SEL}}}{RATE}))",
                    "{{task}}",
                )
            ],
            w=12,
            unit="percentunit",
            alert_line=TASK_FAILURE_RATIO,
            extra_description="Failed runs over all runs of each task. Alert "
            "DjangoTaskFailureRatio (above 10% for 10 minutes) points here.",
        ),
        panel(
            "timeseries",
            "Enqueued by task",
            "how many tasks are sent each second, by task?",
            [target(f"sum by (task) (rate(tasks_enqueued_total{{{TASK_SEL}}}{RATE}))", "{{task}}")],
            w=12,
            unit="ops",
            extra_description="Counted by the process that sent them (web workers, and the "
            "worker for retries) when it scrapes under the same job.",
        ),
        panel(
            "timeseries",
            "Running now by task",
            "how many tasks are running right now, by task?",
            [target(f"sum by (task) (tasks_active{{{TASK_SEL}}})", "{{task}}")],
            w=12,
        ),
        row("Time"),
        panel(
            "timeseries",
            "Queue wait p95 by task",
            "how long do tasks wait in their queue before a worker starts them?",
            [quantile_target("0.95", "task_queue_wait_seconds", "task", TASK_SEL, "{{task}}")],
            w=12,
            unit="s",
            alert_line=TASK_QUEUE_WAIT_SECONDS,
            extra_description="From enqueueing (or the time a countdown or ETA made it due) "
            "to its start. Alert DjangoTaskQueueWait (above 60 s for 10 minutes) points here.",
        ),
        panel(
            "timeseries",
            "Run time p95 by task",
            "how long do task runs take, by task?",
            [quantile_target("0.95", "task_duration_seconds", "task", TASK_SEL, "{{task}}")],
            w=12,
            unit="s",
        ),
        row("Scheduled jobs"),
        panel(
            "bargauge",
            "Time since last success",
            "when did each scheduled job last succeed?",
            [target(f"time() - {last_success}", "{{job}}", instant=True)],
            w=12,
            unit="s",
            options={
                "orientation": "horizontal",
                "displayMode": "gradient",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
            },
            extra_description="Celery beat entries and management commands declared in "
            "OBSERVABILITY_JOBS, by name; every job of every service (the Pushgateway's "
            "and the workers').",
        ),
        panel(
            "timeseries",
            "Lateness by job",
            "is a scheduled job late, in intervals since its last success?",
            [target(f"(time() - {last_success}) / {interval}", "{{job}}")],
            w=12,
            alert_line=JOB_LATE_INTERVALS,
            extra_description="Time since the last success over the job's expected interval: "
            "below 1 it is on schedule; alert DjangoJobMissed fires past 1.5 (for 5 minutes).",
        ),
    ]
    return dashboard(
        "django-tasks",
        "Django tasks",
        "Task throughput (Celery and django.tasks), failures, queue wait and run time, and the "
        "last success of each scheduled job (django-observability).",
        [job_var(), instance_var(), task_var()],
        panels,
    )


# Dependencies: caches (cache.py), Redis (redis_client.py) and outgoing HTTP
# (http_client.py), narrowed by alias, by the Redis server and by the host called.
CACHE = "cache_operation_duration_seconds"
CACHE_OPS = "cache_operations_total"
HTTP_CLIENT = "http_client_request_duration_seconds"
CACHE_SEL = SEL + ', alias=~"$alias"'
HOST_SEL = SEL + ', server_address=~"$server_address"'
# Redis commands (redis_client.py), narrowed by the Redis server's host.
REDIS = "redis_command_duration_seconds"
REDIS_SEL = SEL + ', server_address=~"$redis_server"'
# Database connections (db_connections.py), narrowed by the database alias: the pool's
# gauges and counters exist only for aliases with Django's pool.
CONN = "db_client_connection"
DB_ALIAS_SEL = SEL + ', alias=~"$db_alias"'
# Thresholds of the dependency alerts (assets/prometheus/rules/alerts.yml).
DEPENDENCY_ERROR_RATIO = 0.1
CACHE_ERRORS_PER_SECOND = 0.1


def alias_var() -> dict[str, Any]:
    return query_var(
        "alias",
        "Cache",
        f'label_values({CACHE_OPS}{{job="$job"}}, alias)',
        multi=True,
        description="Aliases of CACHES (`default`, `sessions`...).",
    )


def server_address_var() -> dict[str, Any]:
    return query_var(
        "server_address",
        "Host called",
        f'label_values({HTTP_CLIENT}_count{{job="$job"}}, server_address)',
        multi=True,
        description="Hosts the service calls over HTTP; `_other` past the label cap.",
    )


def redis_server_var() -> dict[str, Any]:
    return query_var(
        "redis_server",
        "Redis server",
        f'label_values({REDIS}_count{{job="$job"}}, server_address)',
        multi=True,
        description="Hosts of the Redis servers the service sends commands to (`unix` for "
        "a socket); `_other` past the label cap.",
    )


def db_alias_var() -> dict[str, Any]:
    return query_var(
        "db_alias",
        "Database",
        f'label_values({CONN}s_created_total{{job="$job"}}, alias)',
        multi=True,
        description="Aliases of DATABASES that opened a connection (`default`...).",
    )


def or_zero(part: str, whole: str) -> str:
    """``part / whole``, 0 (not absent) for the series of ``whole`` that have no ``part``."""
    return f"({part} or 0 * {whole}) / {whole}"


def dependencies() -> dict[str, Any]:
    reads = f'sum by (alias) (rate({CACHE_OPS}{{{CACHE_SEL}, result=~"hit|miss"}}{RATE}))'
    hits = f'sum by (alias) (rate({CACHE_OPS}{{{CACHE_SEL}, result="hit"}}{RATE}))'
    calls = f"sum by (server_address) (rate({HTTP_CLIENT}_count{{{HOST_SEL}}}{RATE}))"
    failed = (
        f"sum by (server_address) "
        f'(rate({HTTP_CLIENT}_count{{{HOST_SEL}, status=~"5..|error"}}{RATE}))'
    )
    panels = [
        row("Caches"),
        panel(
            "timeseries",
            "Cache hit ratio by alias",
            "what share of the cache reads find their key, per cache?",
            [target(or_zero(hits, reads), "{{alias}}")],
            w=12,
            unit="percentunit",
            defaults={"min": 0, "max": 1},
            extra_description="Hits over hits and misses of get, get_many (per key), "
            "get_or_set and has_key; reads that raised are errors, not misses (Cache errors "
            "by alias). Alert DjangoCacheHitRatioCollapse fires when an alias's 30-minute "
            "ratio falls below half of its ratio a day earlier, for 15 minutes, at more "
            "than 0.1 reads per second: compare with this panel a day earlier.",
        ),
        panel(
            "timeseries",
            "Cache operations by alias and operation",
            "how many cache operations per second, of which kind, on which cache?",
            [
                target(
                    f"sum by (alias, operation) (rate({CACHE_OPS}{{{CACHE_SEL}}}{RATE}))",
                    "{{alias}} {{operation}}",
                )
            ],
            w=12,
            unit="ops",
            extra_description="Each call of the cache API once (get_many once per key), "
            "whatever the backend does inside; the cache health check's probe counts too.",
        ),
        panel(
            "timeseries",
            "Cache latency p95 by alias and operation",
            "how long do 95% of the cache operations take, per cache and kind?",
            [
                quantile_target(
                    "0.95", CACHE, "alias, operation", CACHE_SEL, "{{alias}} {{operation}}"
                )
            ],
            w=12,
            unit="s",
            extra_description="As the caller saw it (one per get_many call). Buckets start "
            "at 100 µs: an in-process cache (locmem) sits in the first one.",
        ),
        panel(
            "timeseries",
            "Cache errors by alias",
            "which caches raise errors to the code that calls them, and how often?",
            [
                target(
                    f'sum by (alias) (rate({CACHE_OPS}{{{CACHE_SEL}, result="error"}}{RATE}))'
                    f" or 0 * sum by (alias) (rate({CACHE_OPS}{{{CACHE_SEL}}}{RATE}))",
                    "{{alias}}",
                )
            ],
            w=12,
            unit="ops",
            alert_line=CACHE_ERRORS_PER_SECOND,
            extra_description="Operations whose backend raised (a Redis or memcached server "
            "down or timing out); the exception reached the caller. 0 for a cache in use "
            "without errors. Alert DjangoCacheErrors fires when an alias stays above 0.1 "
            "errors per second (dashed line) for 5 minutes.",
        ),
        *redis_panels(),
        row("Outgoing HTTP"),
        panel(
            "timeseries",
            "Outgoing requests by host and status",
            "how many calls per second does the service make to each host, with what answer?",
            [
                target(
                    f"sum by (server_address, status) "
                    f"(rate({HTTP_CLIENT}_count{{{HOST_SEL}}}{RATE}))",
                    "{{server_address}} {{status}}",
                )
            ],
            w=12,
            unit="reqps",
            extra_description="Calls made with requests, httpx or urllib3; status `error` "
            "is a call that got no response (refused, timed out, reset).",
        ),
        panel(
            "timeseries",
            "Outgoing error ratio by host",
            "which hosts fail the calls made to them, and for what share?",
            [target(or_zero(failed, calls), "{{server_address}}")],
            w=12,
            unit="percentunit",
            alert_line=DEPENDENCY_ERROR_RATIO,
            extra_description="Calls answered 5xx or with no response over all calls to the "
            "host (4xx are the caller's business and not counted); 0 for a host without "
            "errors. Alert DjangoDependencyErrorRatio fires above 10% (dashed line) for "
            "10 minutes at more than 0.1 calls per second.",
        ),
        panel(
            "timeseries",
            "Outgoing latency p95 by host",
            "how long do 95% of the calls to each host take to answer?",
            [
                quantile_target(
                    "0.95", HTTP_CLIENT, "server_address", HOST_SEL, "{{server_address}}"
                )
            ],
            w=12,
            unit="s",
            extra_description="From sending the request to the response's headers (a body "
            "streamed later is not in it); calls without a response count with the time "
            "they took to fail.",
        ),
        panel(
            "timeseries",
            "Outgoing latency p50 by host",
            "how long does a typical call to each host take?",
            [quantile_target("0.5", HTTP_CLIENT, "server_address", HOST_SEL, "{{server_address}}")],
            w=12,
            unit="s",
            extra_description="A p95 far above the p50: a few slow calls (retries, a slow "
            "endpoint of that host); both up together: the host itself slowed down.",
        ),
        *database_connection_panels(),
    ]
    return dashboard(
        "django-dependencies",
        "Django dependencies",
        "What the service depends on: cache hit ratio, latency and errors by alias, "
        "Redis commands' rate, latency and error ratio by server, outgoing HTTP calls' "
        "rate, error ratio and latency by host, and database connections and Django's "
        "connection pool by alias (django-observability).",
        [
            job_var(),
            instance_var(),
            alias_var(),
            redis_server_var(),
            server_address_var(),
            db_alias_var(),
        ],
        panels,
    )


def redis_panels() -> list[dict[str, Any]]:
    """The "Redis" row: every command sent with redis-py, whoever sends it."""
    commands = f"sum by (server_address) (rate({REDIS}_count{{{REDIS_SEL}}}{RATE}))"
    failed = f'sum by (server_address) (rate({REDIS}_count{{{REDIS_SEL}, result="error"}}{RATE}))'
    return [
        row("Redis"),
        panel(
            "timeseries",
            "Redis commands by operation and result",
            "how many Redis commands per second does the service send, of which kind, "
            "and how many fail?",
            [
                target(
                    f"sum by (operation, result) (rate({REDIS}_count{{{REDIS_SEL}}}{RATE}))",
                    "{{operation}} {{result}}",
                )
            ],
            w=12,
            unit="ops",
            extra_description="Every command sent with redis-py: Django's RedisCache, "
            "django-redis, sessions, locks and the project's own clients. A pipeline or "
            "transaction is one PIPELINE; command names past the label cap are '_other'. "
            "Result `error`: the command raised (refused, timed out, an error reply such "
            "as WRONGTYPE); `cancelled`: the caller gave up on it (an asyncio task "
            "cancelled, a gevent Timeout), not counted as an error.",
        ),
        panel(
            "timeseries",
            "Redis error ratio by server",
            "which Redis servers fail the commands sent to them, and for what share?",
            [target(or_zero(failed, commands), "{{server_address}}")],
            w=12,
            unit="percentunit",
            alert_line=DEPENDENCY_ERROR_RATIO,
            extra_description="Commands that raised over all commands sent to the server "
            "(its host, `unix` for a socket); 0 for a server without errors. Alert "
            "DjangoRedisErrorRatio fires above 10% (dashed line) for 10 minutes at more "
            "than 0.1 commands per second.",
        ),
        panel(
            "timeseries",
            "Redis latency p95 by operation",
            "how long do 95% of the Redis commands of each kind take?",
            [quantile_target("0.95", REDIS, "operation", REDIS_SEL, "{{operation}}")],
            w=12,
            unit="s",
            extra_description="From sending the command to its reply, as the caller waited "
            "(a pipeline: all of its commands). Buckets run from 100 µs to 1 s: a p95 at "
            "1 s means slower than that (a blocked server, a long KEYS, the client's "
            "socket timeout).",
        ),
        panel(
            "timeseries",
            "Redis latency p50 by operation",
            "how long does a typical Redis command of each kind take?",
            [quantile_target("0.5", REDIS, "operation", REDIS_SEL, "{{operation}}")],
            w=12,
            unit="s",
            extra_description="A p95 far above the p50: a few slow commands (big values, "
            "commands over many keys); both up together: the server or the network "
            "slowed down.",
        ),
    ]


def database_connection_panels() -> list[dict[str, Any]]:
    """The "Database connections" row: connections opened and failed (every alias),
    Django's pool (aliases with ``OPTIONS["pool"]``)."""

    def by_alias(expr: str) -> str:
        return f"sum by (alias) ({expr})"

    def per_second(metric: str) -> str:
        return by_alias(f"rate({metric}{{{DB_ALIAS_SEL}}}{RATE})")

    opened = per_second(f"{CONN}s_created_total")
    wait = per_second(f"{CONN}_wait_time_seconds_total")
    return [
        row("Database connections"),
        panel(
            "timeseries",
            "Pool connections by alias",
            "how many connections of each pool are in use, how many idle, and how many "
            "may it open?",
            targets(
                (by_alias(f'{CONN}_count{{{DB_ALIAS_SEL}, state="used"}}'), "{{alias}} used"),
                (by_alias(f'{CONN}_count{{{DB_ALIAS_SEL}, state="idle"}}'), "{{alias}} idle"),
                (by_alias(f"{CONN}_max{{{DB_ALIAS_SEL}}}"), "{{alias}} max"),
            ),
            w=8,
            extra_description="Aliases with Django's pool only, summed over the "
            "worker processes (a pool each) of the selected instances; read every "
            "OBSERVABILITY_DB_POOL_METRICS_INTERVAL seconds. Used reaching max with "
            "requests waiting: alert DjangoDatabasePoolExhausted (per instance, for "
            "5 minutes).",
        ),
        panel(
            "timeseries",
            "Requests waiting for a connection by alias",
            "how many requests are waiting for a connection of the pool right now?",
            [target(by_alias(f"{CONN}_pending_requests{{{DB_ALIAS_SEL}}}"), "{{alias}}")],
            w=8,
            extra_description="Django's pool only. Above 0 for long: the pool is too "
            "small for the threads that query (or connections are held too long); "
            "DjangoDatabasePoolExhausted fires when they wait on a pool whose "
            "connections are all used, for 5 minutes.",
        ),
        panel(
            "timeseries",
            "Connection wait per request by alias",
            "how long does a request wait for a connection of the pool, on average?",
            targets(
                (f"{wait} / {per_second(f'{CONN}_requests_total')}", "{{alias}} per request"),
                (
                    f"{wait} / {per_second(f'{CONN}_queued_requests_total')}",
                    "{{alias}} per request that waited",
                ),
            ),
            w=8,
            unit="s",
            extra_description="Django's pool only: time waited over the connections "
            "asked of the pool (one per request that queried), and over those that had "
            "to wait (absent when none waited). Waits near the pool's timeout come "
            "before timeouts.",
        ),
        panel(
            "timeseries",
            "Pool timeouts and connection errors by alias",
            "which databases refuse the service a connection, and how often?",
            targets(
                (
                    f"{per_second(f'{CONN}_timeouts_total')} or 0 * {opened}",
                    "{{alias}} pool timeouts",
                ),
                (
                    f"{per_second(f'{CONN}_errors_total')} or 0 * {opened}",
                    "{{alias}} connection errors",
                ),
            ),
            w=12,
            unit="ops",
            extra_description="Timeouts: requests the pool could not give a connection "
            "within its timeout (they fail with OperationalError, a 500); alert "
            "DjangoDatabasePoolTimeouts fires while they go on for 5 minutes. Errors: "
            "failed attempts to open a connection (the database down, refusing, out of "
            "connections, wrong credentials). 0 for an alias that opens connections "
            "without either.",
        ),
        panel(
            "timeseries",
            "Connections opened by alias",
            "how many new database connections does the service open each second?",
            [target(opened, "{{alias}}")],
            w=12,
            unit="ops",
            extra_description="Without a pool and with CONN_MAX_AGE = 0, one per request "
            "that queries; with persistent connections or a pool, near 0 once warm: a "
            "rise there means connections are dropped and opened again (database "
            "restarts, max age, errors).",
        ),
    ]


def quantile_target(q: str, metric: str, by: str, sel: str, legend: str) -> dict[str, Any]:
    return target(quantile(q, metric, by, sel), legend)


def render(latency_threshold: str = DEFAULT_LATENCY_THRESHOLD) -> dict[str, str]:
    """File name -> JSON text of each dashboard.

    ``latency_threshold`` is the latency objective's bucket bound (as
    prometheus_client renders it), the default of the overview's variable.
    """
    dashboards = {
        "django-overview.json": overview(latency_threshold),
        "django-health.json": health(),
        "django-auth-security.json": auth_security(),
        "django-process-db.json": process_db(),
        "django-tasks.json": tasks(),
        "django-dependencies.json": dependencies(),
    }
    return {
        name: json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
        for name, dashboard in dashboards.items()
    }
