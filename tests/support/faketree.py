"""Fake node trees under a temp root, written in the kernel's own file formats.

The builders write what a real node exposes (sysfs attribute text with trailing newlines, relative
symlinks from /sys/bus and /sys/class into /sys/devices, /proc files as the kernel formats them),
so the probes meet the same parsing problems they meet on a node. Presets model the three
machines the design names: a 2-socket 8-GPU NVSwitch server, a one-socket VM whose GPU reads
`numa_node` -1 (as on the real H200 machine), and a laptop with no GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nodetune.probes.host import format_cpulist


def _mask(cpus: list[int]) -> str:
    """The kernel's comma-grouped hex cpumask ("00000000,0000ffff")."""
    value = sum(1 << c for c in cpus)
    width = max(1, (max(cpus, default=0) // 32) + 1)
    words = [(value >> (32 * i)) & 0xFFFFFFFF for i in range(width)]
    return ",".join(f"{w:08x}" for w in reversed(words))


@dataclass
class FakeProc:
    pid: int
    comm: str
    cmdline: list[str]
    ppid: int = 1
    uid: int = 1000
    state: str = "S"
    utime: int = 0
    stime: int = 0
    blkio_ticks: int = 0
    starttime: int = 123456
    cpus: list[int] = field(default_factory=list)
    mems: list[int] = field(default_factory=lambda: [0])
    cgroup: str = "/user.slice/user-1000.slice/session-1.scope"
    threads: dict[int, tuple[str, str, int, int]] = field(default_factory=dict)  # tid -> (name, state, utime, stime)
    numa_pages: dict[int, int] = field(default_factory=dict)  # node -> 4 kB pages
    children: list[int] = field(default_factory=list)
    read_bytes: int = 0
    open_files: list[str] = field(default_factory=list)


class FakeNode:
    """Writes a node's /proc, /sys, /dev, /etc and /run under `root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # -- primitives --------------------------------------------------------------------------
    def p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, text: str, mode: int | None = None) -> Path:
        f = self.p(path)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        if mode is not None:
            os.chmod(f, mode)
        return f

    def attr(self, path: str, value: object) -> Path:
        """A sysfs attribute: the value and a newline."""
        return self.write(path, f"{value}\n")

    def link(self, path: str, target: str) -> None:
        """A symlink at `path` pointing at node path `target`, written relative as sysfs does."""
        f = self.p(path)
        f.parent.mkdir(parents=True, exist_ok=True)
        rel = os.path.relpath(self.p(target), f.parent)
        if f.is_symlink() or f.exists():
            f.unlink()
        os.symlink(rel, f)

    def remove(self, path: str) -> None:
        f = self.p(path)
        if f.is_symlink() or f.is_file():
            f.unlink()

    # -- CPUs and NUMA --------------------------------------------------------------------
    def cpus(self, packages: int, cores: int, smt: int = 2, offline: tuple[int, ...] = ()) -> list[list[int]]:
        """Linux numbering: all first threads (package-major), then all second threads.

        Returns the CPU list of each package.
        """
        n = packages * cores
        total = n * smt
        per_pkg: list[list[int]] = [[] for _ in range(packages)]
        for cpu in range(total):
            thread, idx = divmod(cpu, n)
            pkg, core = divmod(idx, cores)
            per_pkg[pkg].append(cpu)
            d = f"/sys/devices/system/cpu/cpu{cpu}"
            # The kernel removes an offline CPU's topology/ directory and leaves it out of its
            # siblings' lists (drivers/base/topology.c, CPUHP_TOPOLOGY_PREPARE).
            sib = [s for s in (idx + t * n for t in range(smt)) if s not in offline]
            if cpu not in offline:
                self.attr(f"{d}/topology/physical_package_id", pkg)
                self.attr(f"{d}/topology/core_id", core)
                self.attr(f"{d}/topology/thread_siblings_list", format_cpulist(sib))
                self.attr(f"{d}/topology/thread_siblings", _mask(sib))
                self.attr(f"{d}/topology/core_cpus_list", format_cpulist(sib))
            else:
                self.p(d).mkdir(parents=True, exist_ok=True)
            if cpu != 0:
                self.attr(f"{d}/online", 0 if cpu in offline else 1)
        online = [c for c in range(total) if c not in offline]
        self.attr("/sys/devices/system/cpu/online", format_cpulist(online))
        self.attr("/sys/devices/system/cpu/possible", f"0-{total - 1}")
        self.attr("/sys/devices/system/cpu/present", f"0-{total - 1}")
        self.proc_stat(online)
        return per_pkg

    def numa(self, nodes: list[list[int]], mem_gib: int, distances: list[list[int]] | None = None,
             hugepages_2m: int = 0) -> None:
        k = len(nodes)
        distances = distances or [[10 if i == j else 21 for j in range(k)] for i in range(k)]
        self.attr("/sys/devices/system/node/online", f"0-{k - 1}" if k > 1 else "0")
        self.attr("/sys/devices/system/node/possible", f"0-{k - 1}" if k > 1 else "0")
        for i, cpus in enumerate(nodes):
            d = f"/sys/devices/system/node/node{i}"
            self.attr(f"{d}/cpulist", format_cpulist(cpus))
            self.attr(f"{d}/cpumap", _mask(cpus))
            self.attr(f"{d}/distance", " ".join(map(str, distances[i])))
            total = mem_gib * 1048576
            self.write(f"{d}/meminfo", "".join(
                f"Node {i} {key}:{val:>16} kB\n" for key, val in
                (("MemTotal", total), ("MemFree", total // 2), ("MemUsed", total - total // 2),
                 ("FilePages", total // 8), ("AnonPages", total // 4))
            ) + f"Node {i} HugePages_Total: {hugepages_2m:5d}\nNode {i} HugePages_Free: {hugepages_2m:5d}\n")
            for size in (2048, 1048576):
                h = f"{d}/hugepages/hugepages-{size}kB"
                n = hugepages_2m if size == 2048 else 0
                self.attr(f"{h}/nr_hugepages", n)
                self.attr(f"{h}/free_hugepages", n)
                self.attr(f"{h}/surplus_hugepages", 0)
            for cpu in cpus:
                self.link(f"/sys/devices/system/cpu/cpu{cpu}/node{i}", d)
        for size in (2048, 1048576):
            h = f"/sys/kernel/mm/hugepages/hugepages-{size}kB"
            n = hugepages_2m * k if size == 2048 else 0
            for name, v in (("nr_hugepages", n), ("free_hugepages", n), ("surplus_hugepages", 0),
                            ("resv_hugepages", 0), ("nr_overcommit_hugepages", 0)):
                self.attr(f"{h}/{name}", v)
        self.meminfo(mem_gib * k)

    # -- /proc ----------------------------------------------------------------------------
    def proc_stat(self, cpus: list[int], busy: int = 1000, idle: int = 9000, iowait: int = 10, steal: int = 0) -> None:
        lines = []
        n = len(cpus)
        lines.append(f"cpu  {busy * n} 0 {busy * n // 4} {idle * n} {iowait * n} 0 {busy * n // 100} {steal * n} 0 0")
        for c in cpus:
            lines.append(f"cpu{c} {busy} 0 {busy // 4} {idle} {iowait} 0 {busy // 100} {steal} 0 0")
        lines += ["intr 123456 0 0 0", "ctxt 99999", "btime 1763769600", "processes 4242",
                  "procs_running 2", "procs_blocked 0", "softirq 1234 0 0 0"]
        self.write("/proc/stat", "\n".join(lines) + "\n")
        self.write("/proc/loadavg", "1.50 1.20 0.90 2/800 4242\n")

    def meminfo(self, mem_gib: int, swap_gib: int = 0) -> None:
        total = mem_gib * 1048576
        rows = [("MemTotal", total), ("MemFree", total // 2), ("MemAvailable", total * 3 // 4),
                ("Buffers", 1024), ("Cached", total // 8), ("SwapCached", 0), ("Active", total // 4),
                ("Inactive", total // 8), ("SwapTotal", swap_gib * 1048576), ("SwapFree", swap_gib * 1048576),
                ("Dirty", 12), ("Writeback", 0), ("AnonPages", total // 4), ("Shmem", 2048),
                ("AnonHugePages", 0), ("HugePages_Total", 0), ("HugePages_Free", 0), ("Hugepagesize", 2048)]
        text = ""
        for k, v in rows:
            unit = "" if k.startswith("HugePages_") else " kB"
            text += f"{k + ':':<16}{v:>10}{unit}\n"
        self.write("/proc/meminfo", text)
        self.write("/proc/vmstat", "nr_free_pages 1000\npgfault 5000\npgmajfault 10\npswpin 0\npswpout 0\n"
                                   "numa_hit 100\nnuma_miss 0\nthp_fault_alloc 0\nthp_fault_fallback 0\n")

    def psi(self, cpu_total: int = 1000, io_total: int = 2000, mem_total: int = 0, cpu_full: bool = True) -> None:
        def lines(total: int, with_full: bool) -> str:
            out = f"some avg10=0.00 avg60=0.00 avg300=0.00 total={total}\n"
            if with_full:
                out += f"full avg10=0.00 avg60=0.00 avg300=0.00 total={total // 2}\n"
            return out

        self.write("/proc/pressure/cpu", lines(cpu_total, cpu_full))
        self.write("/proc/pressure/io", lines(io_total, True))
        self.write("/proc/pressure/memory", lines(mem_total, True))

    def diskstats(self, rows: list[tuple[int, int, str, int, int, int]]) -> None:
        """rows: (major, minor, name, reads, sectors_read, ms_io); 20-column format of 5.5+ kernels."""
        text = ""
        for major, minor, name, reads, sectors, ms_io in rows:
            text += (f"{major:4d} {minor:7d} {name} {reads} 0 {sectors} {ms_io} 100 0 800 50 0 {ms_io} "
                     f"{ms_io + 50} 0 0 0 0 0 0\n")
        self.write("/proc/diskstats", text)

    def mountinfo(self, mounts: list[tuple[str, str, str, str]]) -> None:
        """mounts: (major:minor, mount point, fstype, source)."""
        text = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n"
        text += "23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw\n"
        for i, (mm, mp, fs, src) in enumerate(mounts):
            text += f"{30 + i} 1 {mm} / {mp.replace(' ', chr(92) + '040')} rw,relatime shared:{i + 1} - {fs} {src} rw\n"
            self.p(mp).mkdir(parents=True, exist_ok=True)  # a mount point is a directory on the node
        self.write("/proc/self/mountinfo", text)

    def system_files(self, hostname: str = "fakenode", kernel: str = "6.8.0-45-generic") -> None:
        self.attr("/proc/sys/kernel/hostname", hostname)
        self.attr("/proc/sys/kernel/osrelease", kernel)
        self.attr("/proc/sys/kernel/io_uring_disabled", 0)
        self.write("/etc/os-release", 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\n')
        self.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n")
        for home in ("/root", "/home/alice"):
            self.p(home).mkdir(parents=True, exist_ok=True)
        self.thp("madvise", "madvise")
        self.page_size(4)

    def page_size(self, kb: int) -> None:
        """init's first mapping, as /proc/1/smaps shows it: where the page size of a root is read."""
        self.write("/proc/1/smaps", "55d0c0a00000-55d0c0a2c000 r--p 00000000 fd:00 1835043"
                                    "    /usr/lib/systemd/systemd\n"
                                    f"Size:                176 kB\nKernelPageSize:     {kb:>4} kB\n"
                                    f"MMUPageSize:        {kb:>4} kB\n"
                                    "Rss:                 176 kB\n")

    def thp(self, enabled: str, defrag: str) -> None:
        d = "/sys/kernel/mm/transparent_hugepage"
        self.attr(f"{d}/enabled", " ".join(f"[{o}]" if o == enabled else o for o in ("always", "madvise", "never")))
        opts = ("always", "defer", "defer+madvise", "madvise", "never")
        self.attr(f"{d}/defrag", " ".join(f"[{o}]" if o == defrag else o for o in opts))

    def process(self, p: FakeProc) -> None:
        d = f"/proc/{p.pid}"
        threads = p.threads or {p.pid: (p.comm, p.state, p.utime, p.stime)}
        self.write(f"{d}/stat", self._stat(p.pid, p.comm, p.state, p.ppid, p.utime, p.stime, len(threads),
                                           p.starttime, (p.cpus or [0])[0], p.blkio_ticks))
        cpus = format_cpulist(p.cpus) if p.cpus else "0"
        self.write(f"{d}/status", self._status(p.comm, p.state, p.pid, p.ppid, p.uid, len(threads), cpus,
                                               format_cpulist(p.mems)))
        self.write(f"{d}/cmdline", "\0".join(p.cmdline) + "\0")
        self.write(f"{d}/cgroup", f"0::{p.cgroup}\n")
        self.write(f"{d}/io", f"rchar: {p.read_bytes}\nwchar: 0\nsyscr: 0\nsyscw: 0\n"
                              f"read_bytes: {p.read_bytes}\nwrite_bytes: 0\ncancelled_write_bytes: 0\n")
        numa = "".join(
            f"7f{n:02x}00000000 default anon={pages} dirty={pages} N{n}={pages} kernelpagesize_kB=4\n"
            for n, pages in p.numa_pages.items()
        )
        self.write(f"{d}/numa_maps", numa)
        for tid, (name, state, ut, st) in threads.items():
            td = f"{d}/task/{tid}"
            self.write(f"{td}/stat", self._stat(tid, name, state, p.ppid, ut, st, len(threads), p.starttime,
                                                (p.cpus or [0])[0], p.blkio_ticks if tid == p.pid else 0))
            self.write(f"{td}/status", self._status(name, state, p.pid, p.ppid, p.uid, len(threads), cpus,
                                                    format_cpulist(p.mems)))
            self.write(f"{td}/children", " ".join(map(str, p.children)) + (" " if p.children else "")
                       if tid == p.pid else "")
        self.p(f"{d}/fd").mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(p.open_files):
            # /proc/PID/fd/N are magic links that read as the absolute path the process opened.
            fd = self.p(f"{d}/fd/{i + 3}")
            if fd.is_symlink():
                fd.unlink()
            os.symlink(f, fd)
        if p.cgroup:
            cg = f"/sys/fs/cgroup{p.cgroup}"
            if not self.p(f"{cg}/cpuset.cpus.effective").exists():
                self.attr(f"{cg}/cpuset.cpus.effective", cpus)

    @staticmethod
    def _stat(pid: int, comm: str, state: str, ppid: int, utime: int, stime: int, nthreads: int,
              start: int, cpu: int, blkio: int) -> str:
        # 52 fields as in proc(5) of 5.x kernels; the ones nodetune reads carry real values.
        f = ["0"] * 52
        f[0], f[1], f[2], f[3] = str(pid), f"({comm})", state, str(ppid)
        f[13], f[14], f[19], f[21] = str(utime), str(stime), str(nthreads), str(start)
        f[23] = "25600"  # rss pages
        f[38], f[41] = str(cpu), str(blkio)
        return " ".join(f) + "\n"

    @staticmethod
    def _status(comm: str, state: str, pid: int, ppid: int, uid: int, nthreads: int, cpus: str, mems: str) -> str:
        names = {"R": "running", "S": "sleeping", "D": "disk sleep", "Z": "zombie"}
        return (f"Name:\t{comm}\nUmask:\t0022\nState:\t{state} ({names.get(state, 'sleeping')})\nTgid:\t{pid}\n"
                f"Pid:\t{pid}\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
                f"VmRSS:\t  102400 kB\nThreads:\t{nthreads}\nCpus_allowed:\tffff\nCpus_allowed_list:\t{cpus}\n"
                f"Mems_allowed:\t00000001\nMems_allowed_list:\t{mems}\nvoluntary_ctxt_switches:\t10\n")

    # -- PCI ------------------------------------------------------------------------------
    def pci_device(self, path: list[str], cls: int, vendor: int, device: int, numa: int,
                   local_cpus: list[int], speed: str = "32.0 GT/s PCIe", width: int = 16,
                   max_speed: str | None = None, max_width: int | None = None, driver: str | None = None,
                   bridge_speed: str | None = None) -> str:
        """A device at the end of `path` ([host bridge, bridge..., device]); bridges are created too."""
        sysdir = "/sys/devices"
        for i, comp in enumerate(path):
            sysdir = f"{sysdir}/{comp}"
            if i == 0:
                continue
            is_dev = i == len(path) - 1
            if not self.p(f"{sysdir}/class").exists() or is_dev:
                self._pci_attrs(sysdir, comp, cls if is_dev else 0x060400, vendor if is_dev else 0x8086,
                                device if is_dev else 0x1234, numa, local_cpus,
                                speed if is_dev else (bridge_speed or max_speed or speed),
                                width if is_dev else (max_width or width),
                                max_speed if is_dev else (bridge_speed or max_speed or speed),
                                max_width if is_dev else (max_width or width),
                                driver if is_dev else "pcieport")
        return path[-1]

    def _pci_attrs(self, sysdir: str, addr: str, cls: int, vendor: int, device: int, numa: int,
                   local_cpus: list[int], speed: str, width: int, max_speed: str | None,
                   max_width: int | None, driver: str | None) -> None:
        self.attr(f"{sysdir}/class", f"0x{cls:06x}")
        self.attr(f"{sysdir}/vendor", f"0x{vendor:04x}")
        self.attr(f"{sysdir}/device", f"0x{device:04x}")
        self.attr(f"{sysdir}/numa_node", numa)
        self.attr(f"{sysdir}/local_cpulist", format_cpulist(local_cpus))
        self.attr(f"{sysdir}/local_cpus", _mask(local_cpus))
        self.attr(f"{sysdir}/current_link_speed", speed)
        self.attr(f"{sysdir}/current_link_width", width)
        self.attr(f"{sysdir}/max_link_speed", max_speed or speed)
        self.attr(f"{sysdir}/max_link_width", max_width or width)
        if driver:
            self.link(f"{sysdir}/driver", f"/sys/bus/pci/drivers/{driver}")
            self.p(f"/sys/bus/pci/drivers/{driver}").mkdir(parents=True, exist_ok=True)
        self.link(f"/sys/bus/pci/devices/{addr}", sysdir)

    def net(self, pci_path: list[str], ifname: str, ib: str | None = None) -> None:
        dev = "/sys/devices/" + "/".join(pci_path)
        self.attr(f"{dev}/net/{ifname}/operstate", "up")
        self.link(f"/sys/class/net/{ifname}", f"{dev}/net/{ifname}")
        if ib:
            self.attr(f"{dev}/infiniband/{ib}/node_type", "1: CA")
            self.link(f"/sys/class/infiniband/{ib}", f"{dev}/infiniband/{ib}")

    def ib_counters(self, ib: str, port: int = 1, rcv_bytes: int = 0, xmit_bytes: int = 0,
                    rate: str = "400 Gb/sec (4X NDR)", link_layer: str = "InfiniBand", xmit_wait: int = 0,
                    hw: dict[str, int] | None = None) -> None:
        """Port counters of an IB device made by `net(..., ib=...)`, as mlx5 lays them out:
        ports/N/{state,rate,link_layer}, counters/ (data in octets/4), hw_counters/."""
        base = self.p(f"/sys/class/infiniband/{ib}").resolve()
        rel = "/" + str(base.relative_to(self.root.resolve())) + f"/ports/{port}"
        self.attr(f"{rel}/state", "4: ACTIVE")
        self.attr(f"{rel}/phys_state", "5: LinkUp")
        self.attr(f"{rel}/rate", rate)
        self.attr(f"{rel}/link_layer", link_layer)
        for name, v in (("port_rcv_data", rcv_bytes // 4), ("port_xmit_data", xmit_bytes // 4),
                        ("port_rcv_packets", rcv_bytes // 4096), ("port_xmit_packets", xmit_bytes // 4096),
                        ("port_xmit_wait", xmit_wait), ("port_rcv_errors", 0), ("symbol_error", 0)):
            self.attr(f"{rel}/counters/{name}", v)
        for name, v in (hw or {"np_cnp_sent": 0, "rp_cnp_handled": 0, "out_of_sequence": 0}).items():
            self.attr(f"{rel}/hw_counters/{name}", v)

    def net_counters(self, ifname: str, rx_bytes: int = 0, tx_bytes: int = 0, speed: int | None = 100000) -> None:
        """statistics/{rx,tx}_bytes and speed (Mb/s) of an interface made by `net()`; speed None:
        reading it fails with EINVAL as on a down link (left absent here)."""
        base = self.p(f"/sys/class/net/{ifname}").resolve()
        root = self.root.resolve()
        rel = "/" + str(base.relative_to(root))
        self.attr(f"{rel}/statistics/rx_bytes", rx_bytes)
        self.attr(f"{rel}/statistics/tx_bytes", tx_bytes)
        if speed is not None:
            self.attr(f"{rel}/speed", speed)
        if not self.p(f"{rel}/device").exists():
            self.link(f"{rel}/device", "/" + str(base.parent.parent.relative_to(root)))

    def nvme(self, pci_path: list[str], ctrl: str, disk: str, major_minor: str, read_ahead_kb: int = 128,
             partitions: int = 1) -> None:
        dev = "/sys/devices/" + "/".join(pci_path)
        self.attr(f"{dev}/nvme/{ctrl}/model", "SAMSUNG MZWLR3T8HCLS-00A07")
        bdir = f"{dev}/nvme/{ctrl}/{disk}"
        self.block(bdir, disk, major_minor, read_ahead_kb, "[none] mq-deadline", rotational=0)
        major, minor = map(int, major_minor.split(":"))
        for i in range(1, partitions + 1):
            part = f"{disk}p{i}"
            self.attr(f"{bdir}/{part}/partition", i)
            self.attr(f"{bdir}/{part}/dev", f"{major}:{minor + i}")
            self.link(f"/sys/class/block/{part}", f"{bdir}/{part}")
            self.link(f"/sys/dev/block/{major}:{minor + i}", f"{bdir}/{part}")

    def block(self, bdir: str, disk: str, major_minor: str, read_ahead_kb: int, scheduler: str,
              rotational: int = 0, slaves: list[str] | None = None) -> None:
        self.attr(f"{bdir}/dev", major_minor)
        self.attr(f"{bdir}/queue/read_ahead_kb", read_ahead_kb)
        self.attr(f"{bdir}/queue/scheduler", scheduler)
        self.attr(f"{bdir}/queue/nr_requests", 1023)
        self.attr(f"{bdir}/queue/rotational", rotational)
        self.attr(f"{bdir}/bdi/read_ahead_kb", read_ahead_kb)
        if slaves is not None:
            self.p(f"{bdir}/slaves").mkdir(parents=True, exist_ok=True)
            for s in slaves:
                self.link(f"{bdir}/slaves/{s}", f"/sys/class/block/{s}")
        self.link(f"/sys/block/{disk}", bdir)
        self.link(f"/sys/class/block/{disk}", bdir)
        self.link(f"/sys/dev/block/{major_minor}", bdir)

    def partition(self, disk_dir: str, name: str, number: int, major_minor: str) -> None:
        """A partition directory inside its disk's sysfs directory, with its class/dev links."""
        self.attr(f"{disk_dir}/{name}/partition", number)
        self.attr(f"{disk_dir}/{name}/dev", major_minor)
        self.link(f"/sys/class/block/{name}", f"{disk_dir}/{name}")
        self.link(f"/sys/dev/block/{major_minor}", f"{disk_dir}/{name}")

    def hwmon(self, idx: int, name: str, temps: list[tuple[str, int, int | None, int | None]]) -> None:
        """temps: (label, milli-C, max milli-C, crit milli-C)."""
        d = f"/sys/devices/platform/{name}.0/hwmon/hwmon{idx}"
        self.attr(f"{d}/name", name)
        for i, (label, val, mx, crit) in enumerate(temps, start=1):
            self.attr(f"{d}/temp{i}_label", label)
            self.attr(f"{d}/temp{i}_input", val)
            if mx is not None:
                self.attr(f"{d}/temp{i}_max", mx)
            if crit is not None:
                self.attr(f"{d}/temp{i}_crit", crit)
        self.link(f"/sys/class/hwmon/hwmon{idx}", d)

    def cpufreq(self, cpus: list[int], governor: str = "powersave", epp: str | None = "balance_performance") -> None:
        for c in cpus:
            d = f"/sys/devices/system/cpu/cpu{c}/cpufreq"
            self.attr(f"{d}/scaling_governor", governor)
            self.attr(f"{d}/scaling_available_governors", "performance powersave")
            self.attr(f"{d}/scaling_driver", "intel_pstate")
            if epp is not None:
                self.attr(f"{d}/energy_performance_preference", epp)
                self.attr(f"{d}/energy_performance_available_preferences",
                          "default performance balance_performance balance_power power")
            self.attr(f"/sys/devices/system/cpu/cpu{c}/power/energy_perf_bias", 6)


# -- presets ----------------------------------------------------------------------------------

H100_DEVICE = 0x2330
H200_DEVICE = 0x2335


@dataclass
class Preset:
    node: FakeNode
    gpu_addresses: list[str]
    gpu_numa: list[int]
    gpu_local_cpus: list[list[int]]


def dgx_h100(root: str | Path) -> Preset:
    """2 sockets x 56 cores x 2 threads, 8 H100 SXM on NVSwitch, a ConnectX-7 and an NVMe per socket.

    Each GPU sits behind its own PCIe switch under its own host bridge (as on HGX boards); the NIC of
    each socket shares the switch of the socket's first GPU (PIX), the NVMe has a root port of its own.
    """
    fn = FakeNode(root)
    fn.system_files("dgx01")
    pkgs = fn.cpus(packages=2, cores=56, smt=2)
    fn.numa(pkgs, mem_gib=1024, hugepages_2m=0)
    fn.psi()
    addrs, numas, locals_ = [], [], []
    buses = [0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB]
    for i, bus in enumerate(buses):
        sock = i // 4
        hb = f"pci0000:{bus - 3:02x}"
        rp = f"0000:{bus - 3:02x}:01.0"
        usp = f"0000:{bus - 2:02x}:00.0"
        dsp = f"0000:{bus - 1:02x}:00.0"
        gpu = f"0000:{bus:02x}:00.0"
        fn.pci_device([hb, rp, usp, dsp, gpu], 0x030200, 0x10DE, H100_DEVICE, sock, pkgs[sock], driver="nvidia")
        addrs.append(gpu)
        numas.append(sock)
        locals_.append(pkgs[sock])
        if i % 4 == 0:
            dsp2 = f"0000:{bus - 1:02x}:01.0"
            nic = f"0000:{bus + 1:02x}:00.0"
            path = [hb, rp, usp, dsp2, nic]
            fn.pci_device(path, 0x020700, 0x15B3, 0x1021, sock, pkgs[sock], driver="mlx5_core")
            fn.net(path, f"ibp{bus + 1}s0", ib=f"mlx5_{sock}")
    for sock, bus in enumerate((0x05, 0x85)):
        hb, rp, dev = f"pci0000:{bus - 1:02x}", f"0000:{bus - 1:02x}:03.0", f"0000:{bus:02x}:00.0"
        path = [hb, rp, dev]
        fn.pci_device(path, 0x010802, 0x144D, 0xA824, sock, pkgs[sock], speed="16.0 GT/s PCIe", width=4,
                      driver="nvme")
        fn.nvme(path, f"nvme{sock}", f"nvme{sock}n1", f"259:{sock * 4}")
    fn.mountinfo([("259:1", "/", "ext4", "/dev/nvme0n1p1"), ("259:5", "/data", "xfs", "/dev/nvme1n1p1")])
    fn.diskstats([(259, 0, "nvme0n1", 1000, 80000, 500), (259, 1, "nvme0n1p1", 1000, 80000, 500),
                  (259, 4, "nvme1n1", 50000, 9000000, 4000), (259, 5, "nvme1n1p1", 50000, 9000000, 4000)])
    fn.hwmon(0, "coretemp", [("Package id 0", 54000, 95000, 105000), ("Core 0", 50000, 95000, 105000)])
    fn.hwmon(1, "coretemp", [("Package id 1", 52000, 95000, 105000)])
    fn.cpufreq(list(range(224)))
    return Preset(fn, addrs, numas, locals_)


def vm_h200(root: str | Path) -> Preset:
    """The real H200 machine's shape: one socket, 16 vCPUs, GPU `numa_node` -1, no hwmon/cpufreq.

    Checked against the real H100/H200 VMs: a virtio NIC without PCIe link files, an empty
    /sys/class/thermal, no /sys/class/hwmon.
    """
    fn = FakeNode(root)
    fn.system_files("h200-vm", "6.18.44-fc-v236-gpu")
    pkgs = fn.cpus(packages=1, cores=16, smt=1)
    fn.numa(pkgs, mem_gib=128)
    fn.psi()
    gpu = fn.pci_device(["pci0000:00", "0000:00:05.0"], 0x030200, 0x10DE, H200_DEVICE, -1, pkgs[0],
                        driver="nvidia")
    virt = ["pci0000:00", "0000:00:03.0"]
    fn.pci_device(virt, 0x020000, 0x1AF4, 0x1000, -1, pkgs[0], driver="virtio-pci")
    # A virtio function has no PCIe capability: sysfs shows no link attributes for it at all.
    for f in ("current_link_speed", "current_link_width", "max_link_speed", "max_link_width"):
        fn.remove(f"/sys/devices/pci0000:00/0000:00:03.0/{f}")
    fn.attr("/sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth0/operstate", "up")
    fn.p("/sys/class/thermal").mkdir(parents=True, exist_ok=True)  # present and empty, no hwmon
    fn.block("/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda", "vda", "254:0", 128, "[none] mq-deadline")
    fn.mountinfo([("254:0", "/", "ext4", "/dev/vda")])
    fn.diskstats([(254, 0, "vda", 3000, 240000, 900)])
    return Preset(fn, [gpu], [-1], [pkgs[0]])


def laptop(root: str | Path) -> Preset:
    """4 cores x 2 threads, no discrete GPU, a SATA SSD on a dm-crypt volume, one thermal zone."""
    fn = FakeNode(root)
    fn.system_files("laptop")
    pkgs = fn.cpus(packages=1, cores=4, smt=2)
    fn.numa(pkgs, mem_gib=16)
    fn.psi(cpu_full=False)
    fn.pci_device(["pci0000:00", "0000:00:1f.6"], 0x020000, 0x8086, 0x15FB, -1, pkgs[0], speed="2.5 GT/s PCIe",
                  width=1, driver="e1000e")
    fn.net(["pci0000:00", "0000:00:1f.6"], "enp0s31f6")
    sd = "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
    fn.block(sd, "sda", "8:0", 128, "none [mq-deadline]", rotational=0)
    fn.attr(f"{sd}/sda2/partition", 2)
    fn.attr(f"{sd}/sda2/dev", "8:2")
    fn.link("/sys/class/block/sda2", f"{sd}/sda2")
    fn.link("/sys/dev/block/8:2", f"{sd}/sda2")
    fn.block("/sys/devices/virtual/block/dm-0", "dm-0", "253:0", 128, "none", slaves=["sda2"])
    fn.mountinfo([("253:0", "/", "ext4", "/dev/mapper/root")])
    fn.diskstats([(8, 0, "sda", 500, 40000, 300), (8, 2, "sda2", 500, 40000, 300), (253, 0, "dm-0", 500, 40000, 300)])
    fn.attr("/sys/class/thermal/thermal_zone0/type", "x86_pkg_temp")
    fn.attr("/sys/class/thermal/thermal_zone0/temp", 61000)
    fn.cpufreq(list(range(8)))
    return Preset(fn, [], [], [])


def h200_pair(root: str | Path) -> Preset:
    """The 2-GPU machine's shape: a one-socket VM with two H200s on the host bridge, NUMA -1.

    NVML reports 18 NVLinks from each GPU straight to the other (NV18, no NVSwitch); pair this
    tree with `fakenvml.nvlink_pair_gpus`.
    """
    fn = FakeNode(root)
    fn.system_files("h200-pair", "6.18.44-fc-v236-gpu")
    pkgs = fn.cpus(packages=1, cores=32, smt=1)
    fn.numa(pkgs, mem_gib=256)
    fn.psi()
    addrs = []
    for slot in (5, 6):
        addrs.append(fn.pci_device(["pci0000:00", f"0000:00:{slot:02x}.0"], 0x030200, 0x10DE, H200_DEVICE, -1,
                                   pkgs[0], driver="nvidia"))
    fn.block("/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda", "vda", "254:0", 128, "[none] mq-deadline")
    fn.mountinfo([("254:0", "/", "ext4", "/dev/vda")])
    fn.diskstats([(254, 0, "vda", 3000, 240000, 900)])
    return Preset(fn, addrs, [-1, -1], [pkgs[0], pkgs[0]])
