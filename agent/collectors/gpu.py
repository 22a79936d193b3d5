"""Per-GPU utilization, memory and state from the latest fast sample."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from nodetune.agent.collectors import collector, gauge, pct_ratio, put
from nodetune.agent.state import View

STATES = ("ok", "lost", "error")


@collector("gpu")
def gpu(v: View) -> Iterator[Metric]:
    s = v.sample
    if s is None:
        return
    util = gauge("nodetune_gpu_utilization_ratio", "Share of time a kernel ran (NVML utilization.gpu, 0-1).", ["gpu"])
    mutil = gauge("nodetune_gpu_memory_utilization_ratio", "Share of time device memory was read or written "
                  "(NVML, 0-1).", ["gpu"])
    used = gauge("nodetune_gpu_memory_used_bytes", "Device memory in use.", ["gpu"])
    total = gauge("nodetune_gpu_memory_total_bytes", "Device memory.", ["gpu"])
    procs = gauge("nodetune_gpu_processes", "Processes holding a context on the GPU.", ["gpu"])
    state = gauge("nodetune_gpu_state", "1 for the GPU's state in the latest sample (ok, lost: fell off the bus, "
                  "error: NVML failed), 0 for the others.", ["gpu", "state"])
    missing = gauge("nodetune_gpu_missing_fields", "Values NVML could not give in the latest sample.", ["gpu"])
    for g in s.gpus:
        i = [str(g.index)]
        put(util, i, pct_ratio(g.util_gpu_pct))
        put(mutil, i, pct_ratio(g.util_mem_pct))
        put(used, i, g.memory_used_bytes)
        put(total, i, g.memory_total_bytes)
        if g.state == "ok":
            procs.add_metric(i, len(g.processes))
        for st in STATES:
            state.add_metric([*i, st], 1.0 if g.state == st else 0.0)
        missing.add_metric(i, len(g.missing))
    yield from (util, mutil, used, total, procs, state, missing)
