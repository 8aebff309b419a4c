"""The metrics store under real servers: worker churn, a read-only or full store, restarts.

gunicorn runs the example project with its own ``gunicorn.conf.py`` (which
imports the hooks of ``django_observability.gunicorn``); uvicorn runs it with
``--workers 2`` and the recipe the README gives (clear the store, then start).
Everything binds to 127.0.0.1, is bounded in time and stopped by PID. The
store on a small tmpfs and the read-only bind mount need root (skipped
otherwise, with the reason).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.peers")

from tests.peers import (  # noqa: E402
    EXAMPLE_DIR,
    Server,
    example_env,
    executable,
    free_port,
    http,
    make_gunicorn,
    samples,
    scrape,
    wait_for,
)

pytest_plugins = ["tests.peers"]

pytestmark = pytest.mark.peers

DURATION = "http_server_request_duration_seconds_count"
# Samples that may never go down between two scrapes.
_MONOTONIC = re.compile(r".*(_total|_count|_bucket|_sum)$")


def requests_counted(text: str, route: str = "/") -> float:
    return sum(value for labels, value in samples(text, DURATION) if labels["route"] == route)


def monotonic_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        if family.type not in ("counter", "histogram", "summary"):
            continue
        for sample in family.samples:
            if _MONOTONIC.match(sample.name):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def store_files(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(".db"))


def booted_workers(server: Server) -> int:
    return server.log_path.read_text(errors="replace").count("Booting worker with pid")


def get_ok(url: str) -> bool:
    return http(url, timeout=10).status == 200


@pytest.fixture
def churn_env(example_db: Path) -> dict[str, str]:
    env = example_env(example_db)
    env["GUNICORN_PRELOAD"] = "1"
    return env


def test_gunicorn_churn_keeps_totals_exact_and_files_bounded(tmp_path, churn_env):
    """Hundreds of worker exits under load, scraped all along: exact, monotonic, bounded."""
    server = make_gunicorn("churn", tmp_path, churn_env, workers=2, max_requests=8)
    store = tmp_path / "multiproc"
    server.start()
    try:
        server.wait_ready("/metrics")
        baseline = requests_counted(scrape(server.url))
        stop = threading.Event()
        scrapes: list[str] = []
        failures: list[str] = []

        def scraper() -> None:
            while not stop.is_set():
                try:
                    scrapes.append(scrape(server.url))
                except Exception as exc:  # recorded, asserted below
                    failures.append(repr(exc))
                time.sleep(0.02)

        requests = 2400
        watcher = threading.Thread(target=scraper)
        watcher.start()
        try:
            with ThreadPoolExecutor(4) as pool:
                answered = list(pool.map(lambda _: get_ok(server.url + "/"), range(requests)))
        finally:
            stop.set()
            watcher.join(timeout=60)
        final = scrape(server.url)
        scrapes.append(final)

        assert all(answered)
        assert failures == []
        exits = booted_workers(server) - 2
        assert exits >= 200, f"only {exits} worker exits"
        # Exact: every request once, nothing lost with the workers that served it.
        assert requests_counted(final) - baseline == requests
        # No counter, histogram count, bucket or sum ever went back between two scrapes.
        previous: dict = {}
        for text in scrapes:
            current = monotonic_samples(text)
            went_back = {
                key: (previous[key], value)
                for key, value in current.items()
                if key in previous and value < previous[key]
            }
            assert went_back == {}
            previous = {**previous, **current}
        assert len(scrapes) > 20
        # Bounded: a few files per live worker (and the master), plus the archives.
        files = store_files(store)
        pids = {m.group(1) for name in files if (m := re.search(r"_([0-9]+)\.db$", name))}
        assert len(pids) <= 3, files
        assert len(files) <= 3 * 6 + 7, files
        assert "dead workers" not in server.log_tail()
    finally:
        server.stop()


@contextlib.contextmanager
def bind_mount(source: Path, target: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    target.mkdir()
    proc = subprocess.run(
        ["mount", "--bind", str(source), str(target)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {proc.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, timeout=30)


def remount(source: Path, target: Path, mode: str) -> None:
    """``target`` becomes a fresh bind mount of ``source`` in ``mode`` (``ro`` or ``rw``).

    A mount with files open for writing cannot be remounted read-only, so the
    old one is detached (open files keep it, as a worker's mapped files would
    after the kernel turned a failing disk read-only) and every new open,
    rename or removal in ``target`` meets the new mode.
    """
    subprocess.run(["umount", "-l", str(target)], check=True, timeout=30)
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True, timeout=30)
    if mode == "ro":
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True, timeout=30)


def test_gunicorn_read_only_store_then_worker_exits(tmp_path, churn_env):
    """The store turns read-only; workers exit and are replaced; the master and requests go on."""
    source = tmp_path / "source"
    source.mkdir()
    view = tmp_path / "view"
    with bind_mount(source, view):
        server = make_gunicorn("readonly", tmp_path, churn_env, workers=2, max_requests=5)
        server.env["PROMETHEUS_MULTIPROC_DIR"] = str(view)
        server.start()
        try:
            server.wait_ready("/metrics")
            assert all(get_ok(server.url + "/") for _ in range(10))
            remount(source, view, "ro")
            booted = booted_workers(server)
            answered = [get_ok(server.url + "/") for _ in range(60)]
            assert all(answered)
            assert booted_workers(server) >= booted + 8  # workers exited into a read-only store
            assert server.proc is not None
            assert server.proc.poll() is None  # the master lives
            log = server.log_tail(200_000)
            assert "Read-only file system" in log
            # What the store holds is still served, and health says it cannot write.
            assert scrape(server.url)
            health = http(server.url + "/health/").json()
            (store_check,) = health["checks"]["metrics_store"]
            assert store_check["status"] == "fail"
            assert "Read-only" in store_check["output"]
            # Writable again: counting resumes, nothing of it lost (a worker
            # stores what it kept at its next write after a second, or as it exits).
            remount(source, view, "rw")
            time.sleep(1.2)  # past the retry interval of the workers born read-only
            before = requests_counted(scrape(server.url))
            assert all(get_ok(server.url + "/") for _ in range(20))
            assert requests_counted(scrape(server.url)) >= before + 20
        finally:
            server.stop()
            with contextlib.suppress(subprocess.CalledProcessError):
                remount(source, view, "rw")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=30)


def fill(path: Path, leave: int) -> Path:
    """A file that takes all the room on ``path``'s file system but ``leave`` bytes."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 65536)
    os.close(fd)
    os.truncate(filler, max(0, os.path.getsize(filler) - leave))
    return filler


def test_gunicorn_full_store_costs_metrics_never_a_request(tmp_path, churn_env):
    """A store that fills: every request answered, no worker dies, health fails, then recovers."""
    with small_tmpfs(tmp_path / "shm", "4m") as store:
        server = make_gunicorn("full", tmp_path, churn_env, workers=2, max_requests=40)
        server.env["PROMETHEUS_MULTIPROC_DIR"] = str(store)
        server.start()
        try:
            server.wait_ready("/metrics")
            filler = fill(store, leave=0)
            # Many routes and ids: the workers' files must grow (and cannot).
            paths = [f"/api/v1/items/{i}/" for i in range(1, 4)] + ["/", "/nope/", "/boom/"]
            with ThreadPoolExecutor(4) as pool:
                statuses = list(
                    pool.map(lambda i: http(server.url + paths[i % len(paths)]).status, range(600))
                )
            assert set(statuses) <= {200, 404, 500}
            assert statuses.count(200) >= 300
            log = server.log_tail(500_000)
            assert "SIGBUS" not in log
            assert "cannot be written" in log
            health = http(server.url + "/health/").json()
            assert health["checks"]["metrics_store"][0]["status"] == "fail"
            # Room again: the next writes store what was kept, and counting goes on.
            os.unlink(filler)
            time.sleep(1.2)  # past the store's retry interval
            before = requests_counted(scrape(server.url))
            assert all(get_ok(server.url + "/") for _ in range(30))
            assert requests_counted(scrape(server.url)) >= before + 30
        finally:
            server.stop()


def make_uvicorn_workers(tmp_path: Path, env: dict[str, str], store: Path) -> Server:
    port = free_port()
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(store)}
    # The README's recipe for servers without hooks: clear the store, then start.
    command = (
        f"{sys.executable} -m django_observability.metrics_store clear && exec "
        f"{executable('uvicorn')} example.asgi:application --host 127.0.0.1 --port {port} "
        "--workers 2 --lifespan off"
    )
    return Server(
        name="uvicorn-workers",
        argv=["/bin/sh", "-c", command],
        cwd=EXAMPLE_DIR,
        env=env,
        log_path=tmp_path / f"uvicorn-{port}.log",
        url=f"http://127.0.0.1:{port}",
    )


def worker_pids(text: str) -> set[str]:
    return {labels["pid"] for labels, _ in samples(text, "django_process_threads")}


def test_uvicorn_workers_restarted_on_the_same_store(tmp_path, example_db):
    """uvicorn --workers 2: restarts start from zero; a dead worker's totals stay, its gauges go."""
    store = tmp_path / "multiproc"
    env = example_env(example_db)
    first = make_uvicorn_workers(tmp_path, env, store)
    first.start()
    try:
        first.wait_ready("/metrics")
        assert all(get_ok(first.url + "/") for _ in range(40))
        old_pids = wait_for(lambda: (p := worker_pids(scrape(first.url))) and p, 10)
    finally:
        first.stop()

    second = make_uvicorn_workers(tmp_path, env, store)
    second.start()
    try:
        second.wait_ready("/metrics")
        assert all(get_ok(second.url + "/") for _ in range(30))
        text = scrape(second.url)
        # The first run's counts and its workers' per-pid gauges are gone.
        assert requests_counted(text) == 30
        assert not worker_pids(text) & old_pids

        # One worker killed: uvicorn starts another; what it counted is kept.
        import psutil

        victim = int(sorted(worker_pids(text))[0])
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(victim), 20)  # reaped by uvicorn
        wait_for(lambda: len(psutil.Process(second.proc.pid).children()) >= 2, 20)
        assert all(get_ok(second.url + "/") for _ in range(10))
        text = wait_for(
            lambda: (t := scrape(second.url)) and str(victim) not in worker_pids(t) and t, 20
        )
        assert requests_counted(text) == 40
        # Compacted at scrape time: no file of the killed worker is left.
        assert not [n for n in store_files(store) if n.endswith(f"_{victim}.db")]
        assert "counter_archive.db" in store_files(store) or "histogram_archive.db" in store_files(
            store
        )
    finally:
        second.stop()
