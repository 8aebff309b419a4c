"""benchmarks/cache.py still runs and still verifies what it measures (marked ``bench``).

A tiny run must produce its ratios and pass its own checks: every get on our
alias counted as a hit or a miss, django-prometheus's counter holding every get
on its alias, and the access line of a request carrying its hits and misses.
Never how fast anything is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parent.parent


def test_cache_benchmark_reports_ratios_and_verifies_each_stack(tmp_path):
    pytest.importorskip("django_prometheus")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DJANGO_", "BENCH_"))}
    tiny = ["--rounds=1", "--blocks=2", "--ops=300", "--requests=10", f"--results={tmp_path}"]
    result = subprocess.run(
        [sys.executable, "benchmarks/cache.py", *tiny],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "added vs django-prometheus's" in result.stdout
    (path,) = tmp_path.glob("cache-*.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data["ratio_per_get"], float)
    (measured,) = data["rounds"]
    assert measured["problems"] == []
    gets = measured["gets"]["ours"]
    recorded = measured["recorded"]
    assert recorded["ours_hits"] + recorded["ours_misses"] == gets > 0
    assert recorded["dp_gets"] == measured["gets"]["django_prometheus"]
