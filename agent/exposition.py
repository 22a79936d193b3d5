"""The exposition rendered family by family, each family's text kept until what it read changes.

A scrape at Prometheus's rate (15 s) finds a new View every time (the sampler publishes one a
second), but most families read only fields that change every diagnosis, reload or hot-plug. A
collector is a pure function of the View, so its text depends only on the View fields it read:
each run goes through a recorder of the fields it touches, and the next render reuses the text
while every one of those fields is the same object (a View is replaced, never mutated, and
`dataclasses.replace` keeps the unchanged fields' objects).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as om
from prometheus_client.registry import Collector

from nodetune.agent.collectors import StateCollector, gauge
from nodetune.agent.state import View

EOF_LINE = b"# EOF\n"
# prometheus-client 0.22 and later write every sample's name in OpenMetrics through a character-by-
# character escape unless names may be UTF-8 (60% of a render here). Every nodetune name is a legacy
# name, for which both settings write the same bytes (tests/agent/test_exposition.py compares this
# render with prometheus-client's own, default escaping included).
_OM_ESCAPING = {"escaping": om.ALLOWUTF8} if hasattr(om, "ALLOWUTF8") else {}


class _Fixed:
    """Registry-like: hands prometheus-client's formatters a given list of families."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def format_families(metrics: Iterable[Metric], openmetrics: bool) -> bytes:
    """Families in the text format, or in OpenMetrics without the closing `# EOF`."""
    if openmetrics:
        return om.generate_latest(_Fixed(metrics), **_OM_ESCAPING)[:-len(EOF_LINE)]
    return generate_latest(_Fixed(metrics))


class _Recorder:
    """A View seen through a record of which fields were read."""

    __slots__ = ("_view", "_read")

    def __init__(self, view: View) -> None:
        self._view = view
        self._read: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._view, name)
        self._read[name] = value
        return value


@dataclass
class _Entry:
    reads: tuple[tuple[str, Any], ...]  # (field, the object it held)
    metrics: list[Metric]
    success: float
    text: dict[bool, bytes] = field(default_factory=dict)  # openmetrics? -> rendered

    def current(self, view: View) -> bool:
        return all(getattr(view, name) is value for name, value in self.reads)


class FamilyCache:
    """Renders a StateCollector's families, each again only when a field it read changed."""

    def __init__(self, sc: StateCollector) -> None:
        self.sc = sc
        self._entries: dict[str, _Entry] = {}
        self.rendered = 0  # families rendered (not reused) since the start: for tests and benches

    def render(self, openmetrics: bool) -> bytes:
        view = self.sc.state.view  # one View for the whole scrape
        dur = gauge("nodetune_agent_collector_duration_seconds", "Time each collector took in the last scrape.",
                    ["collector"])
        ok = gauge("nodetune_agent_collector_success", "1 if the collector ran without an error in the last scrape.",
                   ["collector"])
        parts = []
        for name, fn in sorted(self.sc.fns.items()):
            t0 = time.perf_counter()
            e = self._entries.get(name)
            if e is None or not e.current(view):
                rec = _Recorder(view)
                fams, success = self.sc.run_one(name, fn, cast(View, rec))
                e = self._entries[name] = _Entry(tuple(rec._read.items()), fams, success)
            text = e.text.get(openmetrics)
            if text is None:
                text = e.text[openmetrics] = format_families(e.metrics, openmetrics)
                self.rendered += 1
            parts.append(text)
            dur.add_metric([name], time.perf_counter() - t0)
            ok.add_metric([name], e.success)
        parts.append(format_families([dur, ok], openmetrics))
        return b"".join(parts)


class CachingRegistry(CollectorRegistry):
    """A registry whose `render` reuses the unchanged families of its StateCollectors."""

    def __init__(self, auto_describe: bool = False) -> None:
        super().__init__(auto_describe=auto_describe)
        self._order: list[Collector] = []
        self._caches: dict[int, FamilyCache] = {}

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self._order.append(collector)
        if isinstance(collector, StateCollector):
            self._caches[id(collector)] = FamilyCache(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self._order.remove(collector)
        self._caches.pop(id(collector), None)

    def render(self, openmetrics: bool) -> bytes:
        """The whole exposition, as `generate_latest` (or OpenMetrics') of this registry would give it."""
        parts = []
        for c in list(self._order):
            cache = self._caches.get(id(c))
            parts.append(cache.render(openmetrics) if cache is not None else format_families(c.collect(), openmetrics))
        if openmetrics:
            parts.append(EOF_LINE)
        return b"".join(parts)


def render(registry: CollectorRegistry, openmetrics: bool) -> bytes:
    """The exposition of `registry`: family by family where it caches them, else in one go."""
    if isinstance(registry, CachingRegistry):
        return registry.render(openmetrics)
    return om.generate_latest(registry, **_OM_ESCAPING) if openmetrics else generate_latest(registry)
