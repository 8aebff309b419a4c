"""``manage.py health``: the health report on the command line.

Exit status 0 for pass or warn, 1 for fail: made for Docker ``HEALTHCHECK``
and Kubernetes exec probes. The operator running it sees every detail.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandParser

from django_observability.health.base import FAIL
from django_observability.health.rendering import LIVE, READY, REPORT, render_json, render_text
from django_observability.health.views import evaluate
from django_observability.metrics import disable_in_this_process


class Command(BaseCommand):
    help = "Run the health checks; exit 0 on pass or warn, 1 on fail."
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: CommandParser) -> None:
        kind = parser.add_mutually_exclusive_group()
        kind.add_argument("--ready", action="store_true", help="Readiness checks only.")
        kind.add_argument("--live", action="store_true", help="Liveness only (no checks).")
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        # Run beside the workers (an exec probe), this process must not add
        # series of its own to their multiprocess metrics.
        disable_in_this_process()
        # This command prints every detail itself, on stdout; the runner's own
        # status-change records would land in the middle of it (LOGGING often
        # writes to stdout too, and --format json must stay parseable).
        health_logger = logging.getLogger("django_observability.health")
        was_disabled, health_logger.disabled = health_logger.disabled, True
        try:
            kind = READY if options["ready"] else LIVE if options["live"] else REPORT
            status, results = evaluate(kind)
        finally:
            health_logger.disabled = was_disabled
        if options["format"] == "json":
            self.stdout.write(
                json.dumps(render_json(kind, status, results, details=True), indent=2)
            )
        else:
            self.stdout.write(render_text(kind, status, results, details=True), ending="")
        if status == FAIL:
            raise SystemExit(1)
