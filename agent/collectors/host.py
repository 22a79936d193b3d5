"""The host series verdicts stand on (node_exporter has the rest): PSI and the data disks' I/O."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector, gauge
from nodetune.agent.state import View

SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size


@collector("host")
def host(v: View) -> Iterator[Metric]:
    s = v.sample
    if s is None:
        return
    psi = CounterMetricFamily("nodetune_pressure_stalled_seconds", "PSI: time some (or all: full) runnable tasks "
                              "stalled on the resource (/proc/pressure/*, total).", labels=["resource", "kind"])
    for res, p in sorted(s.io.psi.items()):
        for kind, line in (("some", p.some), ("full", p.full)):
            if line is not None:
                psi.add_metric([res, kind], line.total_us / 1e6)
    yield psi
    # Whole disks the topology knows (no partitions, no loop devices): the ones a job reads from.
    disks = {b.device for b in v.topo.block_devices if b.kind != "loop"} if v.topo else set()
    rd = CounterMetricFamily("nodetune_disk_read_bytes", "Bytes read from the disk.", labels=["device"])
    wr = CounterMetricFamily("nodetune_disk_written_bytes", "Bytes written to the disk.", labels=["device"])
    busy = CounterMetricFamily("nodetune_disk_io_time_seconds", "Time the disk had I/O in flight (rate: %util).",
                               labels=["device"])
    wait = CounterMetricFamily("nodetune_disk_io_weighted_seconds", "I/O time weighted by requests in flight "
                               "(rate: average queue depth).", labels=["device"])
    inflight = gauge("nodetune_disk_io_in_flight", "Requests in flight at the latest sample.", ["device"])
    for d in s.io.disks:
        if d.device not in disks:
            continue
        lab = [d.device]
        rd.add_metric(lab, d.sectors_read * SECTOR)
        wr.add_metric(lab, d.sectors_written * SECTOR)
        busy.add_metric(lab, d.ms_io / 1000)
        wait.add_metric(lab, d.weighted_ms / 1000)
        inflight.add_metric(lab, d.in_flight)
    yield from (rd, wr, busy, wait, inflight)
