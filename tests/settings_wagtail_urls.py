"""tests/settings.py plus the few apps ``wagtail.urls`` needs, for the W020 check against Wagtail.

Run in a subprocess (tests/test_mounting.py): Wagtail's apps register system
checks and signal receivers of their own, which the main test process keeps
out. ``TEST_ROOT_URLCONF`` picks the URLconf.
"""

import os

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "wagtail", "taggit", "modelcluster"]  # noqa: F405
STATIC_URL = "/static/"
ROOT_URLCONF = os.environ.get("TEST_ROOT_URLCONF", "tests.urls_wagtail_last")
