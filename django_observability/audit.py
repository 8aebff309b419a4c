"""Auth, audit and security events: counters and structured audit records.

Everything here reaches the project three ways: a Prometheus counter (with
bounded labels), one record on the logger ``django_observability.audit``, and
the :data:`audit_event` signal (sent with ``send_robust``), so a project can
persist events itself.

* Authentication: Django's ``user_logged_in``, ``user_logged_out`` and
  ``user_login_failed`` signals (sync and async login views alike).
* Model changes: ``post_save`` / ``post_delete`` of the models named in
  ``OBSERVABILITY_AUDIT_MODELS`` and of their subclasses (multi-table and
  proxy), counted and recorded when the transaction commits (a rolled-back
  change is not audited).
* Security: ``PermissionDenied``, every ``SuspiciousOperation`` (a disallowed
  Host included) and CSRF failures, from the records Django itself logs for
  them; the refusals API frameworks answer themselves come through
  :mod:`~django_observability.frameworks`.
* Your own events: :func:`record_event`.

No personal data: users appear by primary key only; a failed login's
attempted username is left out unless ``OBSERVABILITY_AUDIT_LOG_USERNAMES`` is
on, and then only as an HMAC keyed with the project's ``SECRET_KEY``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from django.dispatch import Signal

from django_observability.conf import valid_or_default
from django_observability.context import (
    current_request,
    get_request_id,
    loaded_user_id,
    request_id_of,
    user_id,
)
from django_observability.metrics import get_metrics

logger = logging.getLogger("django_observability.audit")
_internal = logging.getLogger("django_observability")

#: Sent for every audit event, with ``sender=AuditEvent`` and ``event`` (an
#: :class:`AuditEvent`). Sent with ``send_robust``: a failing receiver is
#: logged and never breaks the request.
audit_event = Signal()


@dataclass
class AuditEvent:
    """One audit event, as logged and as sent with :data:`audit_event`."""

    action: str
    category: str
    outcome: str = "success"
    type: str = "info"
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    client_ip: str | None = None
    request_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def log_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "event.action": self.action,
            "event.category": self.category,
            "event.type": self.type,
            "event.outcome": self.outcome,
        }
        if self.actor_id is not None:
            extra["user.id"] = self.actor_id
        if self.target_type is not None:
            extra["target.type"] = self.target_type
        if self.target_id is not None:
            extra["target.id"] = self.target_id
        if self.client_ip:
            extra["client.ip"] = self.client_ip
        if self.request_id:
            extra["request_id"] = self.request_id
        for key, value in self.fields.items():
            extra.setdefault(key, value)
        return extra


def _emit(event: AuditEvent, level: int = logging.INFO) -> None:
    """Log the record and send the signal; never raises."""
    try:
        target = f" {event.target_type}" if event.target_type else ""
        if event.target_id is not None:
            target += f":{event.target_id}"
        logger.log(level, "%s %s%s", event.action, event.outcome, target, extra=event.log_extra())
    except Exception:
        _internal.exception("django_observability: could not log an audit record")
    try:
        for receiver, result in audit_event.send_robust(sender=AuditEvent, event=event):
            if isinstance(result, Exception):
                _internal.error(
                    "audit_event receiver %r failed: %s",
                    receiver,
                    result,
                    exc_info=(type(result), result, result.__traceback__),
                )
    except Exception:
        _internal.exception("django_observability: could not send audit_event")


# --- who and where ----------------------------------------------------------------


def _request_facts(request: Any) -> tuple[str | None, str | None]:
    """(client address, request id) of a request, if there is one."""
    if request is None:
        request = current_request()
        if request is None:
            return None, get_request_id()
    meta = getattr(request, "META", {}) or {}
    return meta.get("REMOTE_ADDR") or None, request_id_of(request)


def _acting_user_id() -> str | None:
    """The id of the user of the request being served, without a query when avoidable."""
    request = current_request()
    if request is None:
        return None
    actor_id = loaded_user_id(request)
    if actor_id is not None or not hasattr(request, "user"):
        return actor_id
    try:
        import asyncio

        asyncio.get_running_loop()
        return None  # in an event loop: loading the user would be a sync query
    except RuntimeError:
        pass
    try:
        return user_id(request.user)
    except Exception:
        return None


# --- authentication -----------------------------------------------------------------


def _count_auth(event: str) -> None:
    metrics = get_metrics()
    if metrics is not None:
        metrics.count_auth(event)


def _session_event(action: str, event_type: str, request: Any, user: Any) -> None:
    if not _auth_enabled():
        return
    try:
        _count_auth(action)
        ip, rid = _request_facts(request)
        _emit(
            AuditEvent(
                action,
                "authentication",
                "success",
                event_type,
                actor_id=user_id(user),
                client_ip=ip,
                request_id=rid,
            )
        )
    except Exception:
        _internal.exception("django_observability: %s event", action)


def on_logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    _session_event("login", "start", request, user)


def on_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    _session_event("logout", "end", request, user)


def on_login_failed(
    sender: Any, credentials: dict[str, Any] | None = None, request: Any = None, **kwargs: Any
) -> None:
    """A failed login: counted and recorded with no credential of any kind."""
    if not _auth_enabled():
        return
    try:
        _count_auth("login_failed")
        ip, rid = _request_facts(request)
        fields: dict[str, Any] = {}
        if valid_or_default("AUDIT_LOG_USERNAMES"):
            username = _attempted_username(credentials or {})
            if username is not None:
                fields["user.hash"] = username_hmac(username)
        _emit(
            AuditEvent(
                "login_failed",
                "authentication",
                "failure",
                "start",
                client_ip=ip,
                request_id=rid,
                fields=fields,
            ),
            level=logging.WARNING,
        )
    except Exception:
        _internal.exception("django_observability: failed-login event")


def _attempted_username(credentials: dict[str, Any]) -> str | None:
    from django.contrib.auth import get_user_model

    field_name = getattr(get_user_model(), "USERNAME_FIELD", "username")
    value = credentials.get(field_name, credentials.get("username"))
    return value if isinstance(value, str) and value else None


def username_hmac(username: str) -> str:
    """A keyed hash of a username: correlates failed logins, reveals no name.

    HMAC-SHA256 keyed with the project's ``SECRET_KEY`` (through Django's
    ``salted_hmac``), so a dictionary of common usernames cannot reverse it
    without the key.
    """
    from django.utils.crypto import salted_hmac

    return salted_hmac(
        "django_observability.audit.username", username, algorithm="sha256"
    ).hexdigest()


# --- model changes ----------------------------------------------------------------


class _ModelSelection:
    """Which models ``OBSERVABILITY_AUDIT_MODELS`` selects; decided once per model class.

    A selected model selects its subclasses: multi-table children (every
    Wagtail page type is one of ``wagtailcore.Page``) and proxies. A model is
    selected when it, or one of the concrete models it inherits from, is
    named (``app_label.Model``) or belongs to a named app (``app_label.*``).
    The decision is kept per class (the ``sender`` of ``post_save``) until
    :meth:`reset`.
    """

    def __init__(self) -> None:
        # model class -> the label that selected it (its own or an ancestor's), or None
        self._decisions: dict[type, str | None] = {}
        self._lock = threading.Lock()
        self._patterns: tuple[set[str], set[str]] | None = None

    def reset(self) -> None:
        with self._lock:
            self._decisions = {}
            self._patterns = None

    def _load(self) -> tuple[set[str], set[str]]:
        apps: set[str] = set()
        models: set[str] = set()
        for entry in valid_or_default("AUDIT_MODELS"):
            app_label, _, model = entry.partition(".")
            if model == "*":
                apps.add(app_label.lower())
            else:
                models.add(f"{app_label}.{model}".lower())
        return apps, models

    def selected_by(self, model: type) -> str | None:
        """The label (``app_label.model``, lower case) through which ``model`` is selected.

        ``model``'s own label when it is named itself, else the nearest
        selected ancestor's; ``None`` when ``model`` is not audited.
        """
        try:
            return self._decisions[model]
        except KeyError:
            pass
        with self._lock:
            if self._patterns is None:
                self._patterns = self._load()
            apps, models = self._patterns
            decision = None
            if apps or models:
                for meta in _lineage(model):
                    if meta.label_lower in models or meta.app_label.lower() in apps:
                        decision = meta.label_lower
                        break
            self._decisions[model] = decision
        return decision

    def selected(self, model: type) -> bool:
        """Whether changes to ``model`` are audited."""
        return self.selected_by(model) is not None


def _lineage(model: type) -> list[Any]:
    """``_meta`` of ``model`` and of every concrete model it inherits from, nearest first.

    The class's MRO covers multi-table parents and, for a proxy, the model it
    stands for; abstract bases (no table, never a ``sender``) are left out.
    """
    from django.db.models import Model

    metas = []
    for klass in model.__mro__:
        if klass is Model or not isinstance(klass, type) or not issubclass(klass, Model):
            continue
        meta = klass._meta  # type: ignore[attr-defined]
        if not meta.abstract:
            metas.append(meta)
    return metas


selection = _ModelSelection()


def _model_event(
    action: str, event_type: str, instance: Any, using: str | None, selected_as: str
) -> None:
    from django.db import transaction

    meta = instance._meta
    target_type = meta.label_lower
    # The model that selected it, when that is an ancestor (a page type saved,
    # "wagtailcore.page" audited): log searches find every subclass by it.
    fields = {} if selected_as == target_type else {"target.audited_as": selected_as}
    target_id = None if instance.pk is None else str(instance.pk)
    actor_id = _acting_user_id()
    ip, rid = _request_facts(None)

    def commit() -> None:
        try:
            metrics = get_metrics()
            if metrics is not None:
                metrics.count_audit(action, target_type, capped=False)
            _emit(
                AuditEvent(
                    action,
                    "database",
                    "success",
                    event_type,
                    actor_id=actor_id,
                    target_type=target_type,
                    target_id=target_id,
                    client_ip=ip,
                    request_id=rid,
                    fields=fields,
                )
            )
        except Exception:
            _internal.exception("django_observability: model audit event")

    transaction.on_commit(commit, using=using)


def on_post_save(
    sender: Any,
    instance: Any = None,
    created: bool = False,
    raw: bool = False,
    using: str | None = None,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    # Django sends post_save once per save, with the class of the saved
    # instance as the sender (a multi-table child's parents send nothing).
    if raw or instance is None:
        return
    selected_as = selection.selected_by(sender)
    if selected_as is None:
        return
    # Logging in saves last_login: that is the login event, not a user update.
    if not created and update_fields is not None and set(update_fields) == {"last_login"}:
        return
    try:
        if created:
            _model_event("create", "creation", instance, using, selected_as)
        else:
            _model_event("update", "change", instance, using, selected_as)
    except Exception:
        _internal.exception("django_observability: post_save audit")


def on_post_delete(
    sender: Any,
    instance: Any = None,
    using: str | None = None,
    origin: Any = None,
    **kwargs: Any,
) -> None:
    if instance is None or _deletions.parent_row(instance, origin):
        return
    selected_as = selection.selected_by(sender)
    if selected_as is None:
        return
    try:
        _model_event("delete", "deletion", instance, using, selected_as)
    except Exception:
        _internal.exception("django_observability: post_delete audit")


class _Deletions:
    """Recognises the parent-table rows of a multi-table child being deleted.

    Deleting a child deletes its parents' rows too, and Django sends
    ``post_delete`` for each of them, the child's first (a row is deleted
    before the rows it points to). Whether ``delete()`` was called on the child
    or, as Wagtail and treebeard do, on a queryset of the parent model, the
    deletion was one, so is its record: the child's. The signals of one
    deletion come one after another in one thread with the same ``origin``
    (what ``delete()`` was called on); the rows seen since that origin's first
    signal are kept until another deletion starts.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def parent_row(self, instance: Any, origin: Any) -> bool:
        """Whether ``instance`` is a parent row of a child already seen in this deletion."""
        local = self._local
        current = getattr(local, "origin", None)
        if origin is None or current is None or current() is not origin:
            local.origin = _weak(origin)
            local.seen = []
        model = type(instance)._meta.concrete_model
        pk = instance.pk
        for child, child_pk in local.seen:
            if child_pk == pk and child is not model and issubclass(child, model):
                return True
        local.seen.append((model, pk))
        return False


def _weak(origin: Any) -> Any:
    """A weak reference to ``origin`` (``None``-returning when it cannot have one)."""
    import weakref

    try:
        return weakref.ref(origin)
    except TypeError:
        return lambda: None


_deletions = _Deletions()


# --- security events --------------------------------------------------------------

# django.security.<class name> -> security event type. Anything else under
# django.security is a "suspicious_operation": the label stays bounded.
SECURITY_TYPES = {
    "DisallowedHost": "disallowed_host",
    "DisallowedRedirect": "disallowed_redirect",
    "csrf": "csrf_failure",
    "RequestDataTooBig": "request_data_too_big",
    "TooManyFieldsSent": "too_many_fields",
    "TooManyFilesSent": "too_many_files",
    "SuspiciousFileOperation": "suspicious_file_operation",
    "SuspiciousMultipartForm": "suspicious_multipart_form",
    "SuspiciousSession": "suspicious_session",
    "InvalidSessionKey": "suspicious_session",
    "DisallowedModelAdminLookup": "disallowed_admin_lookup",
    "DisallowedModelAdminToField": "disallowed_admin_lookup",
    "SuspiciousOperation": "suspicious_operation",
}


class SecurityEvents(logging.Filter):
    """Turns the records Django logs for security events into security events.

    A *filter* on ``django.request`` (for ``PermissionDenied``) and on each
    known ``django.security.*`` logger: a filter sees every record logged on
    its logger whatever the propagation and handlers (a project that silences
    ``DisallowedHost`` with ``"propagate": False`` still has it counted), and a
    later ``dictConfig`` that resets those loggers' handlers leaves it in
    place. A handler on ``django.security`` catches the children nobody lists
    (third-party ``SuspiciousOperation`` subclasses). A record is counted once.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        self.observe(record)
        return True

    def observe(self, record: logging.LogRecord) -> None:
        # Django logs these events at WARNING (403s) or ERROR (400s).
        if record.levelno < logging.WARNING or getattr(record, "_observability_seen", False):
            return
        try:
            record._observability_seen = True  # type: ignore[attr-defined]
            event_type = self._type(record)
            if event_type is None:
                return
            record_security_event(event_type, request=getattr(record, "request", None))
        except Exception:
            _internal.exception("django_observability: security event")

    @staticmethod
    def _type(record: logging.LogRecord) -> str | None:
        name = record.name
        if name.startswith("django.security"):
            return SECURITY_TYPES.get(name.rpartition(".")[2], "suspicious_operation")
        if name == "django.request" and record.exc_info:
            from django.core.exceptions import PermissionDenied

            if isinstance(record.exc_info[1], PermissionDenied):
                return "permission_denied"
        return None


class _FallbackHandler(logging.Handler):
    def __init__(self, events: SecurityEvents) -> None:
        super().__init__(level=logging.DEBUG)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        self.events.observe(record)

    def handleError(self, record: logging.LogRecord) -> None:  # never print to stderr
        pass


_security_events = SecurityEvents()
_fallback_handler = _FallbackHandler(_security_events)
SECURITY_LOGGERS = (
    "django.request",
    *(f"django.security.{name}" for name in SECURITY_TYPES),
)


def record_security_event(event_type: str, *, request: Any = None, **fields: Any) -> None:
    """Count and record a security event; custom types are capped like other free labels."""
    if not _security_enabled():
        return
    metrics = get_metrics()
    if metrics is not None:
        metrics.count_security(event_type, capped=event_type not in _BUILTIN_SECURITY)
    ip, rid = _request_facts(request)
    actor = _loaded_actor(request)
    _emit(
        AuditEvent(
            event_type,
            "web",
            "failure",
            "denied",
            actor_id=actor,
            client_ip=ip,
            request_id=rid,
            fields=fields,
        ),
        level=logging.WARNING,
    )


_BUILTIN_SECURITY = frozenset(SECURITY_TYPES.values()) | {"permission_denied"}


def _loaded_actor(request: Any) -> str | None:
    if request is None:
        return None
    try:
        return loaded_user_id(request)
    except Exception:
        return None


# --- the public API -----------------------------------------------------------------


def record_event(
    action: str,
    *,
    target: Any = None,
    outcome: str = "success",
    actor: Any = None,
    category: str = "web",
    **fields: Any,
) -> AuditEvent:
    """Record an event of your own: counted, logged and sent as :data:`audit_event`.

    ``action`` is what happened (``"password_reset"``, ``"export"``...);
    ``target`` a model instance (type ``app_label.model`` and its primary key)
    or a string naming what it happened to; ``actor`` a user or a user id
    (defaults to the user of the current request when it is loaded);
    ``fields`` go into the log record as they are (secrets redacted by the
    JSON formatter). ``action`` and ``target`` label values are capped by
    ``OBSERVABILITY_METRICS_LABEL_CAP``, overflow counted as ``_other``.
    """
    target_type: str | None
    target_id: str | None = None
    if target is None:
        target_type = None
    elif hasattr(target, "_meta") and hasattr(target, "pk"):
        target_type = target._meta.label_lower
        target_id = None if target.pk is None else str(target.pk)
    else:
        target_type = str(target)
    if actor is None:
        actor_id = _acting_user_id()
    elif hasattr(actor, "pk"):
        actor_id = user_id(actor)
    else:
        actor_id = str(actor)
    ip, rid = _request_facts(None)
    event = AuditEvent(
        str(action),
        category,
        outcome,
        "info",
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        client_ip=ip,
        request_id=rid,
        fields=fields,
    )
    try:
        metrics = get_metrics()
        if metrics is not None:
            metrics.count_audit(event.action, target_type or "none", capped=True)
    except Exception:
        _internal.exception("django_observability: could not count an audit event")
    _emit(event)
    return event


# --- switches and wiring ----------------------------------------------------------------


def _auth_enabled() -> bool:
    return bool(valid_or_default("AUTH_EVENTS"))


def _security_enabled() -> bool:
    return bool(valid_or_default("SECURITY_EVENTS"))


def install() -> None:
    """Connect the receivers and attach the security handler (from ``ready()``)."""
    from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
    from django.db.models.signals import post_delete, post_save

    user_logged_in.connect(on_logged_in, dispatch_uid="django_observability.audit.login")
    user_logged_out.connect(on_logged_out, dispatch_uid="django_observability.audit.logout")
    user_login_failed.connect(on_login_failed, dispatch_uid="django_observability.audit.failed")
    post_save.connect(on_post_save, dispatch_uid="django_observability.audit.save")
    post_delete.connect(on_post_delete, dispatch_uid="django_observability.audit.delete")
    for name in SECURITY_LOGGERS:
        target = logging.getLogger(name)
        if _security_events not in target.filters:
            target.addFilter(_security_events)
    parent = logging.getLogger("django.security")
    if _fallback_handler not in parent.handlers:
        parent.addHandler(_fallback_handler)
