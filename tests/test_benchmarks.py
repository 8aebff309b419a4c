"""The benchmark harness still runs and still verifies what it measures.

Marked ``bench``: they start benchmark processes (and gunicorn servers), so the
unit runs (``make test-unit``, the nox sessions) leave them out and the full
``make test`` runs them. They check that a tiny run produces its ratios and
that every worker's checks (counts, spans, access-log lines against the
requests sent) pass, never how fast anything is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.over_http import load_requests, wrk_script
from benchmarks.worker import _plain_line

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parent.parent


def run_script(script: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    """``python benchmarks/<script> args`` from the repository root, without OTEL_/DJANGO_ env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DJANGO_", "BENCH_"))}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def only_result(directory: Path) -> dict:
    (path,) = directory.glob("*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def test_in_process_run_reports_ratios_and_verifies_every_stack(tmp_path):
    pytest.importorskip("django_prometheus")
    pytest.importorskip("opentelemetry.instrumentation.django")
    pytest.importorskip("pythonjsonlogger")
    tiny = ["--rounds=1", "--requests=1000", "--full-requests=1000", "--warmup=100"]
    result = run_script("run.py", *tiny, "--renders=3", f"--results={tmp_path}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "added vs django-prometheus's" in result.stdout
    assert "Of the 0.33x budget, the SDK's own span takes" in result.stdout

    data = only_result(tmp_path)
    for name in ("ratio_ours_vs_django_prometheus", "ratio_ours_full_vs_anchors_full"):
        assert isinstance(data[name], float)
    (results,) = data["rounds"]
    assert all(r["problems"] == [] for r in results.values())
    for config in ("anchors_full", "ours_full", "sdk_span_log_floor"):
        verified = results[config]["verified"]
        assert verified["requests_sent"] == results[config]["requests"] + 100
        assert verified["spans_exported"] == verified["requests_sent"]
        assert verified["log_lines"] == verified["requests_sent"]
    ours = results["ours_full"]["verified"]
    assert ours["spans_joined_to_log_lines"] == ours["spans_checked_against_log_lines"] > 0
    assert "log_lines" not in results["sdk_span_floor"]["verified"]
    assert results["ours"]["recorded"]["duration histogram count"] == 1100


def test_plain_floor_lines_are_checked_strictly():
    assert _plain_line("GET /api/v1/items/42/ 200\n") == {
        "method": "GET",
        "path": "/api/v1/items/42/",
        "status": 200,
    }
    assert _plain_line("GET /a 200 extra\n") is None
    assert _plain_line("GET /a OK\n") is None
    assert _plain_line("\n") is None


def test_http_mix_is_the_in_process_mix_with_head_sent_as_get():
    requests = load_requests()
    assert len(requests) == 100
    assert {method for method, _, _, _ in requests} == {"GET", "POST"}
    assert ("GET", "/search/?q=django&page=2", b"", {}) in requests
    assert sum(1 for _, _, _, headers in requests if "X-Request-Id" in headers) == 14
    script = wrk_script(requests)
    assert script.count("wrk.format(") == 100
    assert '"{\\"sku\\": \\"A-1\\", \\"qty\\": 2}"' in script  # the POST body, escaped


@pytest.mark.parametrize("wrk_on_path", [True, False], ids=["wrk", "wrk-missing"])
def test_http_run_reports_ratios_and_verifies_counts(tmp_path, wrk_on_path):
    pytest.importorskip("django_prometheus")
    pytest.importorskip("gunicorn")
    env = {}
    if wrk_on_path and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian: apt-get install wrk)")
    if not wrk_on_path:
        env["PATH"] = str(Path(sys.executable).parent)  # no wrk there
    short = ["--seconds=1", "--rounds=1", "--warmup=1", "--configs=bare,django_prometheus,ours"]
    result = run_script("over_http.py", *short, f"--results={tmp_path}", **env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert ("wrk not found" in result.stdout) is not wrk_on_path
    assert "added vs django-prometheus's" in result.stdout
    assert "Verified every round" in result.stdout
    load = "wrk" if wrk_on_path else "python"

    data = only_result(tmp_path)
    assert data["load"] == load
    assert data["problems"] == []
    assert set(data["ratios_vs_anchor"]) == {"django_prometheus", "ours"}
    (results,) = data["rounds"]
    for config in ("django_prometheus", "ours"):
        done = results[config]["requests"]
        assert done > 0
        assert done <= results[config]["requests_counted"] <= done + 2
