"""Health checks used by the tests."""

import asyncio
import threading

from django_observability.health import Component, HealthCheck, HealthError, HealthWarning

SECRET = "db-password=hunter2"
release = threading.Event()
slow_starts = []


def ok():
    return None


def number():
    return 42.5


def warn():
    raise HealthWarning("disk getting full")


def broken():
    raise RuntimeError(f"connection failed: {SECRET}")


def refused():
    raise HealthError("upstream refused")


def falsy():
    return False


async def async_number():
    await asyncio.sleep(0)
    return 7


async def async_broken():
    await asyncio.sleep(0)
    raise ValueError(SECRET)


async def async_hang():
    await asyncio.sleep(30)


def slow():
    """Hangs (up to 30 s) until the test releases it."""
    slow_starts.append(threading.get_ident())
    release.wait(30)


def with_options(multiplier=1, timeout=None):
    return 2 * multiplier


class Configurable(HealthCheck):
    level = "pass"
    component_type = "component"

    def run(self):
        return [
            Component(status=self.level, component_id="one", observed_value=1),
            Component(status="pass", component_id="two", observed_value=2),
        ]


class NotACheck:
    """A plain class with run(): accepted too."""

    def __init__(self, value=3):
        self.value = value

    def run(self):
        return self.value
