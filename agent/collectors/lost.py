"""Per GPU, counters over the agent's life: seconds under each verdict and lost GPU-seconds by
state and cause (agent/lost_hours.py defines them), so `increase()` over any range counts only
the time the agent was there to see it."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector
from nodetune.agent.state import View


@collector("lost")
def lost(v: View) -> Iterator[Metric]:
    secs = CounterMetricFamily("nodetune_gpu_verdict_seconds", "Seconds each GPU spent under each verdict "
                               "(unknown: the node could not read the GPU).", labels=["gpu", "verdict"])
    for (gpu, verdict), s in sorted(v.gpu_verdict_seconds.items()):
        secs.add_metric([gpu, verdict], s)
    lost_s = CounterMetricFamily("nodetune_gpu_lost_seconds", "GPU-seconds lost, by state (idle: by what the "
                                 "host side was doing; busy: under a verdict that is not productive work) and cause.",
                                 labels=["gpu", "state", "cause"])
    for (gpu, state, cause), s in sorted(v.gpu_lost_seconds.items()):
        lost_s.add_metric([gpu, state, cause], s)
    yield from (secs, lost_s)
