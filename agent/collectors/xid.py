"""GPU Xid events from the kernel log, per GPU and Xid code."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector, gauge
from nodetune.agent.state import View


@collector("xid")
def xid(v: View) -> Iterator[Metric]:
    fam = CounterMetricFamily("nodetune_gpu_xid_errors", "NVIDIA driver Xid events in /dev/kmsg since the agent "
                              "started (gpu: the index, or other for a GPU the topology does not list; code: other "
                              "past 64 pairs).",
                              labels=["gpu", "code"])
    for (g, code), n in sorted(v.xid.items()):
        fam.add_metric([g, code], n)
    yield fam
    up = gauge("nodetune_agent_kmsg_up", "1 while the agent reads /dev/kmsg for Xid events.")
    up.add_metric([], 1.0 if v.kmsg_up else 0.0)
    yield up
