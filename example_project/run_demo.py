"""``make demo``'s launcher: the example under gunicorn and its two workers, stopped together.

From example_project/::

    python run_demo.py DEMO_DIR

starts three programs with this interpreter, each in a process group of its own:

* gunicorn (``gunicorn.conf.py``: 2 sync workers, Prometheus multiprocess mode
  in ``DEMO_DIR/prometheus-multiproc``);
* ``celery -A example worker --pool prefork --concurrency 2 --beat``: the
  worker, with Celery beat embedded (``-B``, right for one worker; a
  deployment runs one ``celery beat`` of its own), its prefork children
  writing their metrics to ``DEMO_DIR/worker-multiproc``, a directory of its
  own: the web servers' and the worker's are two deployments, each with its
  own ``/metrics``;
* ``manage.py db_worker --no-reload --interval 1``: django-tasks-db's worker,
  which runs the ``django.tasks`` tasks of ``shop/background.py`` (it looks
  for a task every second when there is none). One process, its metrics in
  its memory; its ``/metrics`` on ``EXAMPLE_DB_WORKER_METRICS_PORT`` (9809)
  and its heartbeat file ``DEMO_DIR/db-worker-heartbeat``, both its own
  (the Celery worker's are ``EXAMPLE_WORKER_METRICS_PORT``, 9808, and
  ``DEMO_DIR/celery/worker-heartbeat``).

The broker is what the settings say: Kombu's filesystem transport in
``DEMO_DIR/celery`` (``EXAMPLE_CELERY_DIR``) unless ``EXAMPLE_CELERY_BROKER_URL``
names a server.

All three write their JSON log lines to this launcher's standard output.
Ctrl-C (SIGINT) or SIGTERM stops all three: each gets one SIGTERM, to its own
process id (gunicorn's graceful stop, Celery's warm shutdown, the db worker's
graceful stop: running tasks finish), and its whole process group is killed
if it is still there after ``STOP_TIMEOUT`` seconds; what is left of a group
whose main process has gone gets SIGTERM. The first SIGTERM goes to the main
process only: Celery stops its pool's children itself, and a child terminated
from outside while the pool shuts down can leave the worker waiting forever
on the pool's lock.
When any program exits on its own, the others are stopped and the launcher
exits with status 1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
STOP_TIMEOUT = 15.0
POLL_INTERVAL = 0.2


def commands(demo_dir: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Program name -> (argv, environment), for the web server and the two workers."""
    # Both find the broker's folders (the filesystem transport) and beat's
    # schedule file in DEMO_DIR/celery unless EXAMPLE_CELERY_DIR says otherwise.
    env = dict(os.environ)
    env.setdefault("EXAMPLE_CELERY_DIR", str(demo_dir / "celery"))
    web_env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(demo_dir / "prometheus-multiproc"))
    worker_env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(demo_dir / "worker-multiproc"))
    # One process: its metrics stay in its memory (no multiprocess directory).
    db_worker_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    db_worker_env.update(
        EXAMPLE_WORKER_METRICS_PORT=os.environ.get("EXAMPLE_DB_WORKER_METRICS_PORT", "9809"),
        EXAMPLE_WORKER_HEARTBEAT_FILE=str(demo_dir / "db-worker-heartbeat"),
    )
    level = os.environ.get("EXAMPLE_LOG_LEVEL", "INFO")
    python = sys.executable
    return {
        "gunicorn": ([python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "example.wsgi"], web_env),
        "celery worker": (
            [
                python, "-m", "celery", "-A", "example", "worker",
                "--pool", "prefork", "--concurrency", "2", "--beat", "--loglevel", level,
            ],
            worker_env,
        ),
        "db worker": (
            [python, "manage.py", "db_worker", "--no-reload", "--interval", "1"],
            db_worker_env,
        ),
    }  # fmt: skip


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process id; its process group killed after STOP_TIMEOUT s.

    Once a program's main process has exited, what it started and left
    behind (its main process was killed, say: gunicorn's workers would wait
    up to half their timeout to notice) gets SIGTERM through the group id,
    which stays the program's while any of its processes is alive.
    """
    for proc in processes.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for name, proc in processes.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"run_demo: {name} did not stop in {STOP_TIMEOUT:g} s: killed", file=sys.stderr)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # none left: ProcessLookupError


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    demo_dir = Path(argv[0]).resolve()
    # The worker's store starts empty, as gunicorn.conf.py's on_starting makes the web one.
    shutil.rmtree(demo_dir / "worker-multiproc", ignore_errors=True)
    (demo_dir / "worker-multiproc").mkdir(parents=True)

    stop_requested: list[int] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    processes: dict[str, subprocess.Popen[bytes]] = {}
    status = 0
    try:
        for name, (command, env) in commands(demo_dir).items():
            # A session of its own: the terminal's Ctrl-C reaches the launcher
            # only, which stops each program the way it should be stopped.
            processes[name] = subprocess.Popen(
                command, cwd=HERE, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        while not stop_requested:
            exited = [name for name, proc in processes.items() if proc.poll() is not None]
            if exited:
                name = exited[0]
                print(
                    f"run_demo: {name} exited with status {processes[name].returncode}; "
                    "stopping the rest",
                    file=sys.stderr,
                )
                status = 1
                break
            time.sleep(POLL_INTERVAL)
    finally:
        stop(processes)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
