"""A small Django project with a Celery app, for the Celery tests (tests/test_peers_celery.py).

Run by a real ``celery -A tests.celery_app.app worker`` and a real gunicorn
(``tests.celery_app.wsgi``) against a private Redis; configured from the
environment (:mod:`.settings`).
"""
