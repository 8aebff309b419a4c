"""The multiprocess metrics store: compaction, reserved space, reading, state.

Writers are real processes (``python -c``) with ``PROMETHEUS_MULTIPROC_DIR``
set, so their files are prometheus_client's own, and they have exited when the
test compacts them: exactly what a server leaves behind when it replaces a
worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from django_observability import metrics_store
from django_observability.metrics_store import (
    StoreCollector,
    StoreStateCollector,
    compact_dead,
    compaction,
    files_to_read,
    merge,
)
from django_observability.metrics_store.__main__ import main

REPO = Path(__file__).resolve().parent.parent

# One worker's life: counters, a histogram with float observations (so the
# sums are not integers), a summary, and a gauge of every multiprocess mode.
WRITER = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from django_observability import metrics_store
metrics_store.install()
from prometheus_client import Counter, Gauge, Histogram, Summary
n = int(sys.argv[1])
c = Counter("jobs", "Jobs.", ["kind"])
h = Histogram("latency_seconds", "Latency.", ["route"], buckets=(0.01, 0.1, 1.0))
s = Summary("payload_bytes", "Payload.")
for i in range(n):
    c.labels("a" if i % 2 else "b").inc()
    h.labels("/x/").observe(0.001 * (i + 1) + 0.0001 * n)
    s.observe(i + 0.1)
Counter("zero", "Never incremented.", ["kind"]).labels("z")
for mode in ("all", "liveall", "livesum", "sum", "min", "max", "mostrecent", "livemostrecent"):
    Gauge("g_" + mode, "A gauge.", multiprocess_mode=mode).set(n)
"""


def write(directory: Path, *counts: int) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    for n in counts:
        subprocess.run([sys.executable, "-c", WRITER, str(n)], env=env, check=True, timeout=60)


def scrape(directory: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(StoreCollector(str(directory), compact=False))
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def without_dead_gauges(values: dict[str, float]) -> dict[str, float]:
    # live* gauges of exited processes go with them, and so do "all" gauges.
    return {
        k: v
        for k, v in values.items()
        if not k.startswith(("g_all", "g_liveall", "g_livesum", "g_livemostrecent"))
    }


def db_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".db"))


# --- compaction -------------------------------------------------------------------------


def test_compaction_keeps_every_total_exact_and_bounds_the_files(tmp_path):
    write(tmp_path, *range(1, 21))
    before = scrape(tmp_path)
    assert len(db_files(tmp_path)) > 20 * 4

    assert compact_dead(str(tmp_path)) == 20

    after = scrape(tmp_path)
    assert after == without_dead_gauges(before)
    assert after["jobs_total{kind=a}"] + after["jobs_total{kind=b}"] == sum(range(1, 21))
    assert after["latency_seconds_count{route=/x/}"] == sum(range(1, 21))
    assert after["zero_total{kind=z}"] == 0  # a series that exists stays, even at zero
    assert after["g_max{}"] == 20
    assert after["g_min{}"] == 1
    assert after["g_sum{}"] == 210
    assert after["g_mostrecent{}"] == 20  # the last writer's
    # One archive per kind that outlives its process, nothing else.
    assert db_files(tmp_path) == [
        "counter_archive.db",
        "gauge_max_archive.db",
        "gauge_min_archive.db",
        "gauge_mostrecent_archive.db",
        "gauge_sum_archive.db",
        "histogram_archive.db",
        "summary_archive.db",
    ]


def test_compacting_in_steps_gives_the_totals_of_one_step(tmp_path):
    """Archives absorb archives: 3 rounds of workers, compacted after each, add up exactly."""
    reference = tmp_path / "reference"
    stepped = tmp_path / "stepped"
    reference.mkdir()
    stepped.mkdir()
    rounds = [(3, 7, 11), (2, 5), (13, 17, 19, 23)]
    for counts in rounds:
        write(reference, *counts)
        write(stepped, *counts)
        compact_dead(str(stepped))
    assert scrape(stepped) == without_dead_gauges(scrape(reference))


def test_float_sums_do_not_move_when_values_change_files(tmp_path):
    """A sum read before and after compaction is the same float, to the last bit.

    Counters must never go back; Prometheus takes a decrease of one ulp for a
    reset. prometheus_client adds floats in file order, which changes when
    files are merged; the store keeps exact sums instead.
    """
    write(tmp_path, *range(1, 31))
    before = scrape(tmp_path)
    compact_dead(str(tmp_path))
    after = scrape(tmp_path)
    for key in ("latency_seconds_sum{route=/x/}", "payload_bytes_sum{}"):
        assert after[key] == before[key]
        assert after[key].hex() == before[key].hex()


def test_merge_matches_prometheus_client_collector(tmp_path):
    """Same families, samples and values as MultiProcessCollector (integral values)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    script = WRITER.replace("0.001 * (i + 1) + 0.0001 * n", "i % 3").replace("i + 0.1", "i")
    for n in (2, 5):
        subprocess.run([sys.executable, "-c", script, str(n)], env=env, check=True, timeout=60)
    paths = [str(p) for p in tmp_path.glob("*.db")]

    def normal(families):
        return sorted(
            (f.name, f.type, f.documentation, s.name, tuple(sorted(s.labels.items())), s.value)
            for f in families
            for s in f.samples
        )

    assert normal(merge(paths)) == normal(MultiProcessCollector.merge(paths, accumulate=True))


def test_a_live_process_is_not_compacted(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    live = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER + "\nsys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()",
            "4",
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert live.stdout.readline() == b"ready\n"
        write(tmp_path, 3)
        before = scrape(tmp_path)
        assert compact_dead(str(tmp_path)) == 1
        assert f"counter_{live.pid}.db" in db_files(tmp_path)
        after = scrape(tmp_path)
        # The live writer's gauges, all modes, stay; only the exited one's went.
        assert after["jobs_total{kind=a}"] == before["jobs_total{kind=a}"]
        assert after["g_livesum{}"] == 4
    finally:
        live.communicate(b"", timeout=30)


def test_a_pid_taken_again_during_compaction_keeps_its_files(tmp_path, monkeypatch):
    """The pid is checked again after the files moved aside; a new owner gets them back."""
    write(tmp_path, 5)
    before = scrape(tmp_path)
    (pid,) = {int(n.rsplit("_", 1)[1][:-3]) for n in db_files(tmp_path)}
    checks = []

    def alive(p: int) -> bool:
        checks.append(p)
        # Gone at the first look, there again when checked after the move.
        return p == pid and checks.count(pid) > 1

    monkeypatch.setattr(compaction, "alive", alive)
    assert compact_dead(str(tmp_path)) == 0
    assert not [n for n in os.listdir(tmp_path) if n.endswith(metrics_store.ASIDE)]
    assert f"counter_{pid}.db" in db_files(tmp_path)
    assert scrape(tmp_path) == before


def test_compaction_cut_before_its_journal_changes_no_total(tmp_path, monkeypatch):
    write(tmp_path, 3, 4, 5)
    before = without_dead_gauges(scrape(tmp_path))
    real_write_file = compaction.write_file

    def killed_after_an_archive(path, rows):
        real_write_file(path, rows)  # a new archive made, the journal not yet
        raise KeyboardInterrupt("killed before the journal")

    monkeypatch.setattr(compaction, "write_file", killed_after_an_archive)
    with pytest.raises(KeyboardInterrupt):
        compact_dead(str(tmp_path))
    # Files moved aside and not yet archived are read where they are.
    assert [n for n in os.listdir(tmp_path) if n.endswith(metrics_store.ASIDE)]
    assert without_dead_gauges(scrape(tmp_path)) == before
    monkeypatch.undo()
    assert compact_dead(str(tmp_path)) == 3
    assert scrape(tmp_path) == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith((metrics_store.ASIDE, ".new"))]


def test_compaction_cut_after_its_journal_changes_no_total(tmp_path, monkeypatch):
    write(tmp_path, 3, 4, 5)
    compact_dead(str(tmp_path))  # an archive exists: the next one replaces it
    write(tmp_path, 6, 7)
    before = without_dead_gauges(scrape(tmp_path))
    real_replace = os.replace
    calls = []

    def replace_once(src, dst):
        calls.append(src)
        if len(calls) > 1:  # one archive in place, the others not: killed
            raise KeyboardInterrupt("killed between two renames")
        real_replace(src, dst)

    monkeypatch.setattr(compaction.os, "replace", replace_once)
    with pytest.raises(KeyboardInterrupt):
        compact_dead(str(tmp_path))
    monkeypatch.undo()
    names = os.listdir(tmp_path)
    assert metrics_store.JOURNAL in names
    assert [n for n in names if n.endswith(".new")]
    # (The exited processes' live gauges go at the end of a compaction.)
    assert without_dead_gauges(scrape(tmp_path)) == before
    # The next compaction finishes what the journal committed.
    compact_dead(str(tmp_path))
    assert scrape(tmp_path) == before
    assert metrics_store.JOURNAL not in os.listdir(tmp_path)


def test_files_to_read_ignores_an_uncommitted_archive(tmp_path):
    write(tmp_path, 3)
    compact_dead(str(tmp_path))
    before = scrape(tmp_path)
    shutil.copy(tmp_path / "counter_archive.db", tmp_path / "counter_archive.db.new")
    assert str(tmp_path / "counter_archive.db.new") not in files_to_read(str(tmp_path))
    assert scrape(tmp_path) == before


def test_scrape_compacts_only_where_processes_are_named_by_pid(tmp_path, monkeypatch):
    """A reader whose own pid has no file cannot tell pids from other identifiers."""
    write(tmp_path, 2, 3)
    registry = CollectorRegistry()
    registry.register(StoreCollector(str(tmp_path)))
    generate_latest(registry)
    assert len(db_files(tmp_path)) > 7  # nothing compacted: this process writes no files
    metrics_store.write_file(str(tmp_path / f"gauge_livesum_{os.getpid()}.db"), [])
    generate_latest(registry)
    assert "counter_archive.db" in db_files(tmp_path)


def test_dead_workers_exemplar_files_go(tmp_path):
    write(tmp_path, 2)
    (tmp_path / "exemplars_999999999.json").write_text("{}")
    (tmp_path / f"exemplars_{os.getpid()}.json").write_text("{}")
    compact_dead(str(tmp_path))
    names = os.listdir(tmp_path)
    assert "exemplars_999999999.json" not in names
    assert f"exemplars_{os.getpid()}.json" in names


def test_a_busy_lock_bounds_compaction_and_reading(tmp_path):
    import fcntl

    write(tmp_path, 2)
    fd = os.open(tmp_path / metrics_store.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(metrics_store.StoreBusy):
            compact_dead(str(tmp_path), timeout=0.05)
        assert metrics_store.mark_dead(0, str(tmp_path), timeout=0.05) == 0
        with (
            pytest.raises(metrics_store.StoreBusy),
            metrics_store.locked(str(tmp_path), exclusive=False, timeout=0.05),
        ):
            pass
    finally:
        os.close(fd)


# --- clearing, state, the command line --------------------------------------------------


def test_clear_removes_the_stores_files_only(tmp_path):
    write(tmp_path, 2)
    compact_dead(str(tmp_path))
    (tmp_path / "labels_exception.txt").write_text("x\n")
    (tmp_path / "notes.md").write_text("someone else's")
    assert metrics_store.clear(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [metrics_store.LOCK_FILE, "notes.md"]


def test_clear_makes_a_missing_directory(tmp_path):
    target = tmp_path / "a" / "b"
    assert metrics_store.clear(str(target))
    assert target.is_dir()


def test_state_and_its_gauges(tmp_path):
    write(tmp_path, 2)
    state = metrics_store.store_state(str(tmp_path))
    assert state is not None
    assert state.writable
    assert state.exists
    assert state.files == len(db_files(tmp_path))
    assert state.size_bytes > 0
    assert state.free_bytes > 0
    families = {f.name: f for f in StoreStateCollector(str(tmp_path), "shop").collect()}
    assert families["shop_django_observability_metrics_store_writable"].samples[0].value == 1
    assert families["shop_django_observability_metrics_store_files"].samples[0].value == state.files
    assert not [n for n in os.listdir(tmp_path) if n.startswith("probe-")]


def test_state_of_a_missing_directory(tmp_path):
    state = metrics_store.store_state(str(tmp_path / "gone"))
    assert state is not None
    assert not state.exists
    assert not state.writable


def test_command_line(tmp_path, capsys):
    write(tmp_path, 2, 3)
    # Files written just now by processes not visible from here: refused.
    assert main(["compact", str(tmp_path)]) == 1
    assert "not visible from here" in capsys.readouterr().err
    assert main(["compact", "--force", str(tmp_path)]) == 0
    assert "compacted 2" in capsys.readouterr().out
    assert main(["status", str(tmp_path)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["writable"] is True
    assert status["files"] == len(db_files(tmp_path))
    assert main(["clear", str(tmp_path)]) == 0
    assert db_files(tmp_path) == []


# --- a file system that is full or read-only (mounts: root only) ------------------------


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here ({proc.stderr.decode().strip()}); needs root")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "1m"):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], timeout=30, check=False)


FILLER = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from django_observability import metrics_store
if sys.argv[1] == "ours":
    metrics_store.install()
from prometheus_client import Counter
c = Counter("filled", "Many series.", ["n"])
for i in range(int(sys.argv[2])):
    c.labels(str(i) * 40).inc()
print("served", flush=True)
if sys.argv[1] == "ours":
    print("unstored", metrics_store.unstored(), flush=True)
    # Space comes back: the values kept in memory are stored at the next write.
    import os, time
    os.unlink(sys.argv[3])
    time.sleep(metrics_store.RETRY_SECONDS + 0.1)
    c.labels("after").inc()
    print("unstored", metrics_store.unstored(), flush=True)
"""


def test_a_full_file_system_costs_metrics_not_the_process(tmp_path):
    with small_tmpfs(tmp_path / "shm") as store:
        filler = store / "filler"
        # Leave less than one 64 KiB file's worth of room, then grow past it.
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        os.truncate(filler, os.path.getsize(filler) - 200 * 1024)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(store)}

        # prometheus_client's own writer dies of SIGBUS where the space ends...
        plain = subprocess.run(
            [sys.executable, "-c", FILLER, "plain", "3000", str(filler)],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert plain.returncode == -7, plain  # SIGBUS
        for name in os.listdir(store):
            if name.endswith(".db"):
                os.unlink(store / name)

        # ... ours keeps serving, and stores everything once there is room.
        ours = subprocess.run(
            [sys.executable, "-c", FILLER, "ours", "3000", str(filler)],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert ours.returncode == 0, ours.stderr.decode()
        lines = ours.stdout.decode().split()
        assert lines == ["served", "unstored", "True", "unstored", "False"]
        assert b"cannot be written" in ours.stderr  # logged once
        assert ours.stderr.count(b"cannot be written") == 1
        totals = scrape(store)
        assert sum(v for k, v in totals.items() if k.startswith("filled_total")) == 3001


def test_a_read_only_store_costs_metrics_not_the_process(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    source = tmp_path / "source"
    source.mkdir()
    write(source, 2)
    view = tmp_path / "view"
    view.mkdir()
    _mount("--bind", str(source), str(view))
    try:
        _mount("-o", "remount,bind,ro", str(view))
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(view)}
        proc = subprocess.run(
            [sys.executable, "-c", WRITER, "3"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        assert b"cannot be written" in proc.stderr
        # Reading works; compaction and clearing say why they could not, and do not raise.
        assert scrape(view)["jobs_total{kind=a}"] == 1
        assert metrics_store.mark_dead(0, str(view)) == 0
        assert not metrics_store.clear(str(view))
        state = metrics_store.store_state(str(view))
        assert state is not None
        assert not state.writable
        assert "Read-only" in (state.error or "")
    finally:
        subprocess.run(["umount", "-l", str(view)], timeout=30, check=False)


def test_a_missing_store_is_scraped_empty(tmp_path):
    registry = CollectorRegistry()
    registry.register(StoreCollector(str(tmp_path / "gone")))
    registry.register(StoreStateCollector(str(tmp_path / "gone")))
    text = generate_latest(registry).decode()
    assert "django_observability_metrics_store_writable 0.0" in text


def test_command_line_refuses_to_clear_under_live_writers(tmp_path, capsys):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    live = subprocess.Popen(
        [sys.executable, "-c", WRITER + "\nprint('ready', flush=True); sys.stdin.read()", "2"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert live.stdout.readline() == b"ready\n"
        assert main(["clear", str(tmp_path)]) == 1
        assert f"processes [{live.pid}]" in capsys.readouterr().err
        assert db_files(tmp_path)
    finally:
        live.communicate(b"", timeout=30)
    assert main(["clear", str(tmp_path)]) == 0
    assert db_files(tmp_path) == []


def test_values_kept_in_memory_are_stored_at_exit(tmp_path):
    """What a process could not store, it tries again at once when it exits."""
    from django_observability.metrics_store import StoreFile, store_pending, unstored

    store = tmp_path / "not-yet"
    kept = StoreFile(str(store / "counter_1.db"))  # the directory is missing: kept
    key = '["jobs", "jobs_total", {}, "Jobs."]'
    kept.write_value(key, 3.0, 0.0)
    assert unstored()
    store.mkdir()
    assert store_pending()
    assert not unstored()
    assert metrics_store.read_file(str(store / "counter_1.db")) == [(key, 3.0, 0.0)]
    kept.close()
