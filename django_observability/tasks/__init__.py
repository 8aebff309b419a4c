"""Background work: tasks measured, traced and logged like requests.

* :mod:`.context`: the task running in this context (id, name) and the
  request id it carries, reached through functions;
* :mod:`.celery`: Celery's signals turned into metrics, context and log
  fields (OpenTelemetry's Celery instrumentation makes the spans).

See docs/tasks.md.
"""
