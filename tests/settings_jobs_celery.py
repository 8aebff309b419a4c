"""tests/celery_app's settings with a beat schedule, for the beat run of tests/test_peers_jobs.py.

Two entries due every second (one succeeds, one fails); the Pushgateway's URL comes
from the environment (``JOBS_PUSHGATEWAY_URL``).
"""

import os

from tests.celery_app.settings import *  # noqa: F403

CELERY_BEAT_SCHEDULE = {
    "ok-every-second": {"task": "tests.ok", "schedule": 1.0},
    "failing-every-second": {"task": "tests.failing", "schedule": 1.0},
}
OBSERVABILITY_PUSHGATEWAY_URL = os.environ.get("JOBS_PUSHGATEWAY_URL") or None
OBSERVABILITY_PUSHGATEWAY_TIMEOUT = 5.0
