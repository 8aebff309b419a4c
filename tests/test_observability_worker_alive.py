"""manage.py observability_worker_alive: 0 for a fresh heartbeat, 1 with the reason otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_observability.management.commands.observability_worker_alive import heartbeat_age
from django_observability.tasks.worker import write_heartbeat
from tests.peers import REPO


def aged(path, seconds):
    now = time.time()
    os.utime(path, (now - seconds, now - seconds))


def test_a_fresh_heartbeat_is_alive(tmp_path, capsys):
    path = str(tmp_path / "hb")
    write_heartbeat(path)
    call_command("observability_worker_alive", file=path, max_age=5)
    assert "worker alive" in capsys.readouterr().out


def test_a_stale_heartbeat_is_not(tmp_path):
    path = str(tmp_path / "hb")
    write_heartbeat(path)
    aged(path, 60)
    with pytest.raises(CommandError, match=r"heartbeat 6\d\.\d s old \(more than 30 s\)"):
        call_command("observability_worker_alive", file=path, max_age=30)


def test_a_missing_heartbeat_is_not(tmp_path):
    with pytest.raises(CommandError, match="no heartbeat file"):
        call_command("observability_worker_alive", file=str(tmp_path / "none"))


def test_the_file_and_the_max_age_come_from_the_settings(tmp_path):
    path = str(tmp_path / "hb")
    write_heartbeat(path)
    aged(path, 20)
    with override_settings(
        OBSERVABILITY_WORKER_HEARTBEAT_FILE=path, OBSERVABILITY_WORKER_HEARTBEAT_INTERVAL=10
    ):
        call_command("observability_worker_alive", verbosity=0)  # 20 s < 3 intervals
        aged(path, 40)
        with pytest.raises(CommandError, match="more than 30 s"):
            call_command("observability_worker_alive")


def test_the_default_file_is_named_after_the_service(settings):
    settings.OBSERVABILITY_SERVICE_NAME = "shop api"
    from django_observability.conf import conf

    assert conf.WORKER_HEARTBEAT_FILE.endswith("django-observability-shop_api.worker-heartbeat")


def test_a_non_positive_max_age_is_refused(tmp_path):
    with pytest.raises(CommandError, match="--max-age"):
        call_command("observability_worker_alive", file=str(tmp_path / "hb"), max_age=0)


def test_heartbeat_age():
    assert heartbeat_age(__file__, now=os.stat(__file__).st_mtime + 5) == pytest.approx(5)


def test_exit_status_and_message_from_the_command_line(tmp_path):
    """What a container's exec probe sees: the exit status and one line on stderr."""
    path = tmp_path / "hb"
    argv = [sys.executable, "-m", "django", "observability_worker_alive", "--file", str(path)]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    missing = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert "worker not alive: no heartbeat file" in missing.stderr
    write_heartbeat(str(path))
    fresh = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert fresh.returncode == 0, fresh.stderr
