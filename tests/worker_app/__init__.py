"""A tiny Django + Celery project for the worker peer tests (tests/test_peers_worker.py).

``celery -A tests.worker_app.app worker``; configured from the environment
(:mod:`.settings`). Its Celery app module calls
``django_observability.tasks.worker.configure()`` first, as docs/workers.md
tells projects to.
"""
