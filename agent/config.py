"""nodetune's configuration: diagnosis thresholds with documented defaults, read from TOML.

`/etc/nodetune/config.toml` (through the node's root) or `--config FILE`. Unknown keys and wrong
types are errors that name the file and the key; nothing runs on a config that does not parse.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from typing import Any

from nodetune.probes.host import Host, ProbeError
from nodetune.tuners.config import TuneConfig

from .errors import UserError

DEFAULT_CONFIG = "/etc/nodetune/config.toml"
# The [tune] keys are the tuning policy's fields; they are read by nodetune.tuners.config.
TUNE_KEYS = tuple(f.name for f in dataclasses.fields(TuneConfig) if f.name != "source")


def _t(default: float, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass
class Thresholds:
    """Every number a verdict rule uses. Percentages are 0-100 of the window's samples or time."""

    idle_util_pct: float = _t(5, "NVML utilization below which a sample counts as idle")
    starved_idle_share: float = _t(0.4, "share of idle samples above which an active job is data-starved")
    starved_util_pct: float = _t(50, "mean utilization below which an active job is data-starved")
    busy_sm_pct: float = _t(50, "GPM SM activity above which the SMs are busy (compute- or memory-bound)")
    busy_util_pct_no_gpm: float = _t(80, "without GPM: NVML utilization above which the GPU is busy")
    tensor_busy_pct: float = _t(30, "tensor-pipe activity above which compute-bound work is healthy")
    fp32_note_pct: float = _t(20, "FP32 (non-tensor) pipe activity that earns a 'use tensor cores' note")
    memory_bound_dram_pct: float = _t(60, "DRAM bandwidth (% of peak) above which busy SMs are memory-bound")
    memory_bound_dram_pct_no_gpm: float = _t(60, "without GPM: NVML memory utilization for memory_bound")
    transfer_link_share: float = _t(0.10, "PCIe host<->device traffic as a share of link capacity for transfer_bound")
    transfer_min_mibps: float = _t(2000, "PCIe traffic (MiB/s) below which a GPU is never transfer-bound")
    transfer_sm_max_pct: float = _t(20, "SM activity above which copies overlap with compute (not transfer-bound)")
    launch_util_min_pct: float = _t(20, "utilization (GPU busy-time) above which tiny kernels can be launch-bound")
    launch_sm_max_pct: float = _t(10, "SM activity below which busy-time is launch overhead")
    launch_sm_util_ratio: float = _t(0.3, "SM activity / utilization below which kernels are too small")
    comm_nvlink_min_mibps: float = _t(10000, "NVLink traffic (MiB/s, rx+tx) for communication_bound")
    comm_tensor_max_pct: float = _t(20, "tensor activity above which NVLink traffic is overlapped with compute")
    comm_util_min_pct: float = _t(80, "NCCL-wait signature: utilization at least this ...")
    comm_power_max_share: float = _t(0.45, "... while power stays below this share of the limit")
    throttle_share: float = _t(0.2, "share of busy samples with a throttle reason for throttled")
    idle_allocated_min_s: float = _t(5, "seconds of no GPU work, memory held, before idle_allocated")
    idle_allocated_min_gib: float = _t(1.0, "GPU memory (GiB) a job must hold for idle_allocated")
    active_cpu_pct: float = _t(10, "process CPU (% of a core) above which a job is doing something")
    loader_busy_pct: float = _t(80, "a thread/worker this busy (% of a core) is saturated")
    io_psi_pct: float = _t(10, "PSI io some (% of the window) that counts as I/O stall")
    io_d_state_share: float = _t(0.2, "share of samples a job thread spends in D state for io_input")
    io_blkio_pct: float = _t(10, "block-I/O delay (% of wall time, summed over the job) for io_input")
    disk_busy_pct: float = _t(60, "device utilization (% of time with I/O in flight) for a busy disk")
    stack_loading_share: float = _t(0.3, "share of main-thread stack samples in data loading")
    numa_remote_share: float = _t(0.5, "share of job threads or memory away from the GPU's NUMA node")
    memory_psi_pct: float = _t(5, "PSI memory some (% of the window) for host_memory_pressure")
    swap_pages_per_s: float = _t(100, "swap-in + swap-out pages/s for host_memory_pressure")
    cpu_psi_pct: float = _t(20, "PSI cpu some (% of the window) for cpu_contention")
    steal_pct: float = _t(5, "CPU steal (% of CPU time) for cpu_contention")


@dataclass
class Config:
    thresholds: Thresholds = field(default_factory=Thresholds)
    source: str | None = None


def _apply(th: Thresholds, table: dict[str, Any], where: str) -> Thresholds:
    known = {f.name: f for f in dataclasses.fields(Thresholds)}
    values = {}
    for key, val in table.items():
        if key not in known:
            raise UserError(f"{where}: unknown key [diagnosis].{key}")
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise UserError(f"{where}: [diagnosis].{key} must be a number, found {val!r}")
        if val < 0:
            raise UserError(f"{where}: [diagnosis].{key} must not be negative")
        values[key] = float(val)
    return dataclasses.replace(th, **values)


def parse_config(text: str, where: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: not valid TOML: {exc}") from None
    cfg = Config(source=where)
    for section, table in data.items():
        if section == "diagnosis":
            if not isinstance(table, dict):
                raise UserError(f"{where}: [diagnosis] must be a table")
            cfg.thresholds = _apply(cfg.thresholds, table, where)
        elif section == "tune":
            # Read by nodetune.tuners.config; checked here too so that no command runs on a
            # config with a key nobody reads.
            if not isinstance(table, dict):
                raise UserError(f"{where}: [tune] must be a table")
            for key in table:
                if key not in TUNE_KEYS:
                    raise UserError(f"{where}: unknown key [tune].{key}")
        elif section in TUNE_KEYS:
            continue  # top-level form of a [tune] key
        else:
            raise UserError(f"{where}: unknown section [{section}]")
    return cfg


def load_config(host: Host, path: str | None = None) -> Config:
    """Read `path` (a file on this machine) or the node's /etc/nodetune/config.toml if present."""
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                return parse_config(fh.read(), path)
        except OSError as exc:
            raise UserError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    if not host.exists(DEFAULT_CONFIG):
        return Config()
    try:
        return parse_config(host.read(DEFAULT_CONFIG), DEFAULT_CONFIG)
    except ProbeError as exc:
        raise UserError(f"cannot read config: {exc.reason}") from None


def thresholds_table() -> str:
    """The README's table of thresholds, generated from the dataclass so the two cannot drift."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Thresholds):
        rows.append(f"| `{f.name}` | {f.default:g} | {f.metadata['doc']} |")
    return "\n".join(rows)
