"""[diagnosis]: every number a verdict rule uses, with its documented default and range."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import number, percent, section, share


@section("diagnosis")
@dataclass
class Thresholds:
    """Percentages are 0-100 of the window's samples or time; shares are 0-1."""

    idle_util_pct: float = percent(5, "NVML utilization below which a sample counts as idle")
    starved_idle_share: float = share(0.4, "share of idle samples above which an active job is data-starved")
    starved_util_pct: float = percent(50, "mean utilization below which an active job is data-starved")
    busy_sm_pct: float = percent(50, "GPM SM activity above which the SMs are busy (compute- or memory-bound)")
    busy_util_pct_no_gpm: float = number(80, "without GPM: NVML utilization above which the GPU is busy")
    tensor_busy_pct: float = percent(30, "tensor-pipe activity above which compute-bound work is healthy")
    fp32_note_pct: float = percent(20, "FP32 (non-tensor) pipe activity that earns a 'use tensor cores' note")
    memory_bound_dram_pct: float = percent(60, "DRAM bandwidth (% of peak) above which busy SMs are memory-bound")
    memory_bound_dram_pct_no_gpm: float = number(60, "without GPM: NVML memory utilization for memory_bound")
    transfer_link_share: float = share(0.10, "PCIe host<->device traffic as a share of link capacity "
                                       "for transfer_bound")
    transfer_min_mibps: float = number(2000, "PCIe traffic (MiB/s) below which a GPU is never transfer-bound")
    transfer_sm_max_pct: float = percent(20, "SM activity above which copies overlap with compute (not transfer-bound)")
    launch_util_min_pct: float = percent(20, "utilization (GPU busy-time) above which tiny kernels can be launch-bound")
    launch_sm_max_pct: float = percent(10, "SM activity below which busy-time is launch overhead")
    launch_sm_util_ratio: float = share(0.3, "SM activity / utilization below which kernels are too small")
    comm_nvlink_min_mibps: float = number(10000, "NVLink traffic (MiB/s, rx+tx) for communication_bound")
    comm_tensor_max_pct: float = percent(20, "tensor activity above which NVLink traffic is overlapped with compute")
    comm_util_min_pct: float = percent(80, "NCCL-wait signature: utilization at least this ...")
    comm_power_max_share: float = share(0.45, "... while power stays below this share of the limit")
    throttle_share: float = share(0.2, "share of busy samples with a throttle reason for throttled")
    idle_allocated_min_s: float = number(5, "seconds of no GPU work, memory held, before idle_allocated")
    idle_allocated_min_gib: float = number(1.0, "GPU memory (GiB) a job must hold for idle_allocated")
    active_cpu_pct: float = number(10, "process CPU (% of a core) above which a job is doing something", hi=100_000)
    loader_busy_pct: float = percent(80, "a thread/worker this busy (% of a core) is saturated")
    io_psi_pct: float = percent(10, "PSI io some (% of the window) that counts as I/O stall")
    io_d_state_share: float = share(0.2, "share of samples a job thread spends in D state for io_input")
    io_blkio_pct: float = number(10, "block-I/O delay (% of wall time, summed over the job) for io_input", hi=100_000)
    disk_busy_pct: float = percent(60, "device utilization (% of time with I/O in flight) for a busy disk")
    stack_loading_share: float = share(0.3, "share of main-thread stack samples in data loading")
    numa_remote_share: float = share(0.5, "share of job threads or memory away from the GPU's NUMA node")
    memory_psi_pct: float = percent(5, "PSI memory some (% of the window) for host_memory_pressure")
    swap_pages_per_s: float = number(100, "swap-in + swap-out pages/s for host_memory_pressure")
    cpu_psi_pct: float = percent(20, "PSI cpu some (% of the window) for cpu_contention")
    steal_pct: float = percent(5, "CPU steal (% of CPU time) for cpu_contention")
    attr_io_mibps: float = number(20, "a job's read or write rate (MiB/s) in a sample interval that counts the "
                                  "interval as I/O")
    cause_min_share: float = share(0.15, "share of the window an idle cause must explain to be named as a finding")
    cause_critical_share: float = share(0.5, "share of the window lost to one cause, shown by counters or stacks, "
                                        "for critical")
    startup_max_age_s: float = number(300, "a process younger than this (s) whose GPU has not yet worked is "
                                      "starting up")
    phase_step_pct: float = percent(30, "change of mean GPU activity (points) that starts a new phase")
    phase_min_s: float = number(2, "shortest stretch (s) that counts as a phase")
    straggler_gap_share: float = share(0.3, "idle share by which one GPU of a multi-GPU job trails its peers")
    comm_nic_link_share: float = share(0.5, "NIC throughput as a share of its link rate for communication_bound")
    comm_nic_min_mibps: float = number(1000, "NIC traffic (MiB/s, rx+tx) below which a NIC never explains a GPU")
    borderline_margin: float = share(0.15, "relative threshold change under which a verdict must hold, else borderline")
