"""The exporter's metric families: one module a family, each a function `@collector("name")`
that reads an immutable `View` and yields prometheus-client metric families.

`StateCollector` is the one prometheus-client Collector the registry holds: it runs every
registered function against the current View and adds each one's duration and success. A
collector never touches hardware: everything it shows was put in the View by the sampling loop.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nodetune.agent.state import State, View

log = logging.getLogger("nodetune.agent")
CollectorFn = Callable[[View], Iterable[Metric]]
COLLECTORS: dict[str, CollectorFn] = {}


def collector(name: str) -> Callable[[CollectorFn], CollectorFn]:
    def register(fn: CollectorFn) -> CollectorFn:
        if name in COLLECTORS and COLLECTORS[name] is not fn:
            raise RuntimeError(f"collector {name!r} registered twice")
        COLLECTORS[name] = fn
        return fn

    return register


def discover() -> dict[str, CollectorFn]:
    """Import every module of this package once; each registers its collectors."""
    if not getattr(discover, "done", False):
        for mod in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{mod.name}")
        discover.done = True  # type: ignore[attr-defined]
    return COLLECTORS


# -- small helpers the collector modules share ------------------------------------------------------

def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels or [])


def single_gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    """A gauge with one unlabelled sample."""
    g = gauge(name, doc)
    g.add_metric([], value)
    return g


def single_counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    """A counter with one unlabelled sample (`name` without `_total`)."""
    return CounterMetricFamily(name, doc, value=value)


def pct_ratio(v: float | None) -> float | None:
    return None if v is None else v / 100.0


def put(fam: Any, labels: list[str], value: float | int | None) -> None:
    """Add a sample unless the value is unknown (an absent series, not a fake zero)."""
    if value is not None:
        fam.add_metric(labels, float(value))


class StateCollector(Collector):
    """The registry's one collector: every registered family plus each one's duration and success."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.fns = discover()
        self._failed: set[str] = set()

    def describe(self) -> list[Metric]:
        return []  # families vary with the node; nothing to pre-declare (and no collect() at register)

    def run_one(self, name: str, fn: CollectorFn, view: View) -> tuple[list[Metric], float]:
        """One family's metrics and 1.0, or nothing and 0.0 when it raised (logged once per family)."""
        try:
            return list(fn(view)), 1.0
        except Exception as exc:  # a bug in one family must not take the others down
            if name not in self._failed:
                self._failed.add(name)
                log.error("collector %s failed: %s: %s (nodetune_agent_collector_success=0)", name,
                          type(exc).__name__, exc)
            return [], 0.0

    def collect(self) -> Iterator[Metric]:
        view = self.state.view  # one View for the whole scrape: every family from the same instant
        dur = gauge("nodetune_agent_collector_duration_seconds", "Time each collector took in the last scrape.",
                    ["collector"])
        ok = gauge("nodetune_agent_collector_success", "1 if the collector ran without an error in the last scrape.",
                   ["collector"])
        for name, fn in sorted(self.fns.items()):
            t0 = time.perf_counter()
            fams, success = self.run_one(name, fn, view)
            dur.add_metric([name], time.perf_counter() - t0)
            ok.add_metric([name], success)
            yield from fams
        yield dur
        yield ok
