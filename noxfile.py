"""Unit tests on the supported Python/Django combinations besides the main one.

`make test` runs the whole suite (real peers included) on the main
interpreter, then these sessions. Run one with `nox -s "unit-3.13(django='6.1')"`.
"""

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

# (python, django) pairs; Django 6.x needs Python 3.12+.
# The tests of the modules that use prometheus_client beyond its public API.
PROMETHEUS_CLIENT_TESTS = [
    "tests/test_metrics_store.py",
    "tests/test_exposition.py",
    "tests/test_exemplars.py",
    "tests/test_metrics.py",
    "tests/test_metrics_view.py",
    "tests/test_tasks_worker.py",
]

# Unit tests only: the real peers run once, on the main interpreter (`make test`).
UNIT = ("-m", "not peers and not bench", "-q", "-p", "no:cacheprovider")

COMBINATIONS = [
    ("3.12", "6.0"),
    ("3.13", "6.1"),
    ("3.13", "5.2"),
]


@nox.session(name="unit")
@nox.parametrize(("python", "django"), COMBINATIONS)
def unit(session: nox.Session, django: str) -> None:
    session.install(f"django~={django}.0", "-e", ".[test]")
    session.run("python", "-c", "import django, sys; print(sys.version, django.get_version())")
    session.run("pytest", *UNIT, *session.posargs)


@nox.session(name="prometheus-client-oldest", python="3.12")
def prometheus_client_oldest(session: nox.Session) -> None:
    """The tests of what leans on prometheus_client's internals, on the oldest release we
    support: metrics_store/ reads and writes its multiprocess files, exposition.py uses
    its encoders, exemplars.py its sample types (the rest of the suite runs on the newest)."""
    session.install("-e", ".[test]", "prometheus-client==0.23.1")
    session.run("pytest", *UNIT, *(session.posargs or PROMETHEUS_CLIENT_TESTS))


@nox.session(name="http-client-urllib3", python="3.12")
def http_client_urllib3(session: nox.Session) -> None:
    """Outgoing HTTP with opentelemetry-instrumentation-urllib3 too (the ``http`` extra).

    Each release of an OpenTelemetry instrumentation pins the instrumentation
    base of the same release, and urllib3's may lag behind the others on PyPI
    (0.66b2 was missing): pip then installs the newest set of releases that
    agree, here, rather than hold the main environment back."""
    session.install("-e", ".[test,http]")
    session.run("python", "-c", "import opentelemetry.instrumentation.urllib3")
    session.run("pytest", *UNIT, *(session.posargs or ["tests/test_http_client.py"]))
