"""The benchmark project as a WSGI application, for gunicorn (``benchmarks/over_http.py``).

``BENCH_CONFIG`` picks the stack, as for ``benchmarks.worker``; the full stacks
also need ``BENCH_LOG_FILE``. A traced stack gets its TracerProvider here,
before Django loads the middleware, as a project's ``wsgi.py`` would do it.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from benchmarks.stacks import TRACED_CONFIGS, install_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
if os.environ.get("BENCH_CONFIG", "bare") in TRACED_CONFIGS:
    install_tracing(os.environ["BENCH_CONFIG"])

application = get_wsgi_application()
