"""A real Wagtail site (tests/wagtail_site): audited page types, route series by page type.

Wagtail needs its own apps, middleware and migrations, so its scenarios run in
a pytest process of their own with ``tests.wagtail_site.settings``; this test
runs it and passes when every scenario passed.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("wagtail") is None,
    reason="Wagtail is not installed (a dev dependency; the nox sessions leave it out)",
)


def test_wagtail_site_scenarios():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/wagtail_site/scenarios.py",
            "--ds=tests.wagtail_site.settings",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
