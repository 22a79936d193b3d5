"""GPU records and the backend seam: NVML on a live node, a recorded snapshot on replay."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# NVML clock-event reason bits (nvmlClocksEventReason*), decoded to stable names.
CLOCK_EVENT_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def decode_clock_events(mask: int) -> list[str]:
    """Names of the set clock-event reason bits; unknown bits as hex."""
    names = [name for bit, name in CLOCK_EVENT_BITS.items() if mask & bit]
    rest = mask & ~sum(CLOCK_EVENT_BITS)
    if rest:
        names.append(f"0x{rest:x}")
    return names


@dataclass
class BackendStatus:
    """Whether GPU telemetry is available on this node, and why not."""

    available: bool
    source: str  # "nvml" | "replay" | "none"
    reason: str | None = None
    driver_version: str | None = None
    nvml_version: str | None = None
    cuda_driver_version: int | None = None
    device_count: int = 0


@dataclass
class GpuStatic:
    """What does not change while a job runs."""

    index: int
    name: str | None = None
    uuid: str | None = None
    serial: str | None = None
    bus_id: str | None = None  # sysfs form "0000:18:00.0"
    architecture: str | None = None
    memory_total_bytes: int | None = None
    power_limit_default_w: float | None = None
    power_limit_min_w: float | None = None
    power_limit_max_w: float | None = None
    sm_clock_max_mhz: int | None = None
    mem_clock_max_mhz: int | None = None
    temp_slowdown_c: int | None = None
    temp_shutdown_c: int | None = None
    temp_gpu_max_c: int | None = None
    temp_mem_max_c: int | None = None
    pcie_max_gen: int | None = None
    pcie_max_width: int | None = None
    gpm_supported: bool | None = None
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class GpmMetrics:
    """GPM counters over an interval (Hopper and newer): what `utilization.gpu` cannot tell."""

    interval_s: float
    sm_util_pct: float | None = None
    sm_occupancy_pct: float | None = None
    tensor_pct: float | None = None
    dram_bw_pct: float | None = None
    fp64_pct: float | None = None
    fp32_pct: float | None = None
    fp16_pct: float | None = None
    pcie_tx_mibps: float | None = None
    pcie_rx_mibps: float | None = None
    nvlink_tx_mibps: float | None = None
    nvlink_rx_mibps: float | None = None
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class GpuProcess:
    pid: int
    used_memory_bytes: int | None = None
    kind: str = "compute"  # compute | graphics


@dataclass(slots=True)
class GpuSample:
    """One reading of one GPU; `state` is "ok", or "lost" once NVML reports the GPU gone."""

    index: int
    t: float
    state: str = "ok"
    util_gpu_pct: float | None = None
    util_mem_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    energy_j: float | None = None
    temp_gpu_c: float | None = None
    temp_mem_c: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    clock_event_mask: int | None = None
    clock_events: list[str] = field(default_factory=list)
    pcie_gen: int | None = None
    pcie_width: int | None = None
    pcie_tx_kibps: float | None = None
    pcie_rx_kibps: float | None = None
    pcie_replay_count: int | None = None
    ecc_corrected: int | None = None
    ecc_uncorrected: int | None = None
    retired_pages_sbe: int | None = None
    retired_pages_dbe: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failed: bool | None = None
    gpm: GpmMetrics | None = None
    processes: list[GpuProcess] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class NvLink:
    """One NVLink of one GPU: where it goes and whether it is up."""

    gpu: int
    link: int
    active: bool
    remote_bus_id: str | None = None
    remote_kind: str | None = None  # gpu | switch | npu | unknown
    version: int | None = None


class GpuBackend(Protocol):
    """What the rest of nodetune needs from a GPU telemetry source."""

    def open(self) -> BackendStatus:
        """Initialise; never raises: an unavailable backend says why in the status."""
        ...

    def static(self, index: int) -> GpuStatic: ...

    def prime(self, index: int) -> None:
        """Take the first GPM sample so that the next `sample` can report GPM metrics."""
        ...

    def sample(self, index: int, detail: bool = True) -> GpuSample:
        """One reading; `detail` adds slow counters (energy, ECC, remaps, replays)."""
        ...

    def nvlinks(self, index: int) -> list[NvLink]: ...

    def common_ancestor(self, a: int, b: int) -> str | None:
        """`nvidia-smi topo -m` level between two GPUs (PIX..SYS), or None if unknown."""
        ...

    def close(self) -> None: ...
