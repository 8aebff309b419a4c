import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.celery_app.settings")

import tests.celery_app.app  # noqa: F401  (the Celery app, configured, before any request)

application = get_wsgi_application()
