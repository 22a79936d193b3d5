"""The host side of a window: PSI stall shares, CPU, swap, memory, disks and NICs, from counter
deltas between the window's first and last samples (not the kernel's moving averages)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetune.probes.snapshot import Sample, Window


@dataclass
class DiskStats:
    device: str
    util_pct: float
    read_mbps: float
    read_iops: float
    await_ms: float | None


@dataclass
class NicStats:
    device: str  # mlx5_0/1 for an InfiniBand port, the interface name for Ethernet
    kind: str
    rx_mibps: float
    tx_mibps: float
    rate_gbps: float | None
    link_share: float | None  # max(rx, tx) against the link rate, one direction
    xmit_wait_share: float | None = None  # IB port_xmit_wait ticks as a share of the window (congestion)
    errors: dict[str, int] = field(default_factory=dict)  # counters that grew during the window


@dataclass
class HostStats:
    seconds: float
    psi_pct: dict[str, float | None] = field(default_factory=dict)  # "io.some" -> % of wall time
    cpu_busy_pct: float | None = None
    iowait_pct: float | None = None
    steal_pct: float | None = None
    cpu_busy_by_cpu: dict[int, float] = field(default_factory=dict)
    swap_in_pps: float | None = None
    swap_out_pps: float | None = None
    disks: list[DiskStats] = field(default_factory=list)
    mem_available_pct: float | None = None
    nics: list[NicStats] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    def nic(self, device: str) -> NicStats | None:
        return next((n for n in self.nics if n.device == device), None)


def _span(a: Sample, b: Sample) -> float:
    return max(b.t - a.t, 1e-6)


def host_stats(win: Window) -> HostStats:
    s = win.samples
    hs = HostStats(seconds=0.0)
    if len(s) < 2:
        hs.missing["*"] = "fewer than two samples: no rates"
        return hs
    a, b = s[0], s[-1]
    dt = _span(a, b)
    hs.seconds = round(dt, 3)
    for res in ("cpu", "io", "memory"):
        for kind in ("some", "full"):
            pa, pb = a.io.psi.get(res), b.io.psi.get(res)
            la = getattr(pa, kind, None) if pa else None
            lb = getattr(pb, kind, None) if pb else None
            key = f"{res}.{kind}"
            if la is None or lb is None:
                hs.psi_pct[key] = None
                if pb is None:
                    hs.missing[f"psi.{res}"] = b.io.missing.get(f"psi.{res}", "not present")
                continue
            hs.psi_pct[key] = round(100.0 * max(0, lb.total_us - la.total_us) / (dt * 1e6), 2)
    ca, cb = a.cpu.total, b.cpu.total
    if ca and cb:
        tot = max(cb.total - ca.total, 1)
        hs.cpu_busy_pct = round(100.0 * (cb.busy - ca.busy) / tot, 2)
        hs.iowait_pct = round(100.0 * (cb.iowait - ca.iowait) / tot, 2)
        hs.steal_pct = round(100.0 * (cb.steal - ca.steal) / tot, 2)
        # each CPU's times are sampled on the worker cadence: the first and last samples that have them
        with_per = [x for x in s if x.cpu.per_cpu]
        per_a = {c.cpu: c for c in with_per[0].cpu.per_cpu} if len(with_per) >= 2 else {}
        for c in with_per[-1].cpu.per_cpu if per_a else []:
            p = per_a.get(c.cpu)
            if p:
                hs.cpu_busy_by_cpu[c.cpu] = round(100.0 * (c.busy - p.busy) / max(c.total - p.total, 1), 1)
    va, vb = a.memory.vmstat, b.memory.vmstat
    if "pswpin" in va and "pswpin" in vb:
        hs.swap_in_pps = round((vb["pswpin"] - va["pswpin"]) / dt, 2)
        hs.swap_out_pps = round((vb["pswpout"] - va["pswpout"]) / dt, 2)
    mi = b.memory.meminfo_kb
    if mi.get("MemTotal") and "MemAvailable" in mi:
        hs.mem_available_pct = round(100.0 * mi["MemAvailable"] / mi["MemTotal"], 1)
    da = {d.device: d for d in a.io.disks}
    for d in b.io.disks:
        p = da.get(d.device)
        if p is None:
            continue
        reads = d.reads - p.reads
        await_ms = round((d.ms_reading - p.ms_reading) / reads, 2) if reads > 0 else None
        hs.disks.append(DiskStats(d.device, round(min(100.0, 100.0 * (d.ms_io - p.ms_io) / (dt * 1000)), 1),
                                  round((d.sectors_read - p.sectors_read) * 512 / dt / 1e6, 2),
                                  round(reads / dt, 1), await_ms))
    hs.nics = nic_stats(s)
    return hs


# IB port_xmit_wait ticks: the IBTA sampling tick, nominally 1 us on current HCAs (mlx5).
XMIT_WAIT_TICK_S = 1e-6


def nic_stats(samples: list[Sample]) -> list[NicStats]:
    """NIC rates from the first and last samples that carry NIC counters."""
    with_nics = [s for s in samples if s.nics is not None]
    if len(with_nics) < 2:
        return []
    a, b = with_nics[0], with_nics[-1]
    assert a.nics is not None and b.nics is not None
    dt = _span(a, b)
    first = {(p.device, p.port): p for p in a.nics.ports}
    out = []
    for p in b.nics.ports:
        q = first.get((p.device, p.port))
        if q is None or p.rx_bytes is None or q.rx_bytes is None or p.tx_bytes is None or q.tx_bytes is None:
            continue
        rx = max(0, p.rx_bytes - q.rx_bytes) / dt / 2**20
        tx = max(0, p.tx_bytes - q.tx_bytes) / dt / 2**20
        rate = p.rate_gbps
        share = max(rx, tx) * 2**20 * 8 / (rate * 1e9) if rate else None
        name = f"{p.device}/{p.port}" if p.kind == "infiniband" and p.port is not None else p.device
        wait = None
        if "port_xmit_wait" in p.counters and "port_xmit_wait" in q.counters:
            wait = round(min(1.0, (p.counters["port_xmit_wait"] - q.counters["port_xmit_wait"])
                                  * XMIT_WAIT_TICK_S / dt), 3)
        grew = {k: v - q.counters[k] for k, v in p.counters.items()
                if k != "port_xmit_wait" and not k.endswith("_packets") and k in q.counters and v > q.counters[k]}
        out.append(NicStats(name, p.kind, round(rx, 1), round(tx, 1), rate,
                            round(share, 3) if share is not None else None, wait, grew))
    return out
