"""The operations assets, written for one project: rules, their tests, dashboards, routing.

The package holds one copy of each asset, written for the default, empty
``OBSERVABILITY_METRICS_NAMESPACE``, the Prometheus job ``django`` and the
default objectives: the Prometheus recording and alert rules with their
``promtool test rules`` unit tests and the Alertmanager example under
``assets/``, and the Grafana dashboards from :mod:`django_observability.dashboards`.
:func:`render` rewrites them for a project (``manage.py observability_assets``
writes the result); ``deploy/`` in the repository is its output for the
example project.

The rewrites are text substitutions on known spots: metric names where they
start a word, the job where the rules and tests name it, the runbook URL, and
the objectives, each of which must be found exactly where expected (an edited
recording.yml cannot silently keep the default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from django_observability import dashboards
from django_observability.metrics import HEALTH_READY, INSTRUMENTS

DEFAULT_JOB = "django"
DEFAULT_AVAILABILITY_OBJECTIVE = 0.999
DEFAULT_LATENCY_OBJECTIVE = 0.99
DEFAULT_LATENCY_THRESHOLD = dashboards.DEFAULT_LATENCY_THRESHOLD
DEFAULT_RUNBOOK_URL = "https://github.com/your-org/django-observability/blob/main/docs/runbooks.md"

# Written for the default objectives only (their scenarios count bad requests
# against the default error budgets); left out when an objective changes, with
# the SLO section that ends recording_test.yml.
SLO_TEST_FILES = ("prometheus/tests/slo_test.yml", "prometheus/tests/slo_long_test.yml")
RECORDING_TEST = "prometheus/tests/recording_test.yml"
_SLO_SECTION = "      # ---- SLOs "

# Metric names the app emits, before the namespace: every instrument, and the
# metrics store gauges the scraping worker computes (metrics_store.state).
METRIC_NAMES = (
    *(instrument.name for instrument in (*INSTRUMENTS, HEALTH_READY)),
    "django_observability_metrics_store_",
)

_JOB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*")


@dataclass(frozen=True)
class AssetOptions:
    """What the assets are written for."""

    namespace: str = ""
    job: str = DEFAULT_JOB
    availability_objective: float = DEFAULT_AVAILABILITY_OBJECTIVE
    latency_objective: float = DEFAULT_LATENCY_OBJECTIVE
    latency_threshold: str = DEFAULT_LATENCY_THRESHOLD
    runbook_url: str = DEFAULT_RUNBOOK_URL

    @property
    def default_objectives(self) -> bool:
        return (
            self.availability_objective == DEFAULT_AVAILABILITY_OBJECTIVE
            and self.latency_objective == DEFAULT_LATENCY_OBJECTIVE
            and self.latency_threshold == DEFAULT_LATENCY_THRESHOLD
        )


def validate(options: AssetOptions) -> list[str]:
    """What is wrong with ``options`` (empty when they can be written)."""
    problems = []
    if options.namespace and not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", options.namespace):
        problems.append(f"namespace {options.namespace!r} is not a Prometheus name")
    if not _JOB_NAME.fullmatch(options.job):
        problems.append(f"job {options.job!r} is not a plain job name (letters, digits, _ . : / -)")
    for name in ("availability_objective", "latency_objective"):
        value = getattr(options, name)
        if not 0 < value < 1:
            problems.append(f"{name.replace('_', ' ')} {value!r} is not between 0 and 1")
    url = options.runbook_url
    if any(c in url for c in "\"' ") or not url.startswith(("http://", "https://")):
        problems.append(f"runbook URL {options.runbook_url!r} is not an http(s) URL")
    return problems


def with_namespace(text: str, namespace: str) -> str:
    """Prefix every metric name the app emits with ``namespace_``.

    A name is prefixed where it starts a word: recorded series
    (``job:http_server_requests:rate5m``) and Prometheus's own ``up`` stay.
    """
    if not namespace:
        return text
    names = "|".join(re.escape(name) for name in sorted(METRIC_NAMES, key=len, reverse=True))
    return re.sub(rf"(?<![A-Za-z0-9_:])({names})", rf"{namespace}_\1", text)


def _objectives(text: str, options: AssetOptions) -> str:
    """The two objective rules and the latency SLI's bucket bound (recording.yml)."""
    indent = "\n" + " " * 8
    availability = f"vector({{}}){indent}labels:{indent}  slo: availability\n"
    latency = f'vector({{}}){indent}labels:{indent}  slo: latency{indent}  le: "{{}}"\n'
    bucket = '_bucket{{le="{}"}}'
    substitutions = {
        availability.format(DEFAULT_AVAILABILITY_OBJECTIVE): (
            availability.format(repr(options.availability_objective)),
            1,
        ),
        latency.format(DEFAULT_LATENCY_OBJECTIVE, DEFAULT_LATENCY_THRESHOLD): (
            latency.format(repr(options.latency_objective), options.latency_threshold),
            1,
        ),
        bucket.format(DEFAULT_LATENCY_THRESHOLD): (bucket.format(options.latency_threshold), 7),
    }
    for old, (_, count) in substitutions.items():
        found = text.count(old)
        if found != count:
            raise ValueError(f"expected {count} of {old!r} in recording.yml, found {found}")
    pattern = "|".join(re.escape(old) for old in substitutions)
    return re.sub(pattern, lambda m: substitutions[m.group(0)][0], text)


def _job(text: str, job: str) -> str:
    """The scrape job the rules and their tests name (``up{job="django"}``).

    In the tests also the expected labels, and the job's name where the expected
    annotations spell it (``{{ $labels.job }}`` in a summary or description).
    """
    text = text.replace('job="django"', f'job="{job}"')
    text = re.sub(r"(\bjob: )'django'", lambda m: f"{m.group(1)}'{job}'", text)
    return re.sub(
        r"^(\s+(?:summary|description): .*)$",
        lambda m: re.sub(r"\bdjango\b(?![-_.:])", job, m.group(1)),
        text,
        flags=re.MULTILINE,
    )


def _without_slo_checks(text: str) -> str:
    """recording_test.yml without its SLO section (its last part; written for the
    default objectives)."""
    head, marker, tail = text.partition(_SLO_SECTION)
    if not marker or "\n  - name:" in tail:
        raise ValueError("recording_test.yml: the SLO section is not the last part")
    return head


def _packaged() -> dict[str, str]:
    root = resources.files("django_observability") / "assets"
    files: dict[str, str] = {}
    for sub in ("prometheus/rules", "prometheus/tests", "alertmanager"):
        directory = root.joinpath(*sub.split("/"))
        for entry in sorted(directory.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yml"):
                files[f"{sub}/{entry.name}"] = entry.read_text(encoding="utf-8")
    return files


def render(options: AssetOptions) -> dict[str, str]:
    """Relative path -> text of every asset, written for ``options``.

    Paths: ``prometheus/rules/*.yml``, ``prometheus/tests/*.yml`` (run
    ``promtool test rules tests/*.yml`` from ``prometheus/``),
    ``grafana/dashboards/*.json``, ``alertmanager/alertmanager.yml``.
    """
    problems = validate(options)
    if problems:
        raise ValueError("; ".join(problems))
    files = _packaged()
    if not options.default_objectives:
        for path in SLO_TEST_FILES:
            del files[path]
        files[RECORDING_TEST] = _without_slo_checks(files[RECORDING_TEST])
    files["prometheus/rules/recording.yml"] = _objectives(
        files["prometheus/rules/recording.yml"], options
    )
    for name, text in dashboards.render(options.latency_threshold).items():
        files[f"grafana/dashboards/{name}"] = text
    written = {}
    for path, text in files.items():
        # Metric names first: the job and the URL are taken as given.
        text = with_namespace(text, options.namespace)
        if options.namespace:
            text = text.replace(
                "(default, empty OBSERVABILITY_METRICS_NAMESPACE)",
                f'(OBSERVABILITY_METRICS_NAMESPACE = "{options.namespace}")',
            )
        if path.startswith("prometheus/"):
            text = _job(text, options.job)
            text = text.replace(DEFAULT_RUNBOOK_URL, options.runbook_url)
        written[path] = text
    return written


def write(directory: Path, files: dict[str, str], *, overwrite: bool = False) -> list[Path]:
    """Write ``files`` under ``directory``; the paths written, in order.

    Refuses (``FileExistsError``, nothing written) when a file exists with other
    content and ``overwrite`` is false.
    """
    targets = {directory / path: text for path, text in files.items()}
    if not overwrite:
        changed = [
            str(path)
            for path, text in targets.items()
            if path.exists() and path.read_text(encoding="utf-8") != text
        ]
        if changed:
            raise FileExistsError(", ".join(changed))
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(targets)
