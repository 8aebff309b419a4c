"""tests/settings.py with the scheduled-job commands of tests/job_app, for manage.py runs.

tests/test_peers_jobs.py runs them in a subprocess; the Pushgateway's URL comes from
the environment (``JOBS_PUSHGATEWAY_URL``).
"""

import os

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.job_app"]  # noqa: F405
OBSERVABILITY_JOBS = {
    "nightly_report": {"interval": 86400},
    "failing_report": {"interval": 3600},
}
OBSERVABILITY_PUSHGATEWAY_URL = os.environ.get("JOBS_PUSHGATEWAY_URL") or None
OBSERVABILITY_PUSHGATEWAY_TIMEOUT = 5.0
