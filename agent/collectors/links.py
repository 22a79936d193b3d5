"""PCIe and NVLink: link state, throughput, replay and ECC error counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector, gauge, put
from nodetune.agent.state import View

MIB = 1 << 20


@collector("links")
def links(v: View) -> Iterator[Metric]:
    s = v.sample
    if s is None:
        return
    gen = gauge("nodetune_gpu_pcie_link_generation", "Current PCIe generation (drops at idle to save power).", ["gpu"])
    width = gauge("nodetune_gpu_pcie_link_width", "Current PCIe lanes.", ["gpu"])
    max_gen = gauge("nodetune_gpu_pcie_link_max_generation", "Maximum PCIe generation of the GPU.", ["gpu"])
    max_width = gauge("nodetune_gpu_pcie_link_max_width", "Maximum PCIe lanes of the GPU.", ["gpu"])
    tx = gauge("nodetune_gpu_pcie_transmit_bytes_per_second", "PCIe device-to-host traffic (GPM, else NVML's "
               "20 ms window).", ["gpu"])
    rx = gauge("nodetune_gpu_pcie_receive_bytes_per_second", "PCIe host-to-device traffic (GPM, else NVML's "
               "20 ms window).", ["gpu"])
    ntx = gauge("nodetune_gpu_nvlink_transmit_bytes_per_second", "NVLink traffic sent (GPM).", ["gpu"])
    nrx = gauge("nodetune_gpu_nvlink_receive_bytes_per_second", "NVLink traffic received (GPM).", ["gpu"])
    active = gauge("nodetune_gpu_nvlinks_active", "NVLinks up at the last topology probe.", ["gpu"])
    replay = CounterMetricFamily("nodetune_gpu_pcie_replays", "PCIe replays (link-level retransmissions) since the "
                                 "driver loaded.", labels=["gpu"])
    ecc = CounterMetricFamily("nodetune_gpu_ecc_errors", "Volatile ECC errors since the driver loaded.",
                              labels=["gpu", "type"])
    remap = gauge("nodetune_gpu_remapped_rows", "Rows of HBM remapped.", ["gpu", "type"])
    remap_failed = gauge("nodetune_gpu_remapped_rows_failure", "1 if row remapping failed (the GPU needs service).",
                         ["gpu"])
    # Where NVML gives no link state (no driver, a lost GPU), the link as sysfs showed it at the
    # last topology probe: a degraded link is a fact about the slot, with or without NVML.
    sysfs = {tg.index: d.link for tg in (v.topo.gpus if v.topo else []) for d in v.topo.pci
             if tg.address and d.address == tg.address}
    seen: set[int] = set()
    for g in s.gpus:
        i = [str(g.index)]
        link = sysfs.get(g.index)
        put(gen, i, g.pcie_gen if g.pcie_gen is not None else link.gen if link else None)
        put(width, i, g.pcie_width if g.pcie_width is not None else link.width if link else None)
        seen.add(g.index)
        if g.gpm is not None and g.gpm.pcie_tx_mibps is not None:
            put(tx, i, g.gpm.pcie_tx_mibps * MIB)
            put(rx, i, None if g.gpm.pcie_rx_mibps is None else g.gpm.pcie_rx_mibps * MIB)
        else:
            put(tx, i, None if g.pcie_tx_kibps is None else g.pcie_tx_kibps * 1024)
            put(rx, i, None if g.pcie_rx_kibps is None else g.pcie_rx_kibps * 1024)
        if g.gpm is not None:
            put(ntx, i, None if g.gpm.nvlink_tx_mibps is None else g.gpm.nvlink_tx_mibps * MIB)
            put(nrx, i, None if g.gpm.nvlink_rx_mibps is None else g.gpm.nvlink_rx_mibps * MIB)
    for idx, link in sorted(sysfs.items()):
        if idx not in seen:
            put(gen, [str(idx)], link.gen)
            put(width, [str(idx)], link.width)
    for tg in v.topo.gpus if v.topo else []:
        i = [str(tg.index)]
        link = sysfs.get(tg.index)
        put(max_gen, i, tg.static.pcie_max_gen if tg.static.pcie_max_gen is not None
            else link.max_gen if link else None)
        put(max_width, i, tg.static.pcie_max_width if tg.static.pcie_max_width is not None
            else link.max_width if link else None)
        active.add_metric(i, sum(1 for lk in tg.nvlinks if lk.active))
    for idx, d in sorted(v.gpu_detail.items()):
        i = [str(idx)]
        put(replay, i, d.pcie_replay_count)
        put(ecc, [*i, "corrected"], d.ecc_corrected)
        put(ecc, [*i, "uncorrected"], d.ecc_uncorrected)
        put(remap, [*i, "correctable"], d.remapped_rows_correctable)
        put(remap, [*i, "uncorrectable"], d.remapped_rows_uncorrectable)
        put(remap_failed, i, None if d.remapped_rows_failed is None else int(d.remapped_rows_failed))
    yield from (gen, width, max_gen, max_width, tx, rx, ntx, nrx, active, replay, ecc, remap, remap_failed)
