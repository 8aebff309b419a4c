from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "A scheduled job that fails."

    def handle(self, *args: Any, **options: Any) -> None:
        raise CommandError("the report server is down")
