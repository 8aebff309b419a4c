"""``manage.py observability_worker_alive``: a Celery worker container's liveness probe.

Exits 0 when the worker's heartbeat file was written less than ``--max-age``
seconds ago, 1 with the reason otherwise. The worker's main process rewrites
the file every ``OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL`` seconds
(``django_observability.tasks.worker``), whether or not the broker answers:
a broker outage makes the broker health check fail, not this probe, since
restarting the worker would not bring the broker back.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_observability.conf import valid_or_default

#: ``--max-age`` by default: this many heartbeat intervals.
MISSED_BEATS = 3


def heartbeat_age(path: str, now: float | None = None) -> float:
    """Seconds since ``path`` was last written; raises ``OSError`` when it cannot be read."""
    written = os.stat(path).st_mtime
    return max(0.0, (time.time() if now is None else now) - written)


class Command(BaseCommand):
    help = "Exit 0 when the Celery worker's heartbeat is fresh, 1 when it is stale or missing."
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--file",
            metavar="PATH",
            help="The heartbeat file (default: OBSERVABILITY_WORKER_HEARTBEAT_FILE).",
        )
        parser.add_argument(
            "--max-age",
            type=float,
            metavar="SECONDS",
            help=f"Oldest heartbeat that passes (default: {MISSED_BEATS} heartbeat intervals).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"] or valid_or_default("WORKER_HEARTBEAT_FILE")
        max_age = options["max_age"]
        if max_age is None:
            max_age = MISSED_BEATS * valid_or_default("WORKER_HEARTBEAT_INTERVAL")
        if max_age <= 0:
            raise CommandError("--max-age must be a positive number of seconds")
        try:
            age = heartbeat_age(path)
        except FileNotFoundError:
            raise CommandError(
                f"worker not alive: no heartbeat file {path} (the worker has not become "
                "ready, has stopped, or writes another file)"
            ) from None
        except OSError as exc:
            raise CommandError(f"worker not alive: cannot read {path}: {exc}") from None
        if age > max_age:
            raise CommandError(
                f"worker not alive: heartbeat {age:.1f} s old (more than {max_age:g} s) in {path}"
            )
        if options["verbosity"] >= 1:
            self.stdout.write(f"worker alive: heartbeat {age:.1f} s old ({path})")
