"""Faster rendering of the two exposition formats, byte for byte prometheus_client's.

Rendering a scrape spends most of its time formatting the same label sets
again: ``name{method="GET",route="/items/<int:pk>/",status="200"}`` is escaped
and joined on every scrape although only the value after it changes. Here the
part of each line before the value is computed once per series, *by
prometheus_client's own encoder* (on a one-sample family), and remembered;
later scrapes only format the value. The output is therefore exactly what
``prometheus_client.generate_latest`` (text format 0.0.4) and
``prometheus_client.openmetrics.exposition.generate_latest`` (OpenMetrics
1.0.0) produce, which the tests check on every kind of metric.

A family with anything unusual in it (an exemplar, a timestamp, a native
histogram) is handed to prometheus_client's encoder whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as text_generate
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import UNDERSCORES
from prometheus_client.openmetrics.exposition import generate_latest as om_generate
from prometheus_client.utils import floatToGoString

_EOF = "# EOF\n"
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_MAX_CACHED = 100_000


class _One:
    """A collector of exactly one metric family."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self.metric]


def _simple(metric: Metric) -> bool:
    for s in metric.samples:
        if s.timestamp is not None or s.exemplar is not None:
            return False
        if getattr(s, "native_histogram", None) is not None or s.value is None:
            return False
    return True


def _empty_like(metric: Metric, name: str | None = None, typ: str | None = None) -> Metric:
    # A family renamed for the text format's _created/_gsum/_gcount gauges has
    # no unit: Metric() would append the unit to the new name.
    unit = metric.unit if name is None else ""
    return Metric(name or metric.name, metric.documentation, typ or metric.type, unit)


class _Encoder:
    """One format: headers and line prefixes memoized, values formatted per scrape."""

    def __init__(self, generate: Callable[[Any], bytes], trailer: str) -> None:
        self._generate = generate
        self._trailer = trailer
        self._prefixes: dict[tuple[Any, ...], str] = {}
        self._headers: dict[tuple[Any, ...], str] = {}

    def _library(self, metric: Metric) -> str:
        text = self._generate(_One(metric)).decode("utf-8")
        return text[: len(text) - len(self._trailer)] if self._trailer else text

    def _header(self, metric: Metric, name: str | None = None, typ: str | None = None) -> str:
        key = (name or metric.name, typ or metric.type, metric.documentation, metric.unit)
        header = self._headers.get(key)
        if header is None:
            header = self._library(_empty_like(metric, name, typ))
            if len(self._headers) < _MAX_CACHED:
                self._headers[key] = header
        return header

    def _prefix(self, metric: Metric, name: str, labels: dict[str, str]) -> str:
        key = (metric.type, name, *labels.items())
        prefix = self._prefixes.get(key)
        if prefix is None:
            one = _empty_like(metric)
            one.add_sample(name, labels, 0.0)
            line = self._library(one).rsplit("\n", 2)[-2]
            prefix = line[: line.rindex(" ") + 1]
            if len(self._prefixes) >= _MAX_CACHED:
                self._prefixes.clear()
            self._prefixes[key] = prefix
        return prefix

    def _line(self, metric: Metric, sample: Any) -> str:
        return self._prefix(metric, sample.name, sample.labels) + floatToGoString(sample.value)

    def family(self, metric: Metric) -> str:  # pragma: no cover - per format
        raise NotImplementedError

    def encode(self, registry: CollectorRegistry | Any) -> bytes:
        parts = [self.family(metric) for metric in registry.collect()]
        parts.append(self._trailer)
        return "".join(parts).encode("utf-8")


class _TextEncoder(_Encoder):
    def __init__(self) -> None:
        super().__init__(text_generate, "")

    def family(self, metric: Metric) -> str:
        if not _simple(metric):
            return self._library(metric)
        out = [self._header(metric)]
        grouped: dict[str, list[str]] = {}
        name = metric.name
        for s in metric.samples:
            line = self._line(metric, s) + "\n"
            for suffix in _OM_SUFFIXES:
                if s.name == name + suffix:
                    # The text format moves these to gauges after the family.
                    grouped.setdefault(suffix, []).append(line)
                    break
            else:
                out.append(line)
        for suffix, lines in sorted(grouped.items()):
            out.append(self._header(metric, name + suffix, "gauge"))
            out.extend(lines)
        return "".join(out)


class _OpenMetricsEncoder(_Encoder):
    def __init__(self) -> None:
        super().__init__(om_generate, _EOF)

    def family(self, metric: Metric) -> str:
        if not _simple(metric):
            return self._library(metric)
        out = [self._header(metric)]
        out.extend(self._line(metric, s) + "\n" for s in metric.samples)
        return "".join(out)


_text = _TextEncoder()
_openmetrics = _OpenMetricsEncoder()


def fast_encoder(encoder: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """Our memoizing twin of a prometheus_client encoder, where we have one.

    ``encoder`` is what ``prometheus_client.exposition.choose_encoder`` picked:
    the text or OpenMetrics ``generate_latest``, possibly a ``partial`` with an
    escaping scheme and version. Only the default escaping (underscores) and
    OpenMetrics 1.0.0 have a twin; anything else is returned unchanged.
    """
    func = getattr(encoder, "func", encoder)
    options = getattr(encoder, "keywords", None) or {}
    if options.get("escaping", UNDERSCORES) != UNDERSCORES:
        return encoder
    if func is text_generate and set(options) <= {"escaping"}:
        return _text.encode
    if func is om_generate and options.get("version", "1.0.0") == "1.0.0":
        return _openmetrics.encode
    return encoder
