"""A worker's main process: the multiprocess store, ``/metrics`` and the heartbeat.

Celery's prefork pool runs tasks in child processes, so a worker keeps its
metrics the way a gunicorn server does: in Prometheus multiprocess mode, every
process writing its own files in ``PROMETHEUS_MULTIPROC_DIR``
(``metrics_store``), which the main process reads when it is scraped.

When Celery loads what, and so where the directory is set
    ``celery -A proj worker`` imports ``proj``'s Celery app module first; the
    worker then sets Django up (Celery's Django fix-up, on ``import_modules``)
    and so runs this app's ``ready()``, which imports prometheus_client; only
    then is ``worker_init`` sent. prometheus_client decides at import whether
    values go to files, so ``worker_init`` is too late to set the directory.
    Either the environment names it (``PROMETHEUS_MULTIPROC_DIR``, as for
    gunicorn: the way for containers), or the app module calls
    :func:`configure` before anything imports prometheus_client: in a process
    that is starting a worker (the ``celery`` command line's ``worker``
    sub-command) it makes a private temporary directory, removed when the
    worker exits; anywhere else (web processes import the same module) it
    does nothing.

Connected by :func:`install` (``AppConfig.ready()``) to Celery's signals:

``worker_init`` (main process, before the pool forks)
    Empties the store (an earlier run's files would be added to this run's
    totals) and warns when a prefork pool runs without the directory.
``worker_process_init`` (each pool child, after the fork)
    Values written with their space reserved (``metrics_store.install``);
    the main process's listening socket, inherited, is closed.
``worker_process_shutdown`` (each pool child, as it exits)
    Stores what it kept in memory; the main process archives its files at the
    next housekeeping tick or scrape (``compact_dead``).
``worker_ready`` (main process)
    Serves ``/metrics`` on ``OBSERVABILITY_WORKER_METRICS_PORT`` (see
    :class:`MetricsServer`) and starts the housekeeping thread: every
    ``OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL`` seconds it rewrites the
    heartbeat file (``OBSERVABILITY_WORKER_HEARTBEAT_FILE``) that
    ``manage.py observability_worker_alive`` reads, and compacts the files
    of children that exited.
``worker_shutdown`` (main process)
    Stops both and removes the heartbeat file.

The ``django.tasks`` database worker (django-tasks-db's ``manage.py
db_worker``) is a single process: ``tasks.db_worker`` calls
:func:`start_services` and :func:`stop_services` around its loop, and its
metrics stay in memory unless ``PROMETHEUS_MULTIPROC_DIR`` is set.

Nothing here may stop a worker: a port already taken, a store that cannot be
written or a heartbeat file that cannot be made is logged once and the worker
runs on.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from django_observability.faults import fault

__all__ = [
    "Heartbeat",
    "MetricsServer",
    "configure",
    "install",
    "metrics_app",
    "serving_port",
    "start_services",
    "starting_worker",
    "stop_services",
    "uninstall",
    "write_heartbeat",
]

logger = logging.getLogger("django_observability")

_ENVIRON = "PROMETHEUS_MULTIPROC_DIR"

# The private directory configure() made: (path, pid of the process that made it).
_private_dir: tuple[str, int] | None = None


class _ForkGuard:
    """Keeps the pool from forking while a thread of the main process holds the store's lock.

    The store's lock is an ``flock`` on an open file; a child forked while a
    scrape or a compaction of the main process holds it inherits the open
    file, and with it the lock, for as long as the child lives: every later
    compaction would find the store busy. The main process's threads take
    this guard around their use of the store, and a fork waits for it
    (``os.register_at_fork``). A scrape takes milliseconds.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._registered = False

    def register(self) -> None:
        if not self._registered:
            self._registered = True
            # self.lock looked up at each fork: a child has a lock of its own.
            os.register_at_fork(
                before=lambda: self.lock.acquire(),
                after_in_parent=lambda: self.lock.release(),
                after_in_child=self._reset,
            )

    def _reset(self) -> None:
        self.lock = threading.Lock()  # the child has none of the parent's threads

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


fork_guard = _ForkGuard()


# --- the multiprocess directory ----------------------------------------------------------


def starting_worker() -> bool:
    """Whether this process is the ``celery`` command line starting its ``worker`` sub-command.

    Read from click's current context, which the ``celery`` command has
    while it imports the ``-A`` app module: exact, where guessing from
    ``sys.argv`` is not (an app may be called ``worker``).
    """
    click = sys.modules.get("click")
    if click is None:
        return False
    context = click.get_current_context(silent=True)
    while context is not None:
        if context.invoked_subcommand == "worker" or getattr(context, "info_name", "") == "worker":
            return True
        context = context.parent
    return False


def configure() -> str | None:
    """Make a worker started here use a private multiprocess directory; returns the directory.

    Call it at the top of the Celery app module (``proj/celery.py``), before
    anything imports prometheus_client (Django's setup does). It acts only
    in a process that is starting a Celery worker and has no
    ``PROMETHEUS_MULTIPROC_DIR``: it makes an empty temporary directory, sets
    the variable (the pool's children inherit it) and removes the directory
    when the worker exits. Elsewhere, and when the variable is already set,
    it changes nothing and returns the variable's value (or ``None``).
    Never raises.
    """
    global _private_dir
    current = os.environ.get(_ENVIRON) or None
    if current is not None or not starting_worker():
        return current
    try:
        if "prometheus_client.values" in sys.modules:
            logger.warning(
                "django_observability: configure() ran after prometheus_client was imported: "
                "the worker's pool keeps its metrics in memory; call it first in the Celery "
                "app module, or set %s",
                _ENVIRON,
            )
            return None
        path = tempfile.mkdtemp(prefix="django-observability-worker-")
        os.environ[_ENVIRON] = path
        _private_dir = (path, os.getpid())
        atexit.register(_remove_private_dir)
        return path
    except Exception:
        fault("tasks.worker.configure")
        return None


def _remove_private_dir() -> None:
    if _private_dir is not None and _private_dir[1] == os.getpid():
        shutil.rmtree(_private_dir[0], ignore_errors=True)


def _is_prefork(worker: Any) -> bool:
    pool = getattr(worker, "pool_cls", None)
    module = getattr(pool, "__module__", "") or (pool if isinstance(pool, str) else "")
    return "prefork" in str(module)


def _multiprocess() -> bool:
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


# --- /metrics ----------------------------------------------------------------------------


def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """WSGI: ``GET``/``HEAD`` of ``/metrics`` answered as the web app answers it.

    Through :func:`django_observability.views.answer_scrape`: the token
    compared in constant time, the allowed addresses, OpenMetrics when asked
    for, gzip. Any other path is 404, any other method 405.
    """
    from django.core.handlers.wsgi import WSGIRequest

    from django_observability.views import answer_scrape

    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET").upper()
    text = [("Content-Type", "text/plain; charset=utf-8")]
    if path != "/metrics":
        start_response("404 Not Found", text)
        return [b"not found; try /metrics\n"]
    if method not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [*text, ("Allow", "GET, HEAD")])
        return [b"method not allowed\n"]
    try:
        with fork_guard:
            response = answer_scrape(WSGIRequest(environ))
    except Exception:
        fault("tasks.worker.metrics")
        start_response("500 Internal Server Error", text)
        return [b"metrics could not be collected\n"]
    status = f"{response.status_code} {response.reason_phrase}"
    headers = [(str(k), str(v)) for k, v in response.items()]
    start_response(status, headers)
    return [response.content]


class _Handler(WSGIRequestHandler):
    timeout = 10.0  # a client that sends nothing in 10 s is dropped (a socket timeout)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a scrape every few seconds is not worth a log line."""


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref's server, a daemon thread per connection, at most ``MAX_CONNECTIONS`` at once."""

    daemon_threads = True
    block_on_close = False
    MAX_CONNECTIONS = 8

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: this one is closed unanswered
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` of a worker, served from the main process on its own threads."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Bind and serve; ``False`` (logged) when the address cannot be bound."""
        server_class = _Server6 if ":" in self.host else _Server
        try:
            server = server_class((self.host, self.port), _Handler)
        except OSError as exc:
            logger.error(
                "django_observability: the worker's /metrics cannot listen on %s:%s (%s); "
                "the worker runs without it",
                self.host,
                self.port,
                exc.strerror or exc,
            )
            return False
        server.set_app(metrics_app)
        self._server = server
        self.port = server.server_address[1]  # the port given, or the one chosen for 0
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="observability-worker-metrics",
            daemon=True,
        )
        self._thread.start()
        logger.info(
            "django_observability: the worker serves /metrics on %s:%s", self.host, self.port
        )
        return True

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def close_inherited(self) -> None:
        """In a forked child: close the listening socket without touching the parent's server."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.socket.close()


# --- the heartbeat and the housekeeping ------------------------------------------------


def write_heartbeat(path: str) -> None:
    """Write ``path`` anew (pid and time) in one step: a reader never sees half a file."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()} {time.time():.3f}\n")
    os.replace(temporary, path)


class Heartbeat:
    """The main process's housekeeping thread: the heartbeat file, then compaction.

    A thread of the main process, not Celery's event loop nor its broker
    heartbeats: it keeps beating while the broker is away (the worker
    reconnects by itself; restarting it would not bring the broker back:
    the broker health check reports that), and stops when the main process
    does: killed, stopped (``SIGSTOP``, a frozen container), or stuck in
    code that never lets the interpreter run another thread.
    """

    def __init__(self, path: str, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(
            target=self._run, name="observability-worker-heartbeat", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """One tick: the heartbeat file, then the files of children that exited. Never raises."""
        try:
            write_heartbeat(self.path)
            if self._failed:
                self._failed = False
                logger.warning("django_observability: the worker heartbeat is written again")
        except OSError as exc:
            if not self._failed:
                self._failed = True
                logger.error(
                    "django_observability: the worker heartbeat %s cannot be written: %s",
                    self.path,
                    exc.strerror or exc,
                )
        from django_observability import metrics_store

        try:
            path = metrics_store.directory()
            if path is not None:
                # The pool's children that exited: live gauges dropped, totals
                # archived (a scrape does it too; this keeps an unscraped
                # worker's directory small).
                with fork_guard:
                    metrics_store.compact_dead(path, only_if_pid_named=True)
        except metrics_store.StoreBusy:
            pass  # a scrape holds the store: the next tick compacts
        except Exception:
            fault("tasks.worker.compact")

    def stop(self, remove: bool = True) -> None:
        self._stop.set()
        if remove:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


# --- Celery's signals --------------------------------------------------------------------

_server: MetricsServer | None = None
_heartbeat: Heartbeat | None = None


def worker_init(sender: Any = None, **kwargs: Any) -> None:
    """``worker_init`` (main process, before the pool starts): an empty store."""
    try:
        from django_observability import metrics_store

        path = metrics_store.directory()
        if path is None:
            if _is_prefork(sender):
                logger.warning(
                    "django_observability: a prefork worker without %s: the pool's children "
                    "keep their task metrics to themselves and the worker's /metrics does not "
                    "show them; set it, or call django_observability.tasks.worker.configure() "
                    "first in the Celery app module (docs/workers.md)",
                    _ENVIRON,
                )
            return
        if not _multiprocess():
            logger.warning(
                "django_observability: %s was set after prometheus_client was imported: "
                "this worker keeps its metrics in memory (docs/workers.md)",
                _ENVIRON,
            )
            return
        metrics_store.clear(path)
    except Exception:
        fault("tasks.worker.worker_init")


def worker_ready(sender: Any = None, **kwargs: Any) -> None:
    """``worker_ready`` (main process): ``/metrics`` served, the heartbeat started."""
    start_services()


def start_services() -> None:
    """Serve ``/metrics`` and start the heartbeat in this process (a worker's main process).

    ``/metrics`` on ``OBSERVABILITY_WORKER_METRICS_PORT`` (none when it is
    ``None``), the heartbeat every ``OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL``
    seconds in ``OBSERVABILITY_WORKER_HEARTBEAT_FILE``. Each is started once;
    :func:`stop_services` stops both. Used by Celery's ``worker_ready`` and by
    the ``django.tasks`` database worker (``tasks.db_worker``). Never raises.
    """
    global _server, _heartbeat
    from django_observability.conf import listen_address, valid_or_default
    from django_observability.metrics import get_metrics

    fork_guard.register()  # before the threads that use the store start
    try:
        # The main process's own series (build info) exist from now on, and
        # its files name it by pid, which compaction looks for.
        get_metrics()
    except Exception:
        fault("tasks.worker.metrics")
    try:
        address = listen_address(valid_or_default("WORKER_METRICS_PORT"))
        if address is not None and _server is None:
            server = MetricsServer(*address)
            if server.start():
                _server = server
    except Exception:
        fault("tasks.worker.metrics_server")
    try:
        if _heartbeat is None:
            _heartbeat = Heartbeat(
                valid_or_default("WORKER_HEARTBEAT_FILE"),
                valid_or_default("WORKER_HEARTBEAT_INTERVAL"),
            )
            _heartbeat.start()
    except Exception:
        fault("tasks.worker.heartbeat")


def serving_port() -> int | None:
    """The port this process serves ``/metrics`` on (the one chosen for 0), or ``None``."""
    return None if _server is None else _server.port


def worker_process_init(**kwargs: Any) -> None:
    """``worker_process_init`` (a pool child): reserved-space writer; the parent's socket closed."""
    global _server, _heartbeat
    try:
        from django_observability import metrics_store
        from django_observability.metrics import get_metrics

        metrics_store.install()
        metrics = get_metrics()
        if metrics is not None:
            metrics.update_process(force=True)  # this child's figures, not zeros
        if _server is not None:
            _server.close_inherited()
            _server = None
        _heartbeat = None  # its thread stayed in the parent
    except Exception:
        fault("tasks.worker.process_init")


def worker_process_shutdown(**kwargs: Any) -> None:
    """``worker_process_shutdown`` (a pool child): what it kept in memory is stored."""
    try:
        if os.environ.get(_ENVIRON):
            from django_observability import metrics_store

            metrics_store.store_pending()
    except Exception:
        fault("tasks.worker.process_shutdown")


def worker_shutdown(**kwargs: Any) -> None:
    """``worker_shutdown`` (main process): ``/metrics`` and the heartbeat stopped."""
    stop_services()


def stop_services() -> None:
    """Stop what :func:`start_services` started; the heartbeat file is removed. Never raises."""
    global _server, _heartbeat
    try:
        if _server is not None:
            _server.stop()
            _server = None
        if _heartbeat is not None:
            _heartbeat.stop()
            _heartbeat = None
    except Exception:
        fault("tasks.worker.shutdown")


_RECEIVERS = (
    ("worker_init", worker_init),
    ("worker_ready", worker_ready),
    ("worker_process_init", worker_process_init),
    ("worker_process_shutdown", worker_process_shutdown),
    ("worker_shutdown", worker_shutdown),
)


def install() -> None:
    """Connect the receivers once Celery is imported (``AppConfig.ready()``); imports nothing."""
    from django_observability.imports import after_import

    after_import("celery", _connect)


def _connect() -> None:
    try:
        from django_observability.tasks import signals

        signals.connect(_RECEIVERS, "django_observability.worker")
    except Exception:
        fault("tasks.worker.install")


def uninstall() -> None:
    """Disconnect what :func:`install` connected, and stop what runs (for tests)."""
    from django_observability.tasks import signals

    signals.disconnect(_RECEIVERS, "django_observability.worker")
    worker_shutdown()
