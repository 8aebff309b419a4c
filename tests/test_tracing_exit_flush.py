"""The bounded flush at exit (``django_observability.tracing.exit_flush``) and the
shared record of export outcomes it reads (``tracing.outcomes``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from django_observability import tracing
from django_observability.tracing import exit_flush, outcomes
from django_observability.tracing import provider as tracing_provider
from django_observability.tracing.processor import processors_of


class ScriptedExporter:
    """An exporter doing, call after call, what its script says, then ``then``.

    Steps: ``"ok"`` (keeps the spans), ``"fail"`` (returns FAILURE, as the
    OTLP exporters do once their timeout passed), ``"raise"``, ``"block"``
    (waits until the test ends, like a collector that never answers), or a
    number of seconds to wait before failing.
    """

    def __init__(self, *script, then="ok"):
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.script = list(script)
        self.then = then
        self.calls = 0
        self.exported = []
        self.shut_down = False
        self.release = threading.Event()
        self._result = SpanExportResult

    def export(self, spans):
        self.calls += 1
        step = self.script.pop(0) if self.script else self.then
        if step == "block":
            self.release.wait(60)
            return self._result.FAILURE
        if step == "fail":
            return self._result.FAILURE
        if step == "raise":
            raise ConnectionError("collector gone")
        if isinstance(step, float):
            time.sleep(step)
            return self._result.FAILURE
        self.exported.extend(spans)
        return self._result.SUCCESS

    def shutdown(self):
        self.shut_down = True

    def force_flush(self, timeout_millis=30000):
        return True


@pytest.fixture
def exiting(monkeypatch):
    """Installs a provider of ours exporting to a ScriptedExporter; yields a factory.

    ``exiting(exporter)`` returns a tracer of that provider. The process has
    not flushed yet, and no export of any earlier test counts as its last.
    """
    made = []

    def install(exporter, name="otlp"):
        monkeypatch.setattr(tracing_provider, "make_exporter", lambda _name: lambda: exporter)
        provider = tracing.build_provider(name)
        exit_flush.watch(provider)
        made.append((exporter, provider))
        return provider.get_tracer("tests")

    exit_flush.reset()
    outcomes.reset()
    yield install
    # Let the exports left waiting end, and their outcomes land, before the
    # next test starts from a clean record.
    for exporter, provider in made:
        exporter.release.set()
        for processor in processors_of(provider):
            recorder = processor.recorder
            deadline = time.monotonic() + 5
            while recorder is not None and recorder.in_flight and time.monotonic() < deadline:
                time.sleep(0.01)
    exit_flush.reset()
    outcomes.reset()


def end_spans(tracer, count):
    for _ in range(count):
        tracer.start_span("work").end()


def timed_flush(timeout=None):
    start = time.monotonic()
    result = tracing.flush_on_exit(timeout)
    return result, time.monotonic() - start


def test_flush_on_exit_exports_every_span(exiting, caplog):
    exporter = ScriptedExporter()
    end_spans(exiting(exporter), 1200)  # more than a batch (512)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(5.0)
    assert result is True
    assert len(exporter.exported) == 1200
    assert exporter.shut_down
    assert elapsed < 2.0
    assert "dropped" not in caplog.text


def test_flush_on_exit_is_bounded_when_the_collector_never_answers(exiting, caplog):
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 10)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(0.3)
    assert result is False
    assert 0.3 <= elapsed < 0.8
    assert exporter.calls == 1  # it tried
    assert "the collector did not answer within 0.3 s; 10 spans dropped at exit" in caplog.text


def test_no_wait_at_all_when_the_last_export_failed(exiting, caplog):
    exporter = ScriptedExporter("fail", then="block")
    tracer = exiting(exporter)
    end_spans(tracer, 3)
    assert exit_flush.watched().force_flush()  # the export that fails
    end_spans(tracer, 7)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(5.0)
    assert result is False
    assert elapsed < 0.2
    assert exporter.calls == 1  # no second try
    assert "the last export failed; 7 spans dropped at exit" in caplog.text


def test_a_flush_that_ran_out_of_time_counts_as_a_failed_export(exiting):
    """The next worker to exit (the replacement of this one, forked from the same
    master) does not wait for a collector that just let a flush time out."""
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 3)
    (processor,) = processors_of(exit_flush.watched())
    assert not processor.last_export_failed
    assert tracing.flush_on_exit(0.2) is False
    assert processor.last_export_failed


def test_an_old_failure_is_forgotten(exiting, monkeypatch):
    """Workers that exit before their first scheduled export would otherwise
    never find out that the collector is back."""
    exporter = ScriptedExporter("fail", then="ok")
    tracer = exiting(exporter)
    end_spans(tracer, 2)
    exit_flush.watched().force_flush()
    (processor,) = processors_of(exit_flush.watched())
    assert processor.last_export_failed
    monkeypatch.setattr(outcomes, "FAILURE_MEMORY", 0.05)
    time.sleep(0.1)
    assert not processor.last_export_failed
    end_spans(tracer, 5)
    assert tracing.flush_on_exit(5.0) is True
    assert len(exporter.exported) == 5


def test_an_exception_counts_as_a_failed_export(exiting):
    exporter = ScriptedExporter("raise", then="block")
    tracer = exiting(exporter)
    end_spans(tracer, 2)
    exit_flush.watched().force_flush()
    end_spans(tracer, 2)
    result, elapsed = timed_flush(5.0)
    assert result is False
    assert elapsed < 0.2


def test_a_success_since_the_failure_means_waiting_again(exiting):
    exporter = ScriptedExporter("fail", "ok", then="ok")
    tracer = exiting(exporter)
    end_spans(tracer, 2)
    exit_flush.watched().force_flush()
    end_spans(tracer, 3)
    exit_flush.watched().force_flush()
    end_spans(tracer, 4)
    assert tracing.flush_on_exit(5.0) is True
    assert len(exporter.exported) == 7


def test_an_export_failing_during_the_wait_ends_it(exiting, caplog):
    # Two batches: the first fails after 0.2 s; the second would take another.
    exporter = ScriptedExporter(then=0.2)
    end_spans(exiting(exporter), 600)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(5.0)
    assert result is False
    assert 0.2 <= elapsed < 0.35  # not 0.4: the second batch is not waited for
    assert "an export failed at exit; 600 spans dropped at exit" in caplog.text


def test_flush_on_exit_runs_once(exiting):
    exporter = ScriptedExporter(then="block")
    tracer = exiting(exporter)
    end_spans(tracer, 5)
    assert tracing.flush_on_exit(0.2) is False
    end_spans(tracer, 5)
    calls = exporter.calls
    result, elapsed = timed_flush(5.0)
    assert result is False  # the first call's answer
    assert elapsed < 0.05
    assert exporter.calls == calls


def test_flush_on_exit_takes_the_setting(exiting, settings):
    settings.OBSERVABILITY_TRACING_EXIT_TIMEOUT = 0.2
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 1)
    result, elapsed = timed_flush()
    assert result is False
    assert 0.2 <= elapsed < 0.6


def test_a_zero_timeout_does_not_wait(exiting, caplog):
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 4)
    with caplog.at_level("WARNING", logger="django_observability.tracing"):
        result, elapsed = timed_flush(0)
    assert result is False
    assert elapsed < 0.1
    assert "no time to wait (timeout 0); 4 spans dropped" in caplog.text


def test_nothing_to_flush(exiting):
    assert tracing.flush_on_exit() is True  # no provider of ours
    exporter = ScriptedExporter(then="block")
    exiting(exporter)  # a provider, but no span ended in this process
    provider = exit_flush.watched()
    exit_flush.reset()  # the flush above counted: this process flushes again
    exit_flush.watch(provider)
    result, elapsed = timed_flush(5.0)
    assert result is True
    assert elapsed < 0.2
    assert exporter.calls == 0


def test_flush_on_exit_never_raises(exiting, monkeypatch, caplog):
    exporter = ScriptedExporter()
    end_spans(exiting(exporter), 1)

    def broken(timeout):
        raise RuntimeError("boom")

    monkeypatch.setattr(exit_flush, "_flush_within", broken)
    with caplog.at_level("ERROR", logger="django_observability.tracing"):
        assert tracing.flush_on_exit() is False
    assert "flush at exit failed" in caplog.text


def test_bounded_without_a_thread_to_spare(exiting, monkeypatch):
    """Python 3.12.0/3.12.1 start no thread in atexit: the shutdown then runs in the
    caller, with the SDK's own timeout on joining its export thread."""
    monkeypatch.setattr(exit_flush._Flush, "start", lambda self: False)
    exporter = ScriptedExporter(then="block")
    end_spans(exiting(exporter), 6)
    result, elapsed = timed_flush(0.3)
    assert result is False
    assert 0.3 <= elapsed < 0.8


def test_everything_exported_without_a_thread_to_spare(exiting, monkeypatch):
    monkeypatch.setattr(exit_flush._Flush, "start", lambda self: False)
    exporter = ScriptedExporter()
    end_spans(exiting(exporter), 600)
    assert tracing.flush_on_exit(2.0) is True
    assert len(exporter.exported) == 600


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_export_outcomes_are_shared_with_forked_workers():
    """A worker forked from the master sees how its siblings' last exports ended."""
    outcomes.reset()
    try:
        pid = os.fork()
        if pid == 0:  # the child: a worker whose export failed
            outcomes.record(outcomes.slot_for("otlp"), outcomes.OUTCOME_FAILED)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        processor = tracing.PerProcessSpanProcessor(lambda: None, name="otlp")
        assert processor.last_export_failed
        assert not tracing.PerProcessSpanProcessor(lambda: None, name="console").last_export_failed
    finally:
        outcomes.reset()


@pytest.mark.parametrize("value", [0, -1, "1", None, float("inf"), float("nan"), True])
def test_exit_timeout_setting_is_checked(settings, caplog, value):
    from django.core.checks import run_checks

    settings.OBSERVABILITY_TRACING_EXIT_TIMEOUT = value
    (message,) = [m for m in run_checks() if m.id == "django_observability.E048"]
    assert "OBSERVABILITY_TRACING_EXIT_TIMEOUT" in message.msg
    with caplog.at_level("ERROR", logger="django_observability"):
        assert tracing.exit_timeout() == 1.0  # the default, with an error line
    assert "OBSERVABILITY_TRACING_EXIT_TIMEOUT" in caplog.text


def test_exit_timeout_setting(settings):
    from django.core.checks import run_checks

    assert tracing.exit_timeout() == 1.0
    settings.OBSERVABILITY_TRACING_EXIT_TIMEOUT = 2.5
    assert tracing.exit_timeout() == 2.5
    assert not [m for m in run_checks() if m.id == "django_observability.E048"]


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import django
    from django.conf import settings
    settings.configure(
        INSTALLED_APPS=["django_observability"],
        OBSERVABILITY_SERVICE_NAME="exit-test",
        OBSERVABILITY_TRACING_EXPORTER="otlp",
        OBSERVABILITY_TRACING_OTLP_ENDPOINT=sys.argv[1],
        OBSERVABILITY_TRACING_EXPORT_TIMEOUT=5.0,
        OBSERVABILITY_TRACING_EXIT_TIMEOUT=0.5,
    )
    django.setup()
    from opentelemetry import trace
    tracer = trace.get_tracer("exit-test")
    for _ in range(600):  # a batch goes out at once and hangs; the rest is queued
        tracer.start_span("work").end()
    time.sleep(0.2)
    print(time.time(), flush=True)  # then the interpreter exits: atexit flushes
    """
)


def test_the_atexit_flush_is_bounded_with_a_silent_collector(tmp_path):
    """A real OTLP/HTTP exporter, a loopback port that accepts and never answers:
    the process ends within the exit timeout, not after the export timeouts
    (5 s for the batch in flight, 5 s more for the one queued behind it)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshakes; nobody reads
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        for name in ("DJANGO_SETTINGS_MODULE", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
            env.pop(name, None)
        result = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, endpoint],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        ended = time.time()
    assert result.returncode == 0, result.stderr
    exiting_at = float(result.stdout.split()[-1])
    assert ended - exiting_at < 0.5 + 1.0, result.stderr  # the bound, and slack to exit
    assert "the collector did not answer within 0.5 s; 600 spans dropped at exit" in (result.stderr)
