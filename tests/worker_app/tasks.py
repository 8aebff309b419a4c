"""One task, to make the pool's children run (and be replaced with ``--max-tasks-per-child``)."""

from tests.worker_app.app import app


@app.task(name="worker_app.noop")
def noop() -> int:
    import os

    return os.getpid()
