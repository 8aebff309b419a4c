from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import got_request_exception, setting_changed

from django_observability.conf import PREFIX


class ObservabilityConfig(AppConfig):
    name = "django_observability"
    verbose_name = "Observability"
    default = True

    def ready(self) -> None:
        from django_observability import (
            audit,
            cache,
            checks,  # noqa: F401  (registers the system checks)
            db,
            frameworks,
            http_client,
            jobs,
            metrics_store,
            redis_client,
            tracing,
        )
        from django_observability.health.builtin import prime_cpu
        from django_observability.middleware import record_exception
        from django_observability.tasks import celery as tasks_celery
        from django_observability.tasks import django_tasks
        from django_observability.tasks import worker as tasks_worker

        got_request_exception.connect(
            record_exception, dispatch_uid="django_observability.record_exception"
        )
        setting_changed.connect(_setting_changed, dispatch_uid="django_observability.settings")
        prime_cpu()
        # Multiprocess files with their space reserved (a full disk must not
        # be a SIGBUS); a gunicorn worker had this from post_fork already.
        metrics_store.install()
        db.install()
        cache.install()  # every CACHES alias's backend instances, BACKEND untouched
        audit.install()
        frameworks.install()
        tracing.setup()
        http_client.enable()  # outgoing HTTP: OpenTelemetry's instrumentations, our metric
        redis_client.enable()  # redis-py's commands: our metric, OpenTelemetry's spans
        tasks_celery.install()  # Celery's signals, when Celery is installed (after tracing)
        tasks_worker.install()  # a Celery worker's main process: /metrics, heartbeat, store
        django_tasks.install()  # django.tasks / django-tasks: signals, spans, the db worker
        jobs.install()  # declared commands' and Celery beat entries' runs (jobs.py)


def _setting_changed(setting: str, **kwargs: Any) -> None:
    """Drop what was derived from a setting that changed (override_settings in tests).

    Each module that caches something made from the settings owns its reset;
    this only decides which resets a change calls for.
    """
    from django_observability.middleware import reset_config

    if setting == "ROOT_URLCONF":
        reset_config()  # the probe URLs may have moved
        return
    if not setting.startswith(PREFIX):
        return
    from django_observability import db, metrics, permissions
    from django_observability.audit import selection
    from django_observability.health import registry, runner
    from django_observability.logging import redaction, service

    name = setting.removeprefix(PREFIX)
    reset_config()
    db.reset()
    selection.reset()
    permissions.reset()
    service.reset()
    redaction.reset()
    if name in metrics.SETTINGS_USED:
        metrics.reset_metrics()
    if name.startswith("HEALTH_"):
        registry.reset()
        runner.reset()
