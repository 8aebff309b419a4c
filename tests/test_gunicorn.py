"""The gunicorn hooks, called as gunicorn calls them (server and worker objects).

The real gunicorn runs them in ``tests/test_peers_metrics_store.py``; here each
hook meets a store that is missing, read-only or locked, and must not raise.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from django_observability import gunicorn, metrics_store
from tests.test_metrics_store import WRITER, db_files, write


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "multiproc"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


def server(workers: int = 2) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(workers=workers))


def test_on_starting_makes_an_empty_store(store):
    store.mkdir()
    write(store, 2)
    gunicorn.on_starting(server())
    assert db_files(store) == []
    store.rmdir() if not os.listdir(store) else None
    gunicorn.on_starting(server())  # missing: made
    assert store.is_dir()


def test_on_starting_warns_when_workers_share_no_store(monkeypatch, caplog):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with caplog.at_level(logging.WARNING, "django_observability"):
        gunicorn.on_starting(server(workers=4))
    assert "4 workers and no PROMETHEUS_MULTIPROC_DIR" in caplog.text
    caplog.clear()
    gunicorn.on_starting(server(workers=1))
    assert caplog.text == ""


def test_child_exit_archives_the_worker(store):
    store.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(store)}
    proc = subprocess.run([sys.executable, "-c", WRITER, "3"], env=env, check=True, timeout=60)
    assert proc.returncode == 0
    pids = {int(n.rsplit("_", 1)[1][:-3]) for n in db_files(store)}
    (pid,) = pids
    gunicorn.child_exit(server(), SimpleNamespace(pid=pid))
    assert "counter_archive.db" in db_files(store)
    assert not [n for n in db_files(store) if n.endswith(f"_{pid}.db")]


def test_no_hook_raises_on_a_missing_store(store, caplog):
    with caplog.at_level(logging.WARNING, "django_observability"):
        gunicorn.child_exit(server(), SimpleNamespace(pid=123456789))
        gunicorn.post_fork(server(), SimpleNamespace(pid=os.getpid()))
        gunicorn.worker_exit(server(), SimpleNamespace(pid=os.getpid()))
    assert "is missing" in caplog.text


def test_no_hook_raises_on_a_locked_store(store, caplog):
    import fcntl

    store.mkdir()
    write(store, 2)
    fd = os.open(store / metrics_store.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with caplog.at_level(logging.WARNING, "django_observability"):
            gunicorn.child_exit(server(), SimpleNamespace(pid=123456789))
            gunicorn.on_starting(server())
    finally:
        os.close(fd)
    assert "compaction skipped" in caplog.text
    assert "could not clear" in caplog.text


def test_no_hook_raises_on_a_read_only_store(store, tmp_path, caplog):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    store.mkdir()
    write(store, 2)
    proc = subprocess.run(
        ["mount", "--bind", str(store), str(store)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here: {proc.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(store)], check=True)
        with caplog.at_level(logging.WARNING, "django_observability"):
            gunicorn.on_starting(server())
            gunicorn.child_exit(server(), SimpleNamespace(pid=123456789))
        assert "Read-only file system" in caplog.text
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)


def test_worker_exit_flushes_in_the_worker_only(monkeypatch):
    from django_observability import tracing

    calls = []
    monkeypatch.setattr(tracing, "flush_on_exit", lambda: calls.append(os.getpid()))
    # gunicorn calls it in the master too, for a worker it found already gone.
    gunicorn.worker_exit(server(), SimpleNamespace(pid=os.getpid() + 1))
    assert calls == []
    gunicorn.worker_exit(server(), SimpleNamespace(pid=os.getpid()))
    assert calls == [os.getpid()]
