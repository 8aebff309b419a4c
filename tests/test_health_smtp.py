"""SmtpCheck: the mail backend's server greets, says hello and answers NOOP; no mail; bounded.

A small SMTP responder on a thread records every command it receives, so the
tests see what the check says (and that it never says MAIL, RCPT or DATA).
tests/test_peers_dependency_checks.py stops a real SMTP server process with SIGSTOP.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.fake_peers")
from django.test import Client, override_settings  # noqa: E402

from django_observability.health import registry  # noqa: E402
from django_observability.health.base import FAIL, PASS, HealthError  # noqa: E402
from django_observability.health.runner import CheckSpec, run_check  # noqa: E402
from django_observability.health.smtp import SmtpCheck  # noqa: E402
from tests.fake_peers import FakeServer, Peer, server_context  # noqa: E402
from tests.health_state import fresh_health  # noqa: E402, F401

# The fixtures silent_port, refused_port and tls_files.
pytest_plugins = ["tests.fake_peers"]

SMTP_CHECK = "django_observability.health.smtp.SmtpCheck"
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def smtp_like(
    greeting: bytes = b"220 fake ESMTP ready",
    noop: bytes = b"250 2.0.0 OK",
    starttls: ssl.SSLContext | None = None,
    ehlo: bool = True,
):
    """A handler speaking the server's side of the commands the check may send."""

    def handle(peer: Peer) -> None:
        peer.send(greeting + b"\r\n")
        secure = False
        while (line := peer.line()) is not None:
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"EHLO" and ehlo:
                extensions = [b"fake", b"AUTH PLAIN LOGIN", b"8BITMIME"]
                if starttls is not None and not secure:
                    extensions.insert(1, b"STARTTLS")
                lines = [b"250-" + e for e in extensions[:-1]] + [b"250 " + extensions[-1]]
                peer.send(b"\r\n".join(lines) + b"\r\n")
            elif verb == b"HELO":
                peer.send(b"250 fake\r\n")
            elif verb == b"STARTTLS" and starttls is not None:
                peer.send(b"220 2.0.0 ready to start TLS\r\n")
                peer.starttls(starttls)
                secure = True
            elif verb == b"AUTH":
                peer.send(b"235 2.7.0 Authentication successful\r\n")
            elif verb == b"NOOP":
                peer.send(noop + b"\r\n")
            elif verb == b"QUIT":
                peer.send(b"221 2.0.0 bye\r\n")
                return
            else:
                peer.send(b"502 5.5.2 not here\r\n")

    return handle


def verbs(fake: FakeServer) -> list[str]:
    return [line.split(b" ", 1)[0].decode().upper() for line in fake.received]


def mail_settings(port: int, **extra):
    return override_settings(
        EMAIL_BACKEND=SMTP_BACKEND,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=port,
        EMAIL_HOST_USER="mailer",
        EMAIL_HOST_PASSWORD="s3cret",
        **extra,
    )


# --- the conversation ---------------------------------------------------------------


def test_greeting_ehlo_noop_quit_and_no_mail():
    with FakeServer(smtp_like()) as fake, mail_settings(fake.port):
        component = SmtpCheck(timeout=2.0).run()
    assert component.status == PASS
    assert component.component_id == f"smtp://127.0.0.1:{fake.port}"
    assert component.component_type == "component"
    assert component.observed_unit == "ms"
    assert verbs(fake) == ["EHLO", "NOOP", "QUIT"]
    shown = str(component.as_dict())
    assert "mailer" not in shown
    assert "s3cret" not in shown


def test_helo_when_ehlo_is_refused():
    with FakeServer(smtp_like(ehlo=False)) as fake, mail_settings(fake.port):
        assert SmtpCheck(timeout=2.0).run().status == PASS
    assert verbs(fake) == ["EHLO", "HELO", "NOOP", "QUIT"]


def test_login_only_when_asked():
    with FakeServer(smtp_like()) as fake, mail_settings(fake.port):
        SmtpCheck(timeout=2.0).run()
        assert "AUTH" not in verbs(fake)
        SmtpCheck(login=True, timeout=2.0).run()
    assert "AUTH" in verbs(fake)


def test_the_backend_option_and_its_settings():
    # The test environment's EMAIL_BACKEND is locmem; the option names SMTP.
    with FakeServer(smtp_like()) as fake:
        overridden = override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=fake.port)
        with overridden:
            component = SmtpCheck(backend=SMTP_BACKEND, timeout=2.0).run()
    assert component.component_id == f"smtp://127.0.0.1:{fake.port}"
    assert verbs(fake) == ["EHLO", "NOOP", "QUIT"]


@pytest.mark.parametrize(
    ("greeting", "noop", "expected"),
    [
        (b"554 5.3.2 not accepting connections", b"250 OK", "554"),
        (b"220 ready", b"421 4.3.2 shutting down", "421"),
    ],
)
def test_a_refusal_fails_with_the_servers_words(greeting, noop, expected):
    with FakeServer(smtp_like(greeting=greeting, noop=noop)) as fake, mail_settings(fake.port):
        result = run_check(CheckSpec("smtp", SmtpCheck(timeout=2.0), 2.0))
    assert result.status == FAIL
    output = result.components[0].output
    assert output.startswith(f"smtp://127.0.0.1:{fake.port}: ")
    assert expected in output
    assert "MAIL" not in verbs(fake)


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
    ],
)
def test_a_backend_without_smtp_passes_with_a_note(backend, tmp_path):
    with override_settings(EMAIL_BACKEND=backend, EMAIL_FILE_PATH=str(tmp_path)):
        component = SmtpCheck().run()
    assert component.status == PASS
    assert component.output == f"{backend} is not an SMTP backend: nothing to connect to"


# --- TLS ----------------------------------------------------------------------------


def test_starttls_when_configured_with_the_certificate_verified(
    tls_files: tuple[Path, Path], monkeypatch
):
    handler = smtp_like(starttls=server_context(tls_files))
    with FakeServer(handler) as fake, mail_settings(fake.port, EMAIL_USE_TLS=True):
        with pytest.raises(HealthError, match="CERTIFICATE_VERIFY_FAILED"):
            SmtpCheck(timeout=2.0).run()
        # Trusted as the backend would trust it (its default context reads SSL_CERT_FILE).
        monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
        assert SmtpCheck(timeout=2.0).run().status == PASS
    assert verbs(fake)[-4:] == ["STARTTLS", "EHLO", "NOOP", "QUIT"]


def test_implicit_tls(tls_files: tuple[Path, Path], monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
    fake = FakeServer(smtp_like(), tls=server_context(tls_files))
    with fake, mail_settings(fake.port, EMAIL_USE_SSL=True):
        component = SmtpCheck(timeout=2.0).run()
    assert component.status == PASS
    assert component.component_id == f"smtps://127.0.0.1:{fake.port}"


# --- bounded ------------------------------------------------------------------------


def test_a_server_that_never_answers_fails_within_the_timeout(silent_port):
    with mail_settings(silent_port):
        start = time.monotonic()
        with pytest.raises(HealthError) as caught:
            SmtpCheck(timeout=0.3).run()
    assert time.monotonic() - start < 1.5
    assert str(caught.value) == f"smtp://127.0.0.1:{silent_port}: no answer within 0.3 s"


def test_a_server_that_greets_then_hangs_fails_within_the_timeout():
    def greet_then_hang(peer: Peer) -> None:
        peer.send(b"220 hello\r\n")
        time.sleep(3)

    with FakeServer(greet_then_hang) as fake, mail_settings(fake.port):
        start = time.monotonic()
        with pytest.raises(HealthError, match=r"no answer within 0\.3 s"):
            SmtpCheck(timeout=0.3).run()
    assert time.monotonic() - start < 1.5


def test_readiness_with_a_hung_mail_server_answers_in_time(silent_port):
    client = Client()
    with (
        mail_settings(silent_port),
        override_settings(
            OBSERVABILITY_HEALTH_CHECKS={"mail": (SMTP_CHECK, {"timeout": 0.3})},
            OBSERVABILITY_HEALTH_READINESS_CHECKS=["mail"],
            OBSERVABILITY_HEALTH_CACHE_SECONDS=0,
            OBSERVABILITY_HEALTH_DEADLINE=0.6,
        ),
    ):
        registry.reset()
        client.get("/health/live/")  # the first request of a process loads the URLconf
        for _ in range(3):
            start = time.monotonic()
            response = client.get("/health/ready/")
            assert time.monotonic() - start < 0.9
            assert response.status_code == 503
