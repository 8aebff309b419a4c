"""The example project's background work: what POST /api/v1/reports/ publishes, the shop's tasks.

* The view, in a process of the example project's own (its settings, its
  Celery app, Kombu's filesystem broker in a temporary folder): each kind
  answers 202 with a task id, and the message file the broker holds names
  that task and that id; a wrong kind or method publishes nothing; a broker
  that refuses connections (Redis on a port nobody listens on) makes it
  answer 503. A web process that does not enqueue creates no broker folder.
* The tasks, run by Celery's ``apply()`` in this process (tests/settings.py's
  database): the report's summary comes from the database, the failing task
  fails, the flaky one is retried after its first run only (the worker's
  countdown and the ``retry`` outcome are seen in the peer test).

The worker that consumes these messages runs in tests/test_peers_example_worker.py.
"""

from __future__ import annotations

import base64
import json
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = REPO / "example_project"

# Run in the example project's process: requests through Django's test
# client, the answers printed as one JSON line each.
_CLIENT_SCRIPT = """
import json, os, sys
import django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="127.0.0.1")
folders = os.path.join(os.environ["EXAMPLE_CELERY_DIR"], "queue")
for method, path in json.loads(sys.argv[1]):
    before = os.path.isdir(folders)
    response = getattr(client, method.lower())(path)
    print(json.dumps({
        "status": response.status_code,
        "body": response.content.decode(),
        "request_id": response.get("X-Request-ID"),
        "queue_existed_before": before,
    }))
"""


def example_env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR"}
        and not key.startswith(("EXAMPLE_", "OTEL_", "CELERY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example.settings",
        EXAMPLE_DB=str(tmp_path / "db.sqlite3"),
        EXAMPLE_CELERY_DIR=str(tmp_path / "celery"),
        EXAMPLE_LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(EXAMPLE_DIR), str(REPO)]),
    )
    return env


def send(
    tmp_path: Path, *requests: tuple[str, str], env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Send ``(method, path)`` requests to the example project; their answers."""
    proc = subprocess.run(
        [sys.executable, "-c", _CLIENT_SCRIPT, json.dumps(requests)],
        cwd=EXAMPLE_DIR,
        env={**example_env(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines() if '"status"' in line]
    assert len(answers) == len(requests), proc.stdout + proc.stderr
    return answers


def queued(tmp_path: Path) -> list[dict[str, Any]]:
    """The messages waiting in the filesystem broker's queue folder, oldest first."""
    folder = tmp_path / "celery" / "queue"  # may not exist: glob() finds nothing then
    messages = []
    for path in sorted(folder.glob("*.msg")):
        message = json.loads(path.read_text())
        message["queue"] = path.name.split(".", 1)[1].removesuffix(".msg")
        message["decoded_body"] = json.loads(base64.b64decode(message["body"]))
        messages.append(message)
    return messages


def test_each_kind_answers_202_with_the_id_of_the_task_it_published(tmp_path):
    answers = send(
        tmp_path,
        ("POST", "/api/v1/reports/"),
        ("POST", "/api/v1/reports/?kind=fail"),
        ("POST", "/api/v1/reports/?kind=retry"),
    )

    assert [a["status"] for a in answers] == [202, 202, 202]
    bodies = [json.loads(a["body"]) for a in answers]
    assert [b["task"] for b in bodies] == [
        "shop.tasks.build_report",
        "shop.tasks.fail_report",
        "shop.tasks.flaky_report",
    ]
    messages = queued(tmp_path)
    assert [(m["headers"]["task"], m["headers"]["id"]) for m in messages] == [
        (b["task"], b["task_id"]) for b in bodies
    ]
    for message in messages:
        assert message["queue"] == "celery"
        args, kwargs, _ = message["decoded_body"]
        assert (args, kwargs) == ([], {})
        assert message["headers"]["retries"] == 0
    # The first request found no broker folder: it was made when it published.
    assert answers[0]["queue_existed_before"] is False


def test_a_wrong_kind_or_method_publishes_nothing(tmp_path):
    answers = send(
        tmp_path,
        ("POST", "/api/v1/reports/?kind=nightly"),
        ("GET", "/api/v1/reports/"),
    )

    assert [a["status"] for a in answers] == [400, 405]
    assert "kind must be one of" in json.loads(answers[0]["body"])["error"]
    assert queued(tmp_path) == []


def test_a_broker_that_refuses_connections_makes_it_answer_503(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        answers = send(
            tmp_path, ("POST", "/api/v1/reports/"), env={"EXAMPLE_CELERY_BROKER_URL": url}
        )

    assert answers[0]["status"] == 503
    assert json.loads(answers[0]["body"]) == {"error": "broker unavailable"}


def test_a_process_that_does_not_enqueue_makes_no_broker_folder(tmp_path):
    answers = send(tmp_path, ("GET", "/api/v1/items/1/"))

    assert answers[0]["status"] == 200
    assert not (tmp_path / "celery").exists()


# --- the tasks, run in this process ---------------------------------------------------


@pytest.fixture
def shop_tasks(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    from shop import tasks

    return tasks


@pytest.mark.django_db
def test_build_report_summarises_the_database(shop_tasks):
    from django.contrib.auth.models import Group, User

    User.objects.create(username="ada")
    Group.objects.create(name="buyers")
    Group.objects.create(name="sellers")

    result = shop_tasks.build_report.apply()

    assert result.state == "SUCCESS"
    assert result.get() == {"users": 1, "groups": 2}


def test_fail_report_fails_with_its_own_exception(shop_tasks):
    result = shop_tasks.fail_report.apply()

    assert result.state == "FAILURE"
    assert isinstance(result.result, shop_tasks.ReportError)


@pytest.mark.django_db
def test_flaky_report_is_retried_once_then_succeeds(shop_tasks, caplog):
    # apply() runs a retry at once, in the same call (Celery's eager retry).
    result = shop_tasks.flaky_report.apply()

    assert result.state == "SUCCESS"
    assert result.get() == {"users": 0, "groups": 0}
    retrying = [r for r in caplog.records if r.getMessage() == "report source busy, retrying"]
    assert len(retrying) == 1


def test_flaky_report_succeeds_at_once_when_already_retried(shop_tasks, caplog, db):
    result = shop_tasks.flaky_report.apply(retries=1)

    assert result.state == "SUCCESS"
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


@pytest.mark.django_db
def test_beat_runs_refresh_stats_every_minute(shop_tasks):
    # The settings file run on its own: importing the example package here
    # would make its Celery app the current one for the other tests.
    settings = runpy.run_path(str(EXAMPLE_DIR / "example" / "settings.py"))
    entry = settings["CELERY_BEAT_SCHEDULE"]["refresh-stats"]

    assert entry["task"] == shop_tasks.refresh_stats.name
    assert entry["schedule"] == 60.0
    assert shop_tasks.refresh_stats.apply().get() == {"users": 0, "groups": 0}
