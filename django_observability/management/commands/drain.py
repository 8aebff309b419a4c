"""``manage.py drain``: make readiness fail in every worker before shutdown.

Run it from a Kubernetes ``preStop`` hook. It creates the marker file
``OBSERVABILITY_HEALTH_DRAIN_FILE``, which every worker of the pod checks on
each readiness probe; ``--wait`` then keeps the hook running while the load
balancer notices, before Kubernetes sends SIGTERM. ``--undo`` removes it.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandParser

from django_observability.conf import conf


class Command(BaseCommand):
    help = "Mark this pod as draining: readiness fails in every worker, liveness stays up."
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="Sleep this long after marking (for a preStop hook).",
        )
        parser.add_argument("--undo", action="store_true", help="Remove the marker.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = conf.HEALTH_DRAIN_FILE
        if options["undo"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self.stdout.write(f"not draining: removed {path}")
            return
        with open(path, "w") as fh:
            fh.write(f"{time.time()}\n")
        self.stdout.write(f"draining: readiness now fails ({path})")
        if options["wait"] > 0:
            time.sleep(options["wait"])
