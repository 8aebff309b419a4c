"""BrokerCheck: which broker, one bounded attempt, and never a hung probe.

A broker that accepts connections and never answers (a stopped Redis or
RabbitMQ) is played here by a socket that listens and reads nothing, for the
Redis and the AMQP transports alike; tests/test_peers_worker.py does it with a
real redis-server stopped by SIGSTOP, and tests/test_peers_rabbitmq.py with a
real RabbitMQ node (running, stopped by SIGSTOP, killed).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from celery import Celery
from django.test import Client, override_settings

from django_observability.health import registry
from django_observability.health.base import FAIL, PASS, HealthError
from django_observability.health.broker import BrokerCheck, broker_url, connection_options
from django_observability.health.runner import CheckSpec, run_check
from tests.health_state import fresh_health  # noqa: F401

BROKER = "django_observability.health.broker.BrokerCheck"

# What BrokerCheck(app=...) reads in a test below.
test_app = Celery(
    "test_health_broker", broker="redis://:s3cret@127.0.0.1:1/0", set_as_current=False
)


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def refused_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# --- which broker ----------------------------------------------------------------------


def test_the_url_option_wins():
    assert broker_url("redis://h:1/0", app=test_app) == "redis://h:1/0"


def test_the_url_of_an_app_given_by_its_dotted_path():
    assert broker_url(app="tests.test_health_broker:test_app") == "redis://:s3cret@127.0.0.1:1/0"
    assert broker_url(app="tests.test_health_broker.test_app") == "redis://:s3cret@127.0.0.1:1/0"


def test_the_current_apps_url_by_default():
    from celery import current_app

    previous = current_app._get_current_object()
    app = Celery("current", broker="amqp://guest:guest@rabbit:5672//", set_as_current=False)
    app.set_current()
    try:
        assert broker_url() == "amqp://guest:guest@rabbit:5672//"
    finally:
        previous.set_current()


def test_failover_urls_check_the_first():
    app = Celery("failover", broker="redis://a:1/0;redis://b:1/0", set_as_current=False)
    assert broker_url(app=app) == "redis://a:1/0"
    app.conf.broker_url = ["amqp://a//", "amqp://b//"]
    assert broker_url(app=app) == "amqp://a//"


def test_no_url_at_all_fails_with_a_reason():
    app = Celery("none", set_as_current=False)
    app.conf.broker_url = ""
    with pytest.raises(HealthError, match="no broker URL"):
        broker_url(app=app)


def test_every_step_of_the_attempt_is_bounded_by_the_timeout():
    redis = connection_options("redis://h:1/0", 0.3)
    assert redis["connect_timeout"] == 0.3
    assert redis["transport_options"]["socket_timeout"] == 0.3
    assert redis["transport_options"]["socket_connect_timeout"] == 0.3
    assert redis["transport_options"]["retry_on_timeout"] is False
    for url in ("amqp://guest@h//", "pyamqp://h//", "amqps://h//"):
        amqp = connection_options(url, 0.3)
        assert amqp["connect_timeout"] == 0.3
        assert amqp["transport_options"] == {"read_timeout": 0.3, "write_timeout": 0.3}
        assert amqp["heartbeat"] == 0


# --- one attempt -----------------------------------------------------------------------


def test_a_reachable_broker_passes_with_the_time_to_connect():
    component = BrokerCheck(url="memory://").run()
    assert component.status == PASS
    assert component.observed_unit == "ms"
    assert component.observed_value >= 0
    assert component.component_id.startswith("memory://")


def test_a_refused_connection_fails_at_once_without_the_password(refused_port):
    check = BrokerCheck(url=f"redis://:s3cret@127.0.0.1:{refused_port}/0", timeout=2.0)
    start = time.monotonic()
    result = run_check(CheckSpec("broker", check, 2.0))
    # One attempt: kombu's connect() would retry after 2 s (the margin is a loaded machine's).
    assert time.monotonic() - start < 1.9
    assert result.status == FAIL
    output = result.components[0].output
    assert f"127.0.0.1:{refused_port}" in output
    assert "s3cret" not in output


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_a_broker_that_never_answers_fails_within_the_timeout(silent_port, scheme):
    url = f"{scheme}://guest:guest@127.0.0.1:{silent_port}/"
    check = BrokerCheck(url=url, timeout=0.3)
    start = time.monotonic()
    result = run_check(CheckSpec("broker", check, 0.3))
    elapsed = time.monotonic() - start
    assert result.status == FAIL
    assert elapsed < 1.5, elapsed  # the attempt itself ends, not only the probe


def test_the_timeout_defaults_to_the_health_timeout(silent_port):
    check = BrokerCheck(url=f"redis://127.0.0.1:{silent_port}/0")
    with override_settings(OBSERVABILITY_HEALTH_TIMEOUT=0.2):
        start = time.monotonic()
        with pytest.raises(HealthError):
            check.run()
    assert time.monotonic() - start < 1.0


def test_a_probe_answers_in_time_and_holds_at_most_one_thread(silent_port):
    """Probes while the broker hangs: each answers by its deadline; one run in flight at most."""
    # A check whose own socket timeout (5 s) outlives the probe's timeout (0.3 s).
    checks = {"broker": (BROKER, {"url": f"redis://127.0.0.1:{silent_port}/0", "timeout": 5.0})}
    client = Client()
    with override_settings(
        OBSERVABILITY_HEALTH_CHECKS=checks,
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["broker"],
        OBSERVABILITY_HEALTH_CACHE_SECONDS=0,
        OBSERVABILITY_HEALTH_DEADLINE=0.6,
    ):
        registry.reset()
        registry.all_specs()["broker"].timeout = 0.3  # the probe's budget, below the socket's
        before = threading.active_count()
        for _ in range(5):
            start = time.monotonic()
            response = client.get("/health/ready/")
            # By the deadline (0.6 s), not the socket's 5 s: the margin is for a loaded machine.
            assert time.monotonic() - start < 3.0
            assert response.status_code == 503
        assert threading.active_count() - before <= 1


def test_builtin_names_it_too():
    from django_observability.health import builtin

    assert builtin.BrokerCheck is BrokerCheck


def test_it_loads_from_the_health_checks_setting():
    with override_settings(
        # Its own name: a run of "broker" from the test above may still be in flight.
        OBSERVABILITY_HEALTH_CHECKS={"queue": (BROKER, {"url": "memory://", "timeout": 1.0})},
        OBSERVABILITY_HEALTH_READINESS_CHECKS=["queue"],
    ):
        registry.reset()
        spec = registry.all_specs()["queue"]
        assert isinstance(spec.check, BrokerCheck)
        assert spec.timeout == 1.0
        response = Client().get("/health/ready/")
    assert response.status_code == 200
