"""Connecting receivers to Celery's signals by name (``tasks/signals.py``)."""

from celery import signals as celery_signals

from django_observability.tasks import signals


def test_connected_once_by_owner_and_disconnected():
    calls = []

    def receiver(sender=None, **kwargs):
        calls.append(sender)

    table = (("task_prerun", receiver),)
    signals.connect(table, "tests.owner")
    signals.connect(table, "tests.owner")  # the same dispatch uid: still one receiver
    try:
        celery_signals.task_prerun.send(sender="a")
        assert calls == ["a"]
    finally:
        signals.disconnect(table, "tests.owner")
    celery_signals.task_prerun.send(sender="b")
    assert calls == ["a"]
