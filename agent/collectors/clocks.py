"""GPU clocks and the clock-event (throttle) reasons."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from nodetune.agent.collectors import collector, gauge, put
from nodetune.agent.state import View
from nodetune.probes.gpu import CLOCK_EVENT_BITS


@collector("clocks")
def clocks(v: View) -> Iterator[Metric]:
    s = v.sample
    if s is None:
        return
    sm = gauge("nodetune_gpu_sm_clock_hertz", "SM clock.", ["gpu"])
    mem = gauge("nodetune_gpu_memory_clock_hertz", "Memory clock.", ["gpu"])
    sm_max = gauge("nodetune_gpu_sm_clock_max_hertz", "Maximum SM clock.", ["gpu"])
    reason = gauge("nodetune_gpu_clock_event_reason", "1 while NVML reports this clock-event reason (throttle "
                   "cause; gpu_idle and sw_power_cap at idle are normal).", ["gpu", "reason"])
    for g in s.gpus:
        i = [str(g.index)]
        put(sm, i, None if g.sm_clock_mhz is None else g.sm_clock_mhz * 1e6)
        put(mem, i, None if g.mem_clock_mhz is None else g.mem_clock_mhz * 1e6)
        if g.clock_event_mask is not None:
            for bit, name in CLOCK_EVENT_BITS.items():
                reason.add_metric([*i, name], 1.0 if g.clock_event_mask & bit else 0.0)
    for tg in v.topo.gpus if v.topo else []:
        put(sm_max, [str(tg.index)], None if tg.static.sm_clock_max_mhz is None else tg.static.sm_clock_max_mhz * 1e6)
    yield from (sm, mem, sm_max, reason)
