"""The example project. Its Celery app is loaded with Django (see example/celery.py)."""

from example.celery import app as celery_app

__all__ = ("celery_app",)
