"""The SMTP health check: the mail backend's server greets, says hello and answers NOOP, in time.

It reads the connection settings the way sending mail does, from the
configured ``EMAIL_BACKEND`` (Django's SMTP backend, or a subclass of it):
``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_USE_TLS`` (STARTTLS) or
``EMAIL_USE_SSL`` (implicit TLS), the TLS context the backend would use
(certificates verified), and, only with the ``login`` option,
``EMAIL_HOST_USER`` / ``EMAIL_HOST_PASSWORD``. Then: connect and read the
greeting, ``EHLO`` (``HELO`` if refused), ``STARTTLS`` and ``EHLO`` again
when configured, ``AUTH`` if ``login``, ``NOOP``, ``QUIT``. It never sends
``MAIL``, ``RCPT`` or ``DATA``: no mail goes out. Every step gets the time
left of the check's timeout; nothing is retried.

Backends that do not speak SMTP (``locmem``, ``console``, ``filebased``,
``dummy``, an HTTP API provider's) leave nothing to connect to: the check
passes with an ``output`` saying so, so one settings file can list the check
in every environment. For an API provider, check its URL with ``HttpCheck``.

``login`` is off by default: mail providers throttle and may lock accounts
that log in every few seconds from every pod, and a wrong password shows on
the first mail sent anyway.
"""

from __future__ import annotations

import smtplib
import socket
from typing import Any

from django_observability.conf import valid_or_default
from django_observability.health.base import Component, HealthCheck, HealthError
from django_observability.health.net import Budget, describe

__all__ = ["SmtpCheck"]


def _rearm(client: smtplib.SMTP, budget: Budget) -> None:
    """The next step may take only the time left."""
    if client.sock is not None:
        client.sock.settimeout(budget.left())


class SmtpCheck(HealthCheck):
    """Connects to the mail backend's SMTP server within the check's timeout; sends no mail.

    Options: ``backend`` (a mail backend's dotted path; default
    ``EMAIL_BACKEND``), ``login`` (also log in with ``EMAIL_HOST_USER`` /
    ``EMAIL_HOST_PASSWORD``; default ``False``), ``local_hostname`` (the name
    said in ``EHLO``; default this machine's host name, with no DNS lookup)
    and ``timeout``. ``componentId`` is ``smtp://host:port`` (``smtps://``
    with ``EMAIL_USE_SSL``), never the user or password; ``observedValue``
    the time to the ``NOOP`` reply in milliseconds.
    """

    backend: str | None = None
    login: bool = False
    local_hostname: str | None = None
    component_type = "component"

    def run(self) -> Component:
        from django.core.mail import get_connection
        from django.core.mail.backends.smtp import EmailBackend

        connection = get_connection(self.backend)
        if not isinstance(connection, EmailBackend):
            kind = f"{type(connection).__module__}.{type(connection).__qualname__}"
            return Component(
                component_type=self.component_type,
                output=f"{kind} is not an SMTP backend: nothing to connect to",
            )
        budget = Budget(float(self.timeout or valid_or_default("HEALTH_TIMEOUT")))
        shown = f"{'smtps' if connection.use_ssl else 'smtp'}://{connection.host}:{connection.port}"
        try:
            self._converse(connection, budget)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            raise HealthError(f"{shown}: {describe(exc, budget)}") from exc
        return Component(
            component_id=shown,
            component_type=self.component_type,
            observed_value=budget.elapsed_ms(),
            observed_unit="ms",
        )

    def _converse(self, connection: Any, budget: Budget) -> None:
        local_hostname = self.local_hostname or socket.gethostname()
        host, port = connection.host, int(connection.port)
        # Connecting in the constructor, as Django's backend does: it reads the
        # greeting (anything but 220 raises) and names the host for TLS.
        client: smtplib.SMTP
        if connection.use_ssl:
            client = smtplib.SMTP_SSL(
                host,
                port,
                local_hostname=local_hostname,
                timeout=budget.left(),
                context=connection.ssl_context,
            )
        else:
            client = smtplib.SMTP(host, port, local_hostname=local_hostname, timeout=budget.left())
        try:
            _rearm(client, budget)
            client.ehlo_or_helo_if_needed()
            if connection.use_tls:
                _rearm(client, budget)
                client.starttls(context=connection.ssl_context)
                _rearm(client, budget)
                client.ehlo()
            if self.login and connection.username:
                _rearm(client, budget)
                client.login(connection.username, connection.password)
            _rearm(client, budget)
            code, message = client.noop()
            if code != 250:
                raise smtplib.SMTPResponseException(code, message)
            try:
                _rearm(client, budget)
                client.quit()
            except (smtplib.SMTPException, OSError):
                pass  # NOOP was answered: the server works; how it hangs up does not matter
        finally:
            client.close()
