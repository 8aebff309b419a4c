"""Reading: the store's totals for a scrape, under the lock, with exact sums."""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from django_observability.metrics_store import files
from django_observability.metrics_store.compaction import compact_dead
from django_observability.metrics_store.files import (
    ASIDE,
    JOURNAL,
    NEW,
    StoreBusy,
    locked,
    log_damaged,
    log_store_error,
    logger,
    read_journal,
)

# --- what a scrape reads ---------------------------------------------------------------


def files_to_read(path: str, names: Iterable[str] | None = None) -> list[str]:
    """The files whose values make the store's totals, whatever state a compaction left.

    Every ``*.db`` file. When a compaction was cut short: without a journal its
    new archives are ignored and the files it had moved aside are read where
    they are; with one (the new archives complete) the new archives replace
    the old and the files the journal names are already in them.
    """
    if names is None:
        names = os.listdir(path)
    names = list(names)
    journal = read_journal(path) if JOURNAL in names else None
    absorbed: set[str] = set()
    replaced: dict[str, str] = {}
    if journal is not None:
        absorbed = set(journal.get("absorbed", ()))
        for archive in journal.get("archives", ()):
            if archive + NEW in names:
                replaced[archive] = archive + NEW
    chosen = []
    for name in names:
        if name.endswith(".db"):
            chosen.append(replaced.get(name, name))
        elif name.endswith(ASIDE) and name not in absorbed:
            chosen.append(name)
    # A new archive whose old one did not exist yet.
    chosen.extend(new for old, new in replaced.items() if old not in names)
    return [os.path.join(path, name) for name in sorted(set(chosen))]


class StoreCollector:
    """Collects the store's totals under its lock, as ``MultiProcessCollector`` does.

    Before reading it compacts the files of processes that no longer exist
    (for servers without a hook that tells when a worker exits, and for what a
    hook missed), unless ``compact`` is false. The totals are those of
    prometheus_client's ``MultiProcessCollector`` (same families, samples and
    gauge modes), except that sums are exact (``math.fsum`` over every
    process's value, and archives that keep a sum's exact parts): a float sum
    rounded once per scrape does not depend on how the values are spread over
    files, so compacting never moves a counter back, not even by a rounding.
    """

    def __init__(self, path: str, compact: bool = True) -> None:
        self.path = path
        self.compact = compact

    def collect(self) -> list[Metric]:
        if not os.path.isdir(self.path):
            # Nothing stored (the state gauges say why); a scrape still answers.
            log_store_error("no metrics store at", self.path, FileNotFoundError(2, "missing"))
            return []
        if self.compact:
            try:
                compact_dead(self.path, only_if_pid_named=True)
            except StoreBusy as exc:
                logger.debug("django_observability: compaction at scrape time skipped: %s", exc)
            except OSError as exc:
                log_store_error("could not compact the metrics store", self.path, exc)
            except Exception:
                logger.exception("django_observability: compaction at scrape time failed")
        with locked(self.path, exclusive=False, timeout=files.READ_LOCK_TIMEOUT):
            return merge(files_to_read(self.path))


def _file_kind(path: str) -> tuple[str, str, str]:
    """(type, gauge mode, pid) from a file name, as prometheus_client reads it."""
    name = os.path.basename(path)
    cut = name.find(".db")
    parts = (name[:cut] if cut >= 0 else name).split("_")
    if parts[0] == "gauge" and len(parts) >= 3:
        return "gauge", parts[1], parts[2]
    return parts[0], "", ""


def _total(values_: list[float]) -> float:
    if len(values_) == 1:
        return values_[0]
    try:
        return math.fsum(values_)
    except (OverflowError, ValueError):  # infinities: no exact sum to keep
        return sum(values_)


def merge(paths: Iterable[str]) -> list[Metric]:
    """The families of ``paths`` merged, as ``MultiProcessCollector.merge`` with exact sums."""
    metrics: dict[str, Metric] = {}
    # metric -> labels -> (sample name, labels) -> values (or (timestamp, value))
    grouped: dict[str, dict[Any, dict[Any, Any]]] = {}
    buckets: dict[str, dict[Any, dict[float, list[float]]]] = {}
    parsed: dict[str, tuple[str, str, dict[str, str], Any, str]] = {}
    for path in paths:
        typ, mode, pid = _file_kind(path)
        try:
            rows = list(MmapedDict.read_all_values_from_file(path))
        except FileNotFoundError:
            if typ == "gauge" and mode.startswith("live"):
                continue  # removed by mark_process_dead between listing and reading
            raise
        except (struct.error, RuntimeError, UnicodeDecodeError) as exc:
            # Cut short (a writer killed while making it): unreadable is better
            # than a scrape that fails until someone removes it.
            log_damaged(path, exc)
            continue
        for key, value, timestamp, _ in rows:
            entry = parsed.get(key)
            if entry is None:
                metric_name, name, labels, help_text = json.loads(key)
                entry = parsed[key] = (
                    metric_name,
                    name,
                    labels,
                    tuple(sorted(labels.items())),
                    help_text,
                )
            metric_name, name, labels, labels_key, help_text = entry
            metric = metrics.get(metric_name)
            if metric is None:
                metric = metrics[metric_name] = Metric(metric_name, help_text, typ)
                grouped[metric_name] = {}
            if typ == "gauge":
                metric._multiprocess_mode = mode  # type: ignore[attr-defined]
                if mode in ("all", "liveall"):
                    labels_key = (*labels_key, ("pid", pid))
                group = grouped[metric_name].setdefault(labels_key, {})
                held = group.get(name)
                if mode in ("min", "livemin"):
                    if held is None or value < held:
                        group[name] = value
                elif mode in ("max", "livemax"):
                    if held is None or value > held:
                        group[name] = value
                elif mode in ("sum", "livesum"):
                    group.setdefault(name, []).append(value)
                elif mode in ("mostrecent", "livemostrecent"):
                    if (held[0] if held is not None else 0.0) < float(timestamp or 0):
                        group[name] = (float(timestamp), value)
                else:  # all, liveall
                    group[name] = value
            elif typ == "histogram" and "le" in labels:
                without_le = tuple(item for item in labels_key if item[0] != "le")
                per = buckets.setdefault(metric_name, {}).setdefault(without_le, {})
                per.setdefault(float(labels["le"]), []).append(value)
                grouped[metric_name].setdefault(without_le, {})
            else:
                grouped[metric_name].setdefault(labels_key, {}).setdefault(name, []).append(value)
    out = []
    for metric_name, metric in metrics.items():
        mode = getattr(metric, "_multiprocess_mode", "")
        samples = []
        for labels_key, by_name in grouped[metric_name].items():
            for name, held in by_name.items():
                if metric.type == "gauge" and mode in ("mostrecent", "livemostrecent"):
                    value = held[1]
                elif isinstance(held, list):
                    value = _total(held)
                else:
                    value = held
                samples.append(Sample(name, dict(labels_key), value))
            if metric.type == "histogram":
                per = buckets.get(metric_name, {}).get(labels_key)
                if per is not None:
                    acc = 0.0
                    for bound, counts in sorted(per.items()):
                        acc += _total(counts)
                        labels = dict(labels_key)
                        labels["le"] = floatToGoString(bound)
                        samples.append(Sample(metric.name + "_bucket", labels, acc))
                    samples.append(Sample(metric.name + "_count", dict(labels_key), acc))
        metric.samples = samples
        out.append(metric)
    return out
