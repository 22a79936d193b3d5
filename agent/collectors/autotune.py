"""Automatic tuning: changes the agent applied from its own findings, failures, rate-limited skips."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector, single_counter
from nodetune.agent.state import View


@collector("autotune")
def autotune(v: View) -> Iterator[Metric]:
    changes = CounterMetricFamily("nodetune_tuning_changes", "Knobs the agent's autotune changed, by tuner and "
                                  "knob group (each through the tuning journal).", labels=["tuner", "knob"])
    for (tuner, knob), n in sorted(v.autotune_changes.items()):
        changes.add_metric([tuner, knob], n)
    yield changes
    yield single_counter("nodetune_autotune_failures", "Automatic tuning transactions that failed and were "
                         "rolled back.", v.autotune_failures_total)
    yield single_counter("nodetune_autotune_rate_limited", "Advice that held long enough but waited for "
                         "the hourly limit.", v.autotune_rate_limited_total)
