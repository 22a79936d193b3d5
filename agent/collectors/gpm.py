"""GPM counters (Hopper and newer): what NVML utilization cannot tell apart."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from nodetune.agent.collectors import collector, gauge, pct_ratio, put
from nodetune.agent.state import View

FIELDS = (
    ("sm_util_pct", "nodetune_gpu_sm_active_ratio", "Share of SM time with a warp resident (GPM SM activity)."),
    ("sm_occupancy_pct", "nodetune_gpu_sm_occupancy_ratio", "Resident warps as a share of the maximum (GPM)."),
    ("tensor_pct", "nodetune_gpu_tensor_active_ratio", "Share of time the tensor pipes were busy (GPM)."),
    ("dram_bw_pct", "nodetune_gpu_dram_bandwidth_ratio", "HBM bandwidth as a share of its peak (GPM)."),
    ("fp32_pct", "nodetune_gpu_fp32_active_ratio", "Share of time the FP32 pipes were busy (GPM)."),
    ("fp16_pct", "nodetune_gpu_fp16_active_ratio", "Share of time the FP16 pipes were busy (GPM)."),
    ("fp64_pct", "nodetune_gpu_fp64_active_ratio", "Share of time the FP64 pipes were busy (GPM)."),
)


@collector("gpm")
def gpm(v: View) -> Iterator[Metric]:
    s = v.sample
    if s is None:
        return
    fams = [(attr, gauge(name, doc, ["gpu"])) for attr, name, doc in FIELDS]
    interval = gauge("nodetune_gpu_gpm_interval_seconds", "Time between the two GPM samples the ratios come from.",
                     ["gpu"])
    for g in s.gpus:
        if g.gpm is None:
            continue
        i = [str(g.index)]
        for attr, fam in fams:
            put(fam, i, pct_ratio(getattr(g.gpm, attr)))
        interval.add_metric(i, g.gpm.interval_s)
    for _, fam in fams:
        yield fam
    yield interval
