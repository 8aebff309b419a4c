"""``manage.py observability_assets``: write the operations assets for this project.

The Prometheus rules and their ``promtool`` unit tests, the Grafana dashboards
and the Alertmanager example, with this project's metrics namespace
(``OBSERVABILITY_METRICS_NAMESPACE``), its Prometheus job name (default: the
service name) and the SLO objectives given as options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser
from prometheus_client.utils import floatToGoString

from django_observability import deploy_assets
from django_observability.conf import conf


class Command(BaseCommand):
    help = (
        "Write the Prometheus rules (with their promtool tests), the Grafana dashboards and "
        "the Alertmanager example for this project's metrics namespace and job."
    )
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", required=True, type=Path, metavar="DIR", help="Directory to write to."
        )
        parser.add_argument(
            "--namespace",
            default=None,
            help="Metrics namespace (default: OBSERVABILITY_METRICS_NAMESPACE).",
        )
        parser.add_argument(
            "--job",
            default=None,
            help="The Prometheus job that scrapes this service (its scrape config's job_name; "
            "default: the service name, OBSERVABILITY_SERVICE_NAME).",
        )
        parser.add_argument(
            "--availability-objective",
            type=float,
            default=deploy_assets.DEFAULT_AVAILABILITY_OBJECTIVE,
            metavar="RATIO",
            help="Share of requests not answered 5xx (default: %(default)s).",
        )
        parser.add_argument(
            "--latency-objective",
            type=float,
            default=deploy_assets.DEFAULT_LATENCY_OBJECTIVE,
            metavar="RATIO",
            help="Share of requests served within the latency threshold (default: %(default)s).",
        )
        parser.add_argument(
            "--latency-threshold",
            type=float,
            default=float(deploy_assets.DEFAULT_LATENCY_THRESHOLD),
            metavar="SECONDS",
            help="The latency objective's threshold, a bound of "
            "OBSERVABILITY_METRICS_LATENCY_BUCKETS (default: %(default)s).",
        )
        parser.add_argument(
            "--runbook-url",
            default=deploy_assets.DEFAULT_RUNBOOK_URL,
            metavar="URL",
            help="Where your copy of docs/runbooks.md is; alerts link to its anchors.",
        )
        parser.add_argument(
            "--force", action="store_true", help="Overwrite files whose content differs."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output = Path(options["output"])
        threshold = float(options["latency_threshold"])
        buckets = [float(bound) for bound in conf.METRICS_LATENCY_BUCKETS]
        if threshold not in buckets:
            raise CommandError(
                f"--latency-threshold {threshold} is not a bound of "
                f"OBSERVABILITY_METRICS_LATENCY_BUCKETS ({', '.join(map(str, buckets))})"
            )
        namespace = options["namespace"]
        asset_options = deploy_assets.AssetOptions(
            namespace=conf.METRICS_NAMESPACE if namespace is None else namespace,
            job=options["job"] or conf.SERVICE_NAME,
            availability_objective=float(options["availability_objective"]),
            latency_objective=float(options["latency_objective"]),
            latency_threshold=floatToGoString(threshold),
            runbook_url=options["runbook_url"],
        )
        problems = deploy_assets.validate(asset_options)
        if problems:
            raise CommandError("; ".join(problems))
        files = deploy_assets.render(asset_options)
        try:
            written = deploy_assets.write(output, files, overwrite=options["force"])
        except FileExistsError as exc:
            raise CommandError(f"would change existing files (use --force): {exc}") from exc
        for path in written:
            self.stdout.write(str(path))
        self.stdout.write(
            f"Wrote {len(written)} files for namespace {asset_options.namespace or '(none)'}, "
            f"job {asset_options.job}. "
            f"Check them: cd {output / 'prometheus'} && "
            "promtool check rules rules/*.yml && promtool test rules tests/*.yml"
        )
        if not asset_options.default_objectives:
            self.stdout.write(
                "The SLO scenario tests (slo_test.yml, slo_long_test.yml) are written for the "
                "default objectives and were left out; the other tests were written."
            )
