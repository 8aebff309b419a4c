"""The README's install section, as a new user copies it.

The ``sh`` block under ``## Install`` installs the released package (no ``-e``,
no path); the ``python`` block there (the one that starts with the marker line
``# settings.py``, followed by ``# urls.py``) is pasted into a fresh minimal
project, and ``manage.py check`` runs in a subprocess with every environment
variable the snippet reads unset: it must pass, and leave ``/metrics`` private
(no ``django_observability.W002``, the public-``/metrics`` warning).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
INSTALL_HEADING = "## Install"
SETTINGS_MARKER = "# settings.py"
URLS_MARKER = "# urls.py"

BASE_SETTINGS = """\
SECRET_KEY = "readme-install-test-0123456789-abcdefghijklmnopqrstuvwxyz"
DEBUG = False
ALLOWED_HOSTS = ["localhost"]
ROOT_URLCONF = "urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
USE_TZ = True
INSTALLED_APPS = []
MIDDLEWARE = []
"""

# The snippet's "..." stand for the project's own entries: this project has none.
DROP_ELLIPSIS = """
INSTALLED_APPS = [app for app in INSTALLED_APPS if app is not Ellipsis]
MIDDLEWARE = [entry for entry in MIDDLEWARE if entry is not Ellipsis]
"""

MANAGE = """\
import os
import sys

os.environ["DJANGO_SETTINGS_MODULE"] = "settings"
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""


def install_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert INSTALL_HEADING + "\n" in text, f"README.md has no {INSTALL_HEADING!r} heading"
    return text.split(INSTALL_HEADING + "\n", 1)[1].split("\n## ", 1)[0]


def fenced_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def settings_snippet() -> tuple[str, str]:
    """The settings and the urls part of the install snippet."""
    blocks = [
        b for b in fenced_blocks(install_section(), "python") if b.startswith(SETTINGS_MARKER)
    ]
    assert len(blocks) == 1, f"one python block under {INSTALL_HEADING} starts {SETTINGS_MARKER!r}"
    settings, marker, urls = blocks[0].partition(URLS_MARKER)
    assert marker, f"the snippet has a {URLS_MARKER!r} part"
    return settings, urls


def test_install_command_is_a_plain_install_of_the_released_package():
    commands = [
        line.split("#", 1)[0].strip()
        for block in fenced_blocks(install_section(), "sh")
        for line in block.splitlines()
        if line.strip().startswith("pip install")
    ]
    assert commands, f"no pip install under {INSTALL_HEADING}"
    assert commands[0] == "pip install django-observability", commands


def test_snippet_passes_manage_py_check_with_its_variables_unset(tmp_path):
    settings, urls = settings_snippet()
    variables = set(re.findall(r"os\.environ(?:\.get)?[\[(]\s*[\"']([^\"']+)[\"']", settings))
    (tmp_path / "settings.py").write_text(BASE_SETTINGS + settings + DROP_ELLIPSIS)
    (tmp_path / "urls.py").write_text(
        textwrap.dedent(urls) + "\nurlpatterns = [p for p in urlpatterns if p is not Ellipsis]\n"
    )
    (tmp_path / "manage.py").write_text(MANAGE)
    env = {k: v for k, v in os.environ.items() if k not in variables}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "django_observability.W002" not in output, output
