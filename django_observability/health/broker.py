"""The message broker health check: one connection attempt through kombu, bounded in time.

Redis and RabbitMQ (and any other kombu transport) alike: the check opens a
connection with kombu, which for Redis sends a ``PING`` and for AMQP runs
the protocol's handshake, so a broker that accepts connections and never
answers (stopped, overloaded) fails as surely as one that refuses them.

Never a hang: the connection's connect, read and write timeouts are the
check's timeout, and kombu is asked for one attempt (``max_retries=0``; its
default retries for ever, and ``Connection.connect()`` retries once after
two seconds). The health runner reports the check ``fail`` ("timed out")
when its timeout passes and never starts a second run of it while one is in
flight, so a stopped broker holds at most one pool thread, for about one
timeout. Unlike a Celery ``ping`` to the workers, the check needs no worker
and waits for nobody's reply.

Which broker: the ``url`` option, else the ``broker_url`` of the Celery app
named by the ``app`` option (``"proj.celery:app"``), else that of Celery's
current app (the project's, once its ``celery.py`` is imported, as the
standard Django layout does from the project package's ``__init__.py``).
"""

from __future__ import annotations

import time
from typing import Any

from django.utils.module_loading import import_string

from django_observability.conf import valid_or_default
from django_observability.health.base import Component, HealthCheck, HealthError

__all__ = ["BrokerCheck", "broker_url", "connection_options"]


def broker_url(url: str | None = None, app: Any = None) -> str:
    """The broker to check: ``url``, else the ``broker_url`` of ``app`` or Celery's current app.

    ``app`` is a Celery app or its dotted path (``"proj.celery:app"`` or
    ``"proj.celery.app"``). Raises :class:`HealthError` when none is known.
    """
    if url:
        return str(url)
    if isinstance(app, str):
        app = import_string(app.replace(":", "."))
    if app is None:
        try:
            from celery import current_app
        except ImportError:
            raise HealthError("no broker URL: set the check's url option") from None
        app = current_app
    found = app.conf.broker_url
    if isinstance(found, (list, tuple)):  # failover URLs: the first is the one in use
        found = found[0] if found else None
    if not found:
        raise HealthError("no broker URL: set the check's url option or the app's broker_url")
    return str(found).split(";", 1)[0]  # "url1;url2": failover, checked like Celery's first


def connection_options(url: str, timeout: float) -> dict[str, Any]:
    """kombu ``Connection`` options that bound every step of one attempt by ``timeout`` seconds."""
    transport = url.split("://", 1)[0].lower()
    options: dict[str, Any] = {"connect_timeout": timeout, "heartbeat": 0}
    if transport.startswith(("redis", "rediss", "sentinel")):
        options["transport_options"] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry_on_timeout": False,
        }
    elif transport.startswith(("amqp", "amqps", "pyamqp")):
        options["transport_options"] = {
            "read_timeout": timeout,
            "write_timeout": timeout,
        }
    return options


class BrokerCheck(HealthCheck):
    """Connects to the message broker once (kombu), within the check's timeout.

    Options: ``url`` (the broker URL; default: the Celery app's
    ``broker_url``), ``app`` (a Celery app's dotted path to read it from) and
    ``timeout`` (seconds; default ``OBSERVABILITY_HEALTH_TIMEOUT``).
    ``observedValue`` is the time to connect, in milliseconds; ``componentId``
    the URL without its password.
    """

    url: str | None = None
    app: Any = None
    component_type = "component"

    def run(self) -> Component:
        from kombu import Connection

        url = broker_url(self.url, self.app)
        timeout = float(self.timeout or valid_or_default("HEALTH_TIMEOUT"))
        connection = Connection(url, **connection_options(url, timeout))
        shown = connection.as_uri()  # the password masked
        start = time.perf_counter()
        try:
            connection.ensure_connection(max_retries=0, timeout=timeout)
        except Exception as exc:
            raise HealthError(f"{shown}: {type(exc).__name__}: {exc}") from exc
        finally:
            connection.release()
        return Component(
            component_id=shown,
            component_type=self.component_type,
            observed_value=round((time.perf_counter() - start) * 1000, 3),
            observed_unit="ms",
        )
