"""Network counters: InfiniBand/RoCE ports and Ethernet interfaces, as cumulative counters.

InfiniBand: /sys/class/infiniband/DEV/ports/N/counters/port_{rcv,xmit}_data count octets divided
by 4 (IBTA PortCounters; the kernel's mlx5 driver exposes the 64-bit extended counters there),
`port_xmit_wait` counts ticks a port had data to send but no credits (congestion), and `rate` reads
"400 Gb/sec (4X NDR)". hw_counters hold driver extras (RoCE congestion notifications, retries).
Ethernet: /sys/class/net/IF/statistics/{rx,tx}_bytes and `speed` in Mb/s (-1 or unreadable when
the link is down or virtual). Rates come later, from deltas over the window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .host import Host, ProbeError, attempt

MAX_PORTS = 64
# hw_counters worth keeping: congestion and retransmission signs of a network that holds a job back.
HW_COUNTERS = ("np_cnp_sent", "rp_cnp_handled", "np_ecn_marked_roce_packets", "out_of_sequence",
               "local_ack_timeout_err", "packet_seq_err", "duplicate_request", "rnr_nak_retry_err")
IB_COUNTERS = ("port_rcv_data", "port_xmit_data", "port_rcv_packets", "port_xmit_packets", "port_xmit_wait",
               "port_rcv_errors", "symbol_error")


@dataclass(slots=True)
class NicPort:
    device: str  # mlx5_0 (InfiniBand/RoCE) or the interface name (Ethernet)
    kind: str  # infiniband | ethernet
    port: int | None = None
    link_layer: str | None = None  # InfiniBand | Ethernet (RoCE) for IB devices
    state: str | None = None  # ACTIVE / up ...
    rate_gbps: float | None = None  # link rate, one direction
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    counters: dict[str, int] = field(default_factory=dict)  # the other counters above, raw
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class NicSample:
    ports: list[NicPort] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def parse_ib_rate(text: str, where: str) -> float:
    """'400 Gb/sec (4X NDR)' -> 400.0 (Gb/s)."""
    m = re.match(r"^\s*([\d.]+)\s*Gb/sec", text)
    if not m:
        raise ProbeError(f"{where}: expected 'N Gb/sec', found {text[:40]!r}")
    return float(m.group(1))


def _ib_port(host: Host, dev: str, port: str) -> NicPort:
    base = f"/sys/class/infiniband/{dev}/ports/{port}"
    p = NicPort(device=dev, kind="infiniband", port=int(port) if port.isdigit() else None)
    m = p.missing
    p.link_layer = attempt(m, "link_layer", lambda: host.read_line(f"{base}/link_layer"))
    state = attempt(m, "state", lambda: host.read_line(f"{base}/state"))
    p.state = state.split(":", 1)[-1].strip() if state else None
    p.rate_gbps = attempt(m, "rate", lambda: parse_ib_rate(host.read_line(f"{base}/rate"), f"{base}/rate"))
    for name in IB_COUNTERS:
        path = f"{base}/counters/{name}"
        if not host.exists(path):
            continue
        v = attempt(m, name, lambda path=path: host.read_int(path))  # type: ignore[misc]
        if v is None:
            continue
        if name == "port_rcv_data":
            p.rx_bytes = v * 4  # the counter is octets / 4
        elif name == "port_xmit_data":
            p.tx_bytes = v * 4
        else:
            p.counters[name] = v
    if p.rx_bytes is None and "port_rcv_data" not in m:
        m["port_rcv_data"] = f"{base}/counters/port_rcv_data: not present"
    hw = f"{base}/hw_counters"
    if host.exists(hw):
        for name in HW_COUNTERS:
            path = f"{hw}/{name}"
            if host.exists(path):
                v = attempt(m, name, lambda path=path: host.read_int(path))  # type: ignore[misc]
                if v is not None:
                    p.counters[name] = v
    return p


def _eth_port(host: Host, ifname: str) -> NicPort:
    base = f"/sys/class/net/{ifname}"
    p = NicPort(device=ifname, kind="ethernet")
    m = p.missing
    p.state = attempt(m, "operstate", lambda: host.read_line(f"{base}/operstate"))
    p.rx_bytes = attempt(m, "rx_bytes", lambda: host.read_int(f"{base}/statistics/rx_bytes"))
    p.tx_bytes = attempt(m, "tx_bytes", lambda: host.read_int(f"{base}/statistics/tx_bytes"))
    try:
        mbps = host.read_int(f"{base}/speed")
        # -1 (or 4294967295 from older drivers) is "unknown": a down link or a virtual NIC.
        p.rate_gbps = mbps / 1000 if 0 < mbps < 10_000_000 else None
        if p.rate_gbps is None:
            m["speed"] = f"{base}/speed: {mbps} (link speed unknown)"
    except ProbeError as exc:
        m["speed"] = exc.reason  # reading speed of a down link fails with EINVAL
    return p


def probe_nics(host: Host) -> NicSample:
    """Every InfiniBand port and every Ethernet interface backed by a device (not lo, bridges, veths)."""
    s = NicSample()
    if host.exists("/sys/class/infiniband"):
        for dev in sorted(attempt(s.missing, "infiniband", lambda: host.listdir("/sys/class/infiniband")) or []):
            ports = attempt(s.missing, f"infiniband.{dev}", lambda dev=dev: host.listdir(  # type: ignore[misc]
                f"/sys/class/infiniband/{dev}/ports")) or []
            for port in sorted(ports):
                if len(s.ports) < MAX_PORTS:
                    s.ports.append(_ib_port(host, dev, port))
    for ifname in sorted(attempt(s.missing, "net", lambda: host.listdir("/sys/class/net")) or []):
        if ifname == "lo" or not host.exists(f"/sys/class/net/{ifname}/device") or len(s.ports) >= MAX_PORTS:
            continue
        s.ports.append(_eth_port(host, ifname))
    return s
