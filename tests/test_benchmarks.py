"""The benchmark's workers still run and still verify what they measure.

The README's tables come from ``benchmarks/run.py``; each of its workers checks
that the instrumentation recorded every request (counts, spans, access-log
lines). A short run of every configuration keeps those checks working as the
app changes: a worker that finds a missing span or log line exits non-zero.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.stacks import LOGGED_CONFIGS, TRACED_CONFIGS
from benchmarks.worker import CONFIGS, _plain_line

ROOT = Path(__file__).resolve().parent.parent

# Configurations that need packages only the dev extras install.
NEEDS = {
    "django_prometheus": "django_prometheus",
    "anchors_full": "django_prometheus",
}
SHORT_RUN = ("--requests", "1000", "--warmup", "100", "--renders", "3")


RUNS = [(config, "batch") for config in CONFIGS] + [
    ("ours_full", "simple"),
    ("ours_full", "keep"),
]


@pytest.mark.parametrize(("config", "processor"), RUNS)
def test_worker_runs_and_verifies(config, processor):
    if config in NEEDS:
        pytest.importorskip(NEEDS[config])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DJANGO_"))}
    options = [*SHORT_RUN, f"--span-processor={processor}"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", config, *options],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["config"] == config
    assert data["problems"] == []
    assert data["requests"] >= 1000
    if config in TRACED_CONFIGS:
        verified = data["verified"]
        assert data["span_processor"] == processor
        assert verified["requests_sent"] == data["requests"] + 100
        if config != "ours_full_10pct":
            assert verified["spans_exported"] == verified["requests_sent"]
        if config in LOGGED_CONFIGS:
            assert verified["log_lines"] == verified["requests_sent"]
        else:
            assert "log_lines" not in verified
        if processor == "batch" and sys.platform.startswith("linux"):
            assert data["export_thread_switches_per_request"] >= 0
        elif processor != "batch":
            assert "export_thread_switches_per_request" not in data  # no export thread


def test_plain_floor_lines_are_checked_strictly():
    assert _plain_line("GET /api/v1/items/42/ 200\n") == {
        "method": "GET",
        "path": "/api/v1/items/42/",
        "status": 200,
    }
    assert _plain_line("GET /a 200 extra\n") is None
    assert _plain_line("GET /a OK\n") is None
    assert _plain_line("\n") is None
