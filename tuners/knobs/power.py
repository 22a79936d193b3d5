"""CPU power: governor, EPP and EPB; the C-state latency cap.

The latency cap (/dev/cpu_dma_latency) is a PM QoS request that lasts only while the file stays
open, so it is not a journaled knob: `LatencyHold` keeps it for a long-running process
(`nodetune tune hold-latency`, e.g. as a systemd service), and closing the fd (exit, crash,
SIGKILL) lifts it.
"""

from __future__ import annotations

import errno
import os
import signal
import struct
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from nodetune.probes.cpufreq import (
    epb_path,
    epp_path,
    governor_path,
    online_cpus,
    probe_cpu_power,
    read_cpu_dma_latency,
)
from nodetune.probes.host import Host, format_cpulist

from ..context import TuneContext
from ..contract import HOLD, SKIP, Change, Knob, TunerPlan
from ..errors import KnobAbsent, KnobFailed
from ..registry import tuner
from ..sysfs import sysfs_change

DMA_LATENCY = "/dev/cpu_dma_latency"


@dataclass
class PowerParams:
    governor: str | None = None
    epp: str | None = None
    epb: int | None = None
    cpu_dma_latency_us: int | None = None

    def check(self) -> list[str]:
        out = []
        if self.epb is not None and not 0 <= self.epb <= 15:
            out.append(f"epb: {self.epb} is outside 0 (performance) .. 15 (power saving)")
        if self.cpu_dma_latency_us is not None and not 0 <= self.cpu_dma_latency_us <= 2_000_000_000:
            out.append(f"cpu_dma_latency_us: {self.cpu_dma_latency_us} must be >= 0")
        return out


def _cpu_knob(kind: str, cpu: int, path: str, group: str, cpus: str) -> Knob:
    return Knob(id=f"sysfs:{path}", kind="sysfs", group=group, label=f"{kind} cpu{cpus}", path=path)


@tuner
class PowerTuner:
    name = "power"
    params = PowerParams
    order = 30  # CPU power before EPP-sensitive knobs of others
    managed_by = {"governor": ("TuneD", "power-profiles-daemon"), "epp": ("TuneD", "power-profiles-daemon"),
                  "epb": ("TuneD", "power-profiles-daemon"), "cpu_latency": ("TuneD",)}

    def plan(self, ctx: TuneContext, p: PowerParams) -> TunerPlan:
        out = TunerPlan()
        cpus = online_cpus(ctx.host)
        knobs = [probe_cpu_power(ctx.host, c) for c in cpus]
        # CPUs of one cpufreq policy share its files: one knob per policy, labelled with its CPUs.
        policies: dict[str, list[int]] = {}
        for k in knobs:
            if k.policy is not None:
                policies.setdefault(k.policy, []).append(k.cpu)
        first = {cs[0]: format_cpulist(cs) for cs in policies.values()}
        if p.governor is not None:
            if not policies:
                out.changes.append(self._absent("governor", governor_path(cpus[0] if cpus else 0), "governor",
                                                p.governor, "cpufreq not present (a VM, or no cpufreq driver)"))
            for k in knobs:
                if k.cpu not in first:
                    continue
                knob = _cpu_knob("governor", k.cpu, governor_path(k.cpu), "governor", first[k.cpu])
                if k.governors and p.governor not in k.governors:
                    out.changes.append(Change(self.name, knob, k.governor, p.governor, SKIP,
                                              f"{p.governor!r} not offered (offers: {', '.join(k.governors)})"))
                else:
                    out.changes.append(sysfs_change(ctx, self.name, knob, p.governor))
        if p.epp is not None:
            rows = [k for k in knobs if k.cpu in first and k.epp is not None]
            if not rows:
                out.changes.append(self._absent("epp", epp_path(cpus[0] if cpus else 0), "epp", p.epp,
                                                "energy_performance_preference not present (needs intel_pstate "
                                                "or amd-pstate in active mode)"))
            for k in rows:
                knob = _cpu_knob("epp", k.cpu, epp_path(k.cpu), "epp", first[k.cpu])
                if k.epps and p.epp not in k.epps:
                    out.changes.append(Change(self.name, knob, k.epp, p.epp, SKIP,
                                              f"{p.epp!r} not offered (offers: {', '.join(k.epps)})"))
                else:
                    out.changes.append(sysfs_change(ctx, self.name, knob, p.epp))
        if p.epb is not None:
            rows = [k for k in knobs if k.epb is not None]
            if not rows:
                out.changes.append(self._absent("epb", epb_path(cpus[0] if cpus else 0), "epb", str(p.epb),
                                                "energy_perf_bias not present (common in VMs)"))
            for k in rows:
                knob = _cpu_knob("epb", k.cpu, epb_path(k.cpu), "epb", str(k.cpu))
                out.changes.append(sysfs_change(ctx, self.name, knob, str(p.epb)))
        if p.cpu_dma_latency_us is not None:
            out.changes.append(self._latency(ctx.host, p.cpu_dma_latency_us))
        return out

    def _absent(self, kind: str, path: str, group: str, target: str, reason: str) -> Change:
        knob = Knob(id=f"sysfs:{path}", kind="sysfs", group=group, label=f"{kind} (all CPUs)", path=path)
        return Change(self.name, knob, None, target, SKIP, f"not present: {reason}")

    def _latency(self, host: Host, us: int) -> Change:
        knob = Knob(id="cpu_latency", kind="cpu_latency", group="cpu_latency", label="C-state latency cap",
                    path=DMA_LATENCY, unit="us")
        if not host.exists(DMA_LATENCY):
            return Change(self.name, knob, None, str(us), SKIP, f"not present: {DMA_LATENCY} (kernel without PM QoS)")
        cur = read_cpu_dma_latency(host)
        return Change(self.name, knob, str(cur) if cur is not None else None, str(us), HOLD,
                      f"holds only while a process keeps {DMA_LATENCY} open: run "
                      f"`nodetune tune hold-latency --us {us}` (e.g. as a systemd service)")


class LatencyHold:
    """Hold a C-state exit-latency cap (µs) for as long as this object is open."""

    def __init__(self, host: Host, us: int) -> None:
        self.host = host
        self.us = us
        self._fd: int | None = None

    def __enter__(self) -> LatencyHold:
        try:
            self._fd = os.open(self.host.path(DMA_LATENCY), os.O_WRONLY)
            os.write(self._fd, struct.pack("=i", self.us))
        except FileNotFoundError:
            self.close()
            raise KnobAbsent(f"{DMA_LATENCY}: not present on this node (kernel without PM QoS)") from None
        except PermissionError:
            self.close()
            raise KnobFailed(f"{DMA_LATENCY}: permission denied (needs root)") from None
        except OSError as exc:
            self.close()
            if exc.errno == errno.EINVAL:
                raise KnobFailed(f"{DMA_LATENCY}: the kernel rejected {self.us} us") from None
            raise KnobFailed(f"{DMA_LATENCY}: {exc.strerror or exc}") from None
        return self

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the kernel drops the request with the last close
            self._fd = None

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def hold_latency(host: Host, us: int, ready: Callable[[], None]) -> int:
    """Hold the cap until SIGTERM or SIGINT; returns the signal number that ended it."""
    sigs = {signal.SIGTERM, signal.SIGINT}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)  # so sigwait, not a handler, receives them
    try:
        with LatencyHold(host, us):
            ready()
            return signal.sigwait(sigs)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
