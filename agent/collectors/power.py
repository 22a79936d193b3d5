"""GPU power draw, limits and the energy counter."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector, gauge, put
from nodetune.agent.state import View


@collector("power")
def power(v: View) -> Iterator[Metric]:
    s = v.sample
    if s is None:
        return
    w = gauge("nodetune_gpu_power_watts", "GPU power draw.", ["gpu"])
    lim = gauge("nodetune_gpu_power_limit_watts", "Enforced power limit.", ["gpu"])
    dflt = gauge("nodetune_gpu_power_limit_default_watts", "The GPU's default power limit.", ["gpu"])
    energy = CounterMetricFamily("nodetune_gpu_energy_joules", "Energy used since the driver loaded (read on the slow "
                                 "cadence: detail_every_s).", labels=["gpu"])
    for g in s.gpus:
        i = [str(g.index)]
        put(w, i, g.power_w)
        put(lim, i, g.power_limit_w)
    for g in v.topo.gpus if v.topo else []:
        put(dflt, [str(g.index)], g.static.power_limit_default_w)
    for idx, d in sorted(v.gpu_detail.items()):
        put(energy, [str(idx)], d.energy_j)
    yield from (w, lim, dflt, energy)
