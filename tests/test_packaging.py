"""The sdist and the wheel hold the package (with its deploy assets), the README and
the licence, and nothing else: no tests, no ``deploy/`` copies, no stray README files,
no ``__pycache__``, no benchmarks. Then the command reads its assets from the
unpacked wheel alone.

Builds both with ``python -m build --no-isolation`` (``build`` and ``hatchling`` are in
the dev extra; a few seconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("build", reason="`build` is in the dev extra")
pytest.importorskip("hatchling", reason="`hatchling` is in the dev extra")

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "django_observability"
ASSETS = {
    f"{PACKAGE}/assets/prometheus/rules/recording.yml",
    f"{PACKAGE}/assets/prometheus/rules/alerts.yml",
    f"{PACKAGE}/assets/prometheus/tests/alerts_test.yml",
    f"{PACKAGE}/assets/prometheus/tests/recording_test.yml",
    f"{PACKAGE}/assets/prometheus/tests/slo_test.yml",
    f"{PACKAGE}/assets/prometheus/tests/slo_long_test.yml",
    f"{PACKAGE}/assets/alertmanager/alertmanager.yml",
    f"{PACKAGE}/dashboards.py",
    f"{PACKAGE}/deploy_assets.py",
    f"{PACKAGE}/management/commands/observability_assets.py",
}
# What hatchling always puts in an sdist besides the selection.
SDIST_METADATA = {"PKG-INFO", "pyproject.toml", ".gitignore"}


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def sdist_files(path: Path) -> set[str]:
    with tarfile.open(path) as archive:
        names = [m.name for m in archive.getmembers() if m.isfile()]
    return {name.split("/", 1)[1] for name in names}


def wheel_files(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        return {name for name in archive.namelist() if not name.endswith("/")}


def package_files_in_repo() -> set[str]:
    """The package's tracked and new files, as git sees them (ignored ones left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", PACKAGE],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {name for name in listed if (REPO / name).is_file()}


def test_sdist_holds_the_package_readme_and_licence_only(dists):
    files = sdist_files(dists["sdist"])
    others = {f for f in files if not f.startswith(f"{PACKAGE}/")}
    assert others == {"README.md", "LICENSE"} | SDIST_METADATA
    assert {f for f in files if f.startswith(f"{PACKAGE}/")} == package_files_in_repo()
    assert files >= ASSETS
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".pyo"))]


def test_wheel_holds_the_package_and_its_metadata_only(dists):
    files = wheel_files(dists["wheel"])
    dist_info = {f for f in files if f.split("/", 1)[0].endswith(".dist-info")}
    assert {f for f in files - dist_info} == package_files_in_repo()
    assert files >= ASSETS
    assert {f.split("/", 1)[1] for f in dist_info} == {
        "METADATA",
        "WHEEL",
        "RECORD",
        "licenses/LICENSE",
    }
    assert not [f for f in files if "__pycache__" in f or f.rsplit("/", 1)[-1] == "README.md"]


def test_the_command_runs_from_the_unpacked_wheel(dists, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(dists["wheel"]) as archive:
        archive.extractall(site)
    out = tmp_path / "out"
    unpacked = str(site / PACKAGE)
    code = (
        "import django_observability, pathlib, sys;"
        "here = pathlib.Path(django_observability.__file__).parent;"
        f"assert here == pathlib.Path({unpacked!r}), here;"
        "from django.conf import settings;"
        "settings.configure(INSTALLED_APPS=['django_observability'],"
        " OBSERVABILITY_METRICS_NAMESPACE='shop', OBSERVABILITY_SERVICE_NAME='shop-web');"
        "import django; django.setup();"
        "from django.core.management import call_command;"
        f"call_command('observability_assets', '--output', {str(out)!r})"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = (out / "prometheus/rules/alerts.yml").read_text()
    assert 'up{job="shop-web"}' in alerts
    assert "shop_health_ready" in alerts
    assert len(list((out / "grafana/dashboards").glob("*.json"))) == 6
