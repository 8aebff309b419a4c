"""A real OTLP collector (rotel) for the tracing peer tests, and a reader of what it received.

``rotel-agent start ... --exporter=blackhole --debug-log=traces
--debug-log-verbosity=detailed`` prints every span it receives on standard
output, one batch at a time, in the text layout of the OpenTelemetry
Collector's debug exporter::

    ResourceSpans #0
    Resource SchemaURL:
    Resource attributes:
         -> service.name: Str(example-shop)
         -> service.instance.id: Str(68e9185b-...)
    ScopeSpans #0
    ScopeSpans SchemaURL: https://opentelemetry.io/schemas/1.33.0
    InstrumentationScope django_observability 0.1.0
    Span #0
        Trace ID       : 0be9a307d95233c75f467c6535cf2286
        Parent ID      : b8b8d91942c9b0cc        (empty for a root span)
        ID             : 803007b0e5a8bc10
        Name           : SELECT db.sqlite3
        Kind           : SPAN_KIND_CLIENT
    Start time: 1795377713843611535
    End time: 1795377713850876023
        Status code    : STATUS_CODE_UNSET
        Status message :
    Attributes:
         -> db.system.name: Str(sqlite)
         -> server.port: Int(8000)
    Events:
    SpanEvent #0
         -> Name: exception
         -> Attributes::
              -> exception.type: Str(ValueError)

Values are typed (``Str``, ``Int``, ``Double``, ``Bool``, ``Slice``...); a
string with a newline continues on the next lines, up to its closing
parenthesis. Its own log lines (ANSI-coloured, timestamped) go to the same
stream. The output file is opened in append mode and only ever read from an
offset: the collector writes at its own file position, so truncating the
file under it would leave a hole of NUL bytes.

``--pid-file`` is written only with ``--daemon``; a collector run in the
foreground is stopped by the id of the process we started.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.peers import free_port

READY_DEADLINE = 10.0
STOP_TIMEOUT = 5.0


# --- the collector's text output --------------------------------------------------


@dataclass
class Span:
    """One span as the collector printed it."""

    trace_id: str = ""
    span_id: str = ""
    parent_id: str = ""
    name: str = ""
    kind: str = ""  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT...
    status_code: str = ""  # STATUS_CODE_UNSET, STATUS_CODE_ERROR...
    status_message: str = ""
    start_ns: int = 0
    end_ns: int = 0
    scope: str = ""  # "name version"
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # event names

    @property
    def service_instance(self) -> str:
        return str(self.resource.get("service.instance.id", ""))


_TYPED = re.compile(r"(\w+)\((.*)\)", re.DOTALL)
_ATTR = re.compile(r"     -> ([^:]+): (.*)")  # exactly five spaces: one level deep
_SPAN_FIELD = re.compile(
    r"\s+(Trace ID|Parent ID|ID|Name|Kind|Status code|Status message)\s*: ?(.*)"
)
_TIME_FIELD = re.compile(r"(Start time|End time): (\d+)")
_NUMBERED = re.compile(r"(ResourceSpans|ScopeSpans|Span|SpanEvent|SpanLink) #\d+")
_SECTION = re.compile(r"[A-Z][A-Za-z ]*:{1,2}")  # "Attributes:", "Events:", "Links:"...
_LOG_LINE = re.compile(r"\x1b\[|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")

_SPAN_FIELDS = {
    "Trace ID": "trace_id",
    "Parent ID": "parent_id",
    "ID": "span_id",
    "Name": "name",
    "Kind": "kind",
    "Status code": "status_code",
    "Status message": "status_message",
}


def decode_value(raw: str) -> Any:
    """``Str(x)`` -> ``"x"``, ``Int(3)`` -> 3, ``Double(1.5)``, ``Bool(true)``; else as printed."""
    match = _TYPED.fullmatch(raw)
    if not match:
        return raw
    kind, value = match.groups()
    if kind == "Str":
        return value
    try:
        if kind == "Int":
            return int(value)
        if kind == "Double":
            return float(value)
    except ValueError:
        return raw
    if kind == "Bool":
        return value == "true"
    return raw  # Slice(...), Map(...), Bytes(...): kept as printed


def parse_spans(text: str) -> list[Span]:
    """Every span in the collector's output ``text`` (its detailed debug log).

    A block cut at the start (``text`` read from an offset taken mid-batch)
    gives spans without resource attributes; one cut at the end, spans
    without their last attributes. Callers re-read once the output settled.
    """
    spans: list[Span] = []
    resource: dict[str, Any] = {}
    scope = ""
    span: Span | None = None
    section = ""  # "resource", "attributes" or something ignored
    pending: list[str] | None = None  # [key, raw value so far] of a multi-line value

    def finish_pending() -> None:
        nonlocal pending
        if pending is not None:
            target = resource if section == "resource" else span.attributes if span else None
            if target is not None:
                target[pending[0]] = decode_value(pending[1])
            pending = None

    for line in text.split("\n"):
        if _LOG_LINE.match(line):
            continue
        if pending is not None:
            # A value that started on an earlier line goes on until a line that
            # is recognisably the next item.
            if not (
                _ATTR.fullmatch(line)
                or _NUMBERED.fullmatch(line)
                or _SECTION.fullmatch(line)
                or _SPAN_FIELD.fullmatch(line)
                or _TIME_FIELD.fullmatch(line)
                or line.startswith(("Resource SchemaURL:", "ScopeSpans SchemaURL:"))
                or line.startswith("InstrumentationScope ")
            ):
                pending[1] += "\n" + line
                continue
            finish_pending()
        numbered = _NUMBERED.fullmatch(line)
        if numbered:
            kind = numbered.group(1)
            if kind == "ResourceSpans":
                resource, scope, span, section = {}, "", None, ""
            elif kind == "ScopeSpans":
                scope, span, section = "", None, ""
            elif kind == "Span":
                span = Span(scope=scope, resource=resource)
                spans.append(span)
                section = ""
            elif kind == "SpanEvent":
                section = "event"
            else:
                section = "ignored"
            continue
        if line == "Resource attributes:":
            section = "resource"
            continue
        if line.startswith("InstrumentationScope "):
            scope = line[len("InstrumentationScope ") :].strip()
            continue
        if line.startswith(("Resource SchemaURL:", "ScopeSpans SchemaURL:")):
            continue
        if span is not None:
            field_match = _SPAN_FIELD.fullmatch(line)
            if field_match and section not in ("attributes", "resource"):
                setattr(span, _SPAN_FIELDS[field_match.group(1)], field_match.group(2).strip())
                continue
            time_match = _TIME_FIELD.fullmatch(line)
            if time_match:
                value = int(time_match.group(2))
                if time_match.group(1) == "Start time":
                    span.start_ns = value
                else:
                    span.end_ns = value
                continue
            if line == "Attributes:":
                section = "attributes"
                continue
        if _SECTION.fullmatch(line):
            section = "events" if line == "Events:" else "ignored"
            continue
        attr = _ATTR.fullmatch(line)
        if attr and section in ("resource", "attributes"):
            key, raw = attr.groups()
            pending = [key, raw]
            if _TYPED.fullmatch(raw):
                finish_pending()  # complete on its own line: most values
            continue
        if attr and section == "event" and span is not None and attr.group(1) == "Name":
            span.events.append(attr.group(2))
            continue
    finish_pending()
    return spans


# --- the collector process --------------------------------------------------------


def rotel_binary() -> str:
    """The ``rotel-agent`` program that the ``rotel`` package brings."""
    try:
        import rotel
    except ImportError:
        pytest.fail("rotel is not installed (pip install rotel): the tracing peer tests need it")
    path = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
    if not os.access(path, os.X_OK):
        pytest.fail(f"rotel-agent not found or not executable at {path}")
    return path


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Collector:
    """A rotel collector on 127.0.0.1 (OTLP/HTTP and OTLP/gRPC) writing what it receives."""

    workdir: Path
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def out_path(self) -> Path:
        return self.workdir / "rotel.out"

    @property
    def http_endpoint(self) -> str:
        """Base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter appends /v1/traces)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def argv(self) -> list[str]:
        return [
            rotel_binary(),
            "start",
            f"--otlp-http-endpoint=127.0.0.1:{self.http_port}",
            f"--otlp-grpc-endpoint=127.0.0.1:{self.grpc_port}",
            "--exporter=blackhole",
            "--debug-log=traces",
            "--debug-log-verbosity=detailed",
            f"--pid-file={self.workdir / 'rotel.pid'}",
            f"--log-file={self.workdir / 'rotel.log'}",
        ]

    def start(self, deadline: float = READY_DEADLINE) -> None:
        """Start it (again, on the same ports) and wait until both receivers accept connections.

        A restart right after a kill may find a port still held for a moment:
        it is retried until ``deadline``.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
        end = time.monotonic() + deadline
        while True:
            with (
                open(self.out_path, "ab") as out,
                open(self.workdir / "rotel.err", "ab") as err,
            ):
                self.proc = subprocess.Popen(
                    self.argv(),
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            while time.monotonic() < end and self.proc.poll() is None:
                if _accepts(self.http_port) and _accepts(self.grpc_port):
                    return
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.kill()
                pytest.fail(f"rotel not listening within {deadline} s:\n{self.log_tail()}")
            if time.monotonic() >= end:
                pytest.fail(f"rotel exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.2)  # exited (a port not free yet?): try again

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL to its own process group if it does not go."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash would (works on a stopped process too), and reap it."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its processes
        proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: its ports still accept connections (the kernel's backlog), nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    # reading what arrived

    def mark(self) -> int:
        """Position in the output from which later spans are read."""
        try:
            return self.out_path.stat().st_size
        except FileNotFoundError:
            return 0

    def text(self, since: int = 0) -> str:
        try:
            with open(self.out_path, "rb") as f:
                f.seek(since)
                data = f.read()
        except FileNotFoundError:
            return ""
        # Only whole lines: the collector may be in the middle of one.
        data = data[: data.rfind(b"\n") + 1]
        return data.decode("utf-8", errors="replace")

    def spans(self, since: int = 0) -> list[Span]:
        return parse_spans(self.text(since))

    def wait_spans(
        self,
        predicate: Callable[[list[Span]], Any],
        since: int = 0,
        deadline: float = 20.0,
        interval: float = 0.2,
    ) -> list[Span]:
        """Poll the output until ``predicate(spans)`` is truthy; returns the spans.

        On success it reads once more a moment later, so that a batch still
        being printed is complete. On timeout it returns what arrived (the
        caller's assertions then say what is missing).
        """
        end = time.monotonic() + deadline
        while True:
            spans = self.spans(since)
            if predicate(spans):
                time.sleep(0.3)
                return self.spans(since)
            if time.monotonic() >= end:
                return spans
            time.sleep(interval)

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for name in ("rotel.err", "rotel.log"):
            with contextlib.suppress(OSError):
                parts.append(f"--- {name}\n" + (self.workdir / name).read_text(errors="replace"))
        parts.append("--- stdout\n" + self.text(max(0, self.mark() - chars)))
        return "\n".join(parts)[-2 * chars :]


@contextlib.contextmanager
def running_collector(workdir: Path) -> Iterator[Collector]:
    workdir.mkdir(parents=True, exist_ok=True)
    collector = Collector(workdir)
    try:
        collector.start()
        yield collector
    finally:
        collector.kill()


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterable[Collector]:
    """One rotel collector for the session; tests read from their own offset."""
    with running_collector(tmp_path_factory.mktemp("rotel")) as c:
        yield c


@pytest.fixture
def private_collector(tmp_path: Path) -> Iterable[Collector]:
    """A collector of the test's own, that the test may pause, kill and restart."""
    with running_collector(tmp_path / "rotel") as c:
        yield c


# --- helpers over spans -----------------------------------------------------------


def by_request_id(spans: Iterable[Span]) -> dict[str, list[Span]]:
    """Server spans keyed by their ``http.request.id``."""
    out: dict[str, list[Span]] = {}
    for span in spans:
        if span.kind == "SPAN_KIND_SERVER" and "http.request.id" in span.attributes:
            out.setdefault(str(span.attributes["http.request.id"]), []).append(span)
    return out


def children_of(spans: Iterable[Span], parent: Span) -> list[Span]:
    return [s for s in spans if s.parent_id == parent.span_id and s.trace_id == parent.trace_id]


def otel_free_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without any OTEL_* or EXAMPLE_TRACING_* variable from the caller's shell."""
    return {
        k: v
        for k, v in env.items()
        if not k.startswith("OTEL_") and not k.startswith("EXAMPLE_TRACING_")
    }


class SilentCollector:
    """A loopback port that accepts every connection and never reads or answers.

    An OTLP endpoint at its worst: the exporter connects, sends, and waits for a
    reply that never comes. Used by tests/test_peers_exit.py and by
    benchmarks/silent_collector.py.
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1024)
        self.port = self._sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            self.connections.append(conn)  # held open, never read

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()
        for conn in self.connections:
            conn.close()
