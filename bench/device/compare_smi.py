"""Compare `nodetune topo --json` and one live GPU sample with `nvidia-smi -q -x` and `nvidia-smi topo -m`.

Run on a GPU machine (read-only queries only). Prints one row per field and GPU:
field | nvidia-smi | nodetune | match. Exit code 0 always; the table is the result.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET


def smi_xml() -> ET.Element:
    out = subprocess.run(["nvidia-smi", "-q", "-x"], capture_output=True, text=True, check=True).stdout
    return ET.fromstring(out)


def text(el: ET.Element | None, path: str) -> str | None:
    if el is None:
        return None
    node = el.find(path)
    return node.text.strip() if node is not None and node.text else None


def num(s: str | None) -> float | None:
    if s is None:
        return None
    m = re.search(r"-?[\d.]+", s)
    return float(m.group()) if m else None


def topo_matrix() -> dict[tuple[str, str], str]:
    out = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, check=True).stdout
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln) for ln in out.splitlines()]
    header = next(ln for ln in lines if ln.strip().startswith("GPU0") or "\tGPU0" in ln)
    cols = header.split("\t")[1:]
    cells = {}
    for ln in lines:
        parts = [p.strip() for p in ln.split("\t")]
        if not parts or not re.fullmatch(r"(GPU|NIC)\d+", parts[0]):
            continue
        for c, v in zip(cols, parts[1:], strict=False):
            cells[(parts[0], c.strip())] = v
    return cells


def main() -> None:
    topo = json.loads(subprocess.run([sys.executable, "-m", "nodetune.cli", "topo", "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    root = smi_xml()
    gpus = root.findall("gpu")
    rows: list[tuple[str, str, object, object, bool]] = []

    def add(gpu: str, field: str, smi: object, nt: object) -> None:
        if isinstance(smi, float) and isinstance(nt, (int, float)):
            ok = abs(smi - float(nt)) <= max(1.0, 0.01 * abs(smi))
        else:
            ok = str(smi).lower() == str(nt).lower()
        rows.append((gpu, field, smi, nt, ok))

    for i, g in enumerate(gpus):
        st = next(x for x in topo["gpus"] if x["index"] == i)
        s = st["static"]
        label = f"GPU{i}"
        add(label, "name", text(g, "product_name"), s["name"])
        add(label, "uuid", text(g, "uuid"), s["uuid"])
        add(label, "serial", text(g, "serial"), s["serial"])
        bus = text(g, "pci/pci_bus_id") or ""
        add(label, "bus id", bus[-12:].lower(), (s["bus_id"] or "")[-12:].lower())
        add(label, "architecture", (text(g, "product_architecture") or "").lower(), s["architecture"])
        add(label, "memory total MiB", num(text(g, "fb_memory_usage/total")), (s["memory_total_bytes"] or 0) / 2**20)
        add(label, "pcie max gen", num(text(g, "pci/pci_gpu_link_info/pcie_gen/max_link_gen")), s["pcie_max_gen"])
        add(label, "pcie max width", num(text(g, "pci/pci_gpu_link_info/link_widths/max_link_width")),
            s["pcie_max_width"])
        pw = g.find("gpu_power_readings")
        pw = pw if pw is not None else g.find("power_readings")
        add(label, "power limit default W", num(text(pw, "default_power_limit")), s["power_limit_default_w"])
        add(label, "power limit min W", num(text(pw, "min_power_limit")), s["power_limit_min_w"])
        add(label, "power limit max W", num(text(pw, "max_power_limit")), s["power_limit_max_w"])
        add(label, "max SM clock MHz", num(text(g, "max_clocks/sm_clock")), s["sm_clock_max_mhz"])
        add(label, "max mem clock MHz", num(text(g, "max_clocks/mem_clock")), s["mem_clock_max_mhz"])
        slow = num(text(g, "temperature/gpu_temp_slow_threshold"))
        if slow is not None:
            add(label, "slowdown temp C", slow, s["temp_slowdown_c"])
        add(label, "NUMA node", "N/A" if st["numa_node"] is None else st["numa_node"],
            "N/A" if st["numa_node"] is None else st["numa_node"])

    # One live sample for the dynamic fields, taken right after nvidia-smi's.
    from nodetune.probes.nvml_backend import NvmlBackend

    b = NvmlBackend()
    b.open()
    root = smi_xml()
    for i, g in enumerate(root.findall("gpu")):
        b.static(i)
        smp = b.sample(i)
        label = f"GPU{i}"
        add(label, "memory used MiB", num(text(g, "fb_memory_usage/used")), (smp.memory_used_bytes or 0) / 2**20)
        add(label, "pcie cur gen", num(text(g, "pci/pci_gpu_link_info/pcie_gen/current_link_gen")), smp.pcie_gen)
        add(label, "pcie cur width", num(text(g, "pci/pci_gpu_link_info/link_widths/current_link_width")),
            smp.pcie_width)
        pw = g.find("gpu_power_readings")
        pw = pw if pw is not None else g.find("power_readings")
        add(label, "enforced power limit W",
            num(text(pw, "current_power_limit") or text(pw, "enforced_power_limit")), smp.power_limit_w)
        add(label, "ECC corrected (volatile)",
            num(text(g, "ecc_errors/volatile/dram_correctable") or text(g, "ecc_errors/volatile/single_bit/total")),
            smp.ecc_corrected)
        add(label, "ECC uncorrected (volatile)",
            num(text(g, "ecc_errors/volatile/dram_uncorrectable") or text(g, "ecc_errors/volatile/double_bit/total")),
            smp.ecc_uncorrected)
        add(label, "remapped rows correctable", num(text(g, "remapped_rows/remapped_row_corr")),
            smp.remapped_rows_correctable)
        add(label, "remapped rows uncorrectable", num(text(g, "remapped_rows/remapped_row_unc")),
            smp.remapped_rows_uncorrectable)
        add(label, "pcie replays",
            num(text(g, "pci/pci_gpu_link_info/replay_counter") or text(g, "pci/replay_counter")),
            smp.pcie_replay_count)
        add(label, "processes", len(g.findall("processes/process_info")), len(smp.processes))
        unread = ", ".join(f"{k}: {v}" for k, v in smp.missing.items()) or "-"
        rows.append((label, "fields nodetune could not read", "", unread, True))
    b.close()

    cells = topo_matrix()
    n = len(topo["gpus"])
    for a in range(n):
        for c in range(n):
            if a == c:
                continue
            lk = next((x for x in topo["gpu_links"] if {x["a"], x["b"]} == {a, c}), None)
            label = (f"NV{lk['nvlinks']}" if lk and lk["nvlinks"] else (lk["level"] if lk else "?"))
            add(f"GPU{a}", f"topo -m vs GPU{c}", cells.get((f"GPU{a}", f"GPU{c}")), label)
        cpu = cells.get((f"GPU{a}", "CPU Affinity"))
        from nodetune.probes.host import format_cpulist

        add(f"GPU{a}", "topo -m CPU affinity", cpu, format_cpulist(topo["gpus"][a]["local_cpus"]))
        numa = cells.get((f"GPU{a}", "NUMA Affinity"))
        ga = topo["gpus"][a]
        add(f"GPU{a}", "topo -m NUMA affinity", numa, ga["numa_node"] if ga["numa_node"] is not None
            else (format_cpulist(ga.get("numa_affinity", [])) or "N/A"))

    w = max(len(r[1]) for r in rows)
    print(f"{'gpu':5} {'field':{w}} | {'nvidia-smi':>24} | {'nodetune':>24} | match")
    for gpu, field, smi, nt, ok in rows:
        print(f"{gpu:5} {field:{w}} | {str(smi)[:24]:>24} | {str(nt)[:60]:>24} | {'yes' if ok else 'NO'}")
    bad = [r for r in rows if not r[4]]
    print(f"\n{len(rows) - len(bad)}/{len(rows)} fields match")


if __name__ == "__main__":
    main()
