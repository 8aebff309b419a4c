"""Custom health checks of the example shop: plain functions are enough."""

import os
import time

from django_observability.health import HealthWarning


def inventory_service():
    """A dependency we only warn about: the shop sells from cache when it is slow."""
    started = time.perf_counter()
    if os.environ.get("EXAMPLE_INVENTORY_DEGRADED") == "1":
        raise HealthWarning("inventory service answering from its fallback")
    return round((time.perf_counter() - started) * 1000, 3)  # observedValue


def slow_dependency():
    """Hangs for EXAMPLE_SLOW_CHECK_SECONDS; counts its starts in a file."""
    counter = os.environ.get("EXAMPLE_SLOW_CHECK_COUNTER")
    if counter:
        with open(counter, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    time.sleep(float(os.environ.get("EXAMPLE_SLOW_CHECK_SECONDS", "30")))
