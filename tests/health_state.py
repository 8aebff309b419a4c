"""The health runner's cache and the check registry, fresh for each test of a check.

Import the fixture into a test module (``from tests.health_state import
fresh_health``) to have it for every test there; it is not a plugin, so other
modules are left alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_observability.health import registry
from django_observability.health.runner import runner


@pytest.fixture(autouse=True)
def fresh_health() -> Iterator[None]:
    runner.clear()
    registry.reset()
    yield
    runner.clear()
    registry.reset()
