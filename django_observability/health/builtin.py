"""The built-in health checks.

Each is a :class:`~django_observability.health.base.HealthCheck`; options go
in ``OBSERVABILITY_HEALTH_CHECKS`` as ``(dotted path, {options})``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from django_observability.health.base import (
    FAIL,
    PASS,
    WARN,
    Component,
    HealthCheck,
    failure_output,
)

# The message broker's check has its own module; named here too, with the others.
from django_observability.health.broker import BrokerCheck  # noqa: F401

logger = logging.getLogger("django_observability.health")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _threshold_status(percent: float, warn: float, fail: float) -> str:
    if percent >= fail:
        return FAIL
    if percent >= warn:
        return WARN
    return PASS


class _PerAlias(HealthCheck):
    """A check with one component per alias: ``probe(alias)`` raises on failure.

    ``observedValue`` is the round trip in milliseconds; ``probe`` may return
    a string to report instead (an ``output``, the check still passing).
    """

    aliases: Sequence[str] | None = None
    component_type = "datastore"

    def all_aliases(self) -> list[str]:  # pragma: no cover - per subclass
        raise NotImplementedError

    def probe(self, alias: str) -> str | None:  # pragma: no cover - per subclass
        raise NotImplementedError

    def run(self) -> list[Component]:
        results = []
        for alias in self.aliases or self.all_aliases():
            start = time.perf_counter()
            try:
                note = self.probe(alias)
            except Exception as exc:
                results.append(
                    Component(
                        status=FAIL,
                        component_id=alias,
                        component_type=self.component_type,
                        output=failure_output(exc),
                    )
                )
                continue
            results.append(
                Component(
                    component_id=alias,
                    component_type=self.component_type,
                    observed_value=None if note else _ms(start),
                    observed_unit=None if note else "ms",
                    output=note,
                )
            )
        return results


class DatabaseCheck(_PerAlias):
    """Connects to every database alias (or ``aliases``) and runs a trivial query.

    ``observedValue`` is the round trip in milliseconds. On SQLite the query
    reads the schema, so a file that is not a database fails.
    """

    def all_aliases(self) -> list[str]:
        return list(settings.DATABASES)

    def probe(self, alias: str) -> None:
        from django.db import connections

        connection = connections[alias]
        query = (
            "SELECT count(*) FROM sqlite_master" if connection.vendor == "sqlite" else "SELECT 1"
        )
        with connection.cursor() as cursor:
            cursor.execute(query)
            cursor.fetchone()


class CacheCheck(_PerAlias):
    """Sets, reads back and deletes a unique key in every cache alias (or ``aliases``)."""

    def all_aliases(self) -> list[str]:
        return list(getattr(settings, "CACHES", {"default": {}}))

    def probe(self, alias: str) -> str | None:
        from django.core.cache import caches
        from django.core.cache.backends.dummy import DummyCache

        cache = caches[alias]
        if isinstance(cache, DummyCache):
            return "dummy cache: stores nothing, nothing to check"
        key = f"django_observability:health:{uuid.uuid4().hex}"
        value = uuid.uuid4().hex
        cache.set(key, value, 30)
        read = cache.get(key)
        cache.delete(key)
        if read != value:
            raise ValueError("a value written could not be read back")
        return None


class MigrationsCheck(HealthCheck):
    """Fails while migrations on disk are not applied to the database (``aliases``).

    Loading the migration graph is costly, so it is done again only when the
    set of applied migrations in the database changes (one query per run).
    """

    aliases: Sequence[str] = ("default",)
    component_type = "datastore"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._known: dict[str, tuple[frozenset[Any], list[str]]] = {}

    def run(self) -> list[Component]:
        from django.db import connections
        from django.db.migrations.executor import MigrationExecutor
        from django.db.migrations.recorder import MigrationRecorder

        results = []
        for alias in self.aliases:
            connection = connections[alias]
            applied = frozenset(MigrationRecorder(connection).applied_migrations())
            known = self._known.get(alias)
            if known is None or known[0] != applied:
                executor = MigrationExecutor(connection)
                plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
                unapplied = [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]
                known = self._known[alias] = (applied, unapplied)
            unapplied = known[1]
            if unapplied:
                shown = ", ".join(unapplied[:5]) + (" ..." if len(unapplied) > 5 else "")
                results.append(
                    Component(
                        status=FAIL,
                        component_id=alias,
                        component_type=self.component_type,
                        observed_value=len(unapplied),
                        output=f"{len(unapplied)} unapplied migration(s): {shown}",
                    )
                )
            else:
                results.append(
                    Component(
                        component_id=alias, component_type=self.component_type, observed_value=0
                    )
                )
        return results


class DiskCheck(HealthCheck):
    """Usage of the file system holding ``path``, in percent; warns and fails at thresholds."""

    path: str = "/"
    warn_percent: float = 90.0
    fail_percent: float = 95.0
    component_type = "system"

    def run(self) -> Component:
        import psutil

        usage = psutil.disk_usage(self.path)
        status = _threshold_status(usage.percent, self.warn_percent, self.fail_percent)
        return Component(
            status=status,
            component_id=str(self.path),
            component_type=self.component_type,
            observed_value=usage.percent,
            observed_unit="%",
            output=None
            if status == PASS
            else f"{usage.percent:.1f}% used, {usage.free // 2**20} MiB free",
        )


class MetricsStoreCheck(HealthCheck):
    """The multiprocess metrics store (``PROMETHEUS_MULTIPROC_DIR``): writable, with room.

    Fails when a file cannot be made there with its space reserved, or when
    this process holds values it could not store; warns when less than
    ``warn_free_mib`` MiB are free. Passes with a note outside multiprocess
    mode. Requests are served whatever it says (values that cannot be stored
    are kept in memory): it tells readiness and alerts that metrics are being
    lost before anyone misses them.
    """

    warn_free_mib: float = 16.0
    component_type = "system"

    def run(self) -> Component:
        from django_observability.metrics_store import store_state

        state = store_state()
        if state is None:
            return Component(
                component_type=self.component_type,
                output="not in multiprocess mode: nothing to check",
            )
        free_mib = None if state.free_bytes is None else round(state.free_bytes / 2**20, 1)
        if not state.writable:
            status = FAIL
            output = f"cannot write: {state.error}"
        elif free_mib is not None and free_mib < self.warn_free_mib:
            status = WARN
            output = f"{free_mib} MiB free"
        else:
            status, output = PASS, None
        # No componentId: a server path is not for strangers ("python -m
        # django_observability.metrics_store status" tells operators).
        return Component(
            status=status,
            component_type=self.component_type,
            observed_value=free_mib,
            observed_unit="MiB" if free_mib is not None else None,
            output=output,
        )


def cgroup_memory(root: str = "/sys/fs/cgroup") -> tuple[int, int] | None:
    """(working set, limit) in bytes of this container's cgroup, if it has a limit."""
    v1 = os.path.join(root, "memory")
    candidates = [
        # cgroup v2
        (
            os.path.join(root, "memory.current"),
            os.path.join(root, "memory.max"),
            os.path.join(root, "memory.stat"),
            "inactive_file",
        ),
        # cgroup v1
        (
            os.path.join(v1, "memory.usage_in_bytes"),
            os.path.join(v1, "memory.limit_in_bytes"),
            os.path.join(v1, "memory.stat"),
            "total_inactive_file",
        ),
    ]
    for usage_path, limit_path, stat_path, inactive_key in candidates:
        try:
            with open(limit_path) as fh:
                raw_limit = fh.read().strip()
            with open(usage_path) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if raw_limit == "max":
            return None
        limit = int(raw_limit)
        # An "unlimited" v1 limit is a huge number near 2**63.
        if limit <= 0 or limit >= 2**62:
            return None
        inactive = 0
        try:
            with open(stat_path) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == inactive_key:
                        inactive = int(value)
                        break
        except (OSError, ValueError):
            pass
        # The working set, as the kubelet counts it for eviction.
        return max(usage - inactive, 0), limit
    return None


class MemoryCheck(HealthCheck):
    """Memory in use, in percent of the machine's or the container's limit, whichever is tighter."""

    warn_percent: float = 90.0
    fail_percent: float = 95.0
    component_type = "system"

    def run(self) -> Component:
        import psutil

        memory = psutil.virtual_memory()
        percent = float(memory.percent)
        where = "machine"
        cgroup = cgroup_memory()
        if cgroup is not None:
            used, limit = cgroup
            container_percent = 100.0 * used / limit
            if container_percent > percent:
                percent, where = container_percent, "container"
        percent = round(percent, 1)
        status = _threshold_status(percent, self.warn_percent, self.fail_percent)
        return Component(
            status=status,
            component_type=self.component_type,
            observed_value=percent,
            observed_unit="%",
            output=None if status == PASS else f"{percent}% of the {where}'s memory in use",
        )


class StorageCheck(HealthCheck):
    """Writes, reads back and deletes a small file in a storage (``alias``, default ``default``)."""

    alias: str = "default"
    component_type = "datastore"

    def run(self) -> Component:
        from django.core.files.base import ContentFile
        from django.core.files.storage import storages

        storage = storages[self.alias]
        start = time.perf_counter()
        content = uuid.uuid4().hex.encode()
        name = storage.save(
            f"django-observability-health/{uuid.uuid4().hex}.txt", ContentFile(content)
        )
        try:
            with storage.open(name, "rb") as fh:
                if fh.read() != content:
                    raise ValueError("a file written could not be read back")
        finally:
            storage.delete(name)
        return Component(
            component_id=self.alias,
            component_type=self.component_type,
            observed_value=_ms(start),
            observed_unit="ms",
        )


def system_summary(disk_path: str = "/") -> dict[str, Any]:
    """CPU, memory and disk of the machine (and container), for the full report."""
    import psutil

    memory = psutil.virtual_memory()
    summary: dict[str, Any] = {
        "cpu": {"percent": psutil.cpu_percent(interval=None), "count": psutil.cpu_count()},
        "memory": {
            "totalBytes": memory.total,
            "availableBytes": memory.available,
            "percent": memory.percent,
        },
    }
    cgroup = cgroup_memory()
    if cgroup is not None:
        summary["memory"]["containerUsedBytes"], summary["memory"]["containerLimitBytes"] = cgroup
    try:
        disk = psutil.disk_usage(disk_path)
        summary["disk"] = {
            "path": disk_path,
            "totalBytes": disk.total,
            "freeBytes": disk.free,
            "percent": disk.percent,
        }
    except OSError:
        pass
    summary["process"] = {"pid": os.getpid()}
    return summary


def prime_cpu() -> None:
    """psutil's first CPU reading measures nothing: take it so the next one means something."""
    try:
        import psutil

        psutil.cpu_percent(interval=None)
    except Exception:
        logger.debug("could not prime psutil's CPU reading", exc_info=True)
