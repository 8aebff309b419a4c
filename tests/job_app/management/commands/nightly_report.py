from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "A scheduled job that succeeds."

    def handle(self, *args: Any, **options: Any) -> str:
        return "sent"
