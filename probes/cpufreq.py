"""CPU power knobs: cpufreq governor, energy-performance preference (EPP) and bias (EPB).

Read-only. Each knob is per CPU in sysfs; CPUs sharing a cpufreq policy share the files (cpuN/cpufreq
links to policyM), so `policy` names the real directory for de-duplication. VMs usually have
no cpufreq and no energy_perf_bias at all: those come back as `missing` reasons, not errors.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from .host import Host, ProbeError, attempt, parse_cpulist

CPU_DIR = "/sys/devices/system/cpu"


def governor_path(cpu: int) -> str:
    return f"{CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor"


def epp_path(cpu: int) -> str:
    return f"{CPU_DIR}/cpu{cpu}/cpufreq/energy_performance_preference"


def epb_path(cpu: int) -> str:
    return f"{CPU_DIR}/cpu{cpu}/power/energy_perf_bias"


@dataclass
class CpuPowerKnobs:
    cpu: int
    policy: str | None = None  # real path of the cpufreq directory (shared by a policy's CPUs)
    driver: str | None = None
    governor: str | None = None
    governors: list[str] = field(default_factory=list)
    epp: str | None = None
    epps: list[str] = field(default_factory=list)
    epb: int | None = None
    missing: dict[str, str] = field(default_factory=dict)


def probe_cpu_power(host: Host, cpu: int) -> CpuPowerKnobs:
    """The power knobs of one CPU; absent ones are recorded in `missing`."""
    k = CpuPowerKnobs(cpu=cpu)
    d = f"{CPU_DIR}/cpu{cpu}/cpufreq"
    if host.exists(d):
        k.policy = host.realpath(d)
        k.driver = attempt(k.missing, "driver", lambda: host.read_line(f"{d}/scaling_driver"))
        k.governor = attempt(k.missing, "governor", lambda: host.read_line(governor_path(cpu)))
        k.governors = (attempt(k.missing, "governors", lambda: host.read(f"{d}/scaling_available_governors"))
                       or "").split()
        if host.exists(epp_path(cpu)):
            k.epp = attempt(k.missing, "epp", lambda: host.read_line(epp_path(cpu)))
            k.epps = (attempt(k.missing, "epps",
                              lambda: host.read(f"{d}/energy_performance_available_preferences")) or "").split()
        else:
            k.missing["epp"] = f"{epp_path(cpu)}: not present (cpufreq driver without EPP)"
    else:
        k.missing["cpufreq"] = f"{d}: not present (no cpufreq: a VM, or no cpufreq driver loaded)"
    if host.exists(epb_path(cpu)):
        k.epb = attempt(k.missing, "epb", lambda: host.read_int(epb_path(cpu)))
    else:
        k.missing["epb"] = f"{epb_path(cpu)}: not present"
    return k


def online_cpus(host: Host) -> list[int]:
    """Online CPUs from sysfs; empty if the list cannot be read."""
    try:
        return parse_cpulist(host.read(f"{CPU_DIR}/online"), f"{CPU_DIR}/online")
    except ProbeError:
        return []


def read_cpu_dma_latency(host: Host) -> int | None:
    """The current PM QoS CPU latency cap in µs (a 32-bit int in /dev/cpu_dma_latency), or None."""
    try:
        raw = host.read_bytes("/dev/cpu_dma_latency", 4)
    except ProbeError:
        return None
    if len(raw) != 4:
        return None
    return int.from_bytes(raw, sys.byteorder, signed=True)
