"""Processes about to use a GPU: CUDA libraries mapped, no GPU context yet.

A framework job spends its first seconds importing and building its model before it creates a
CUDA context; until then NVML lists no process on any GPU, and the job is invisible to a probe that
starts from NVML. `import torch` maps libtorch_cuda and the CUDA runtime early, so a young process
with those mapped is a GPU job starting up. Only processes younger than `max_age_s` are looked at,
and a process's stat is read once in its life (`PendingScanner`), so the scan costs little on a
busy node.
"""

from __future__ import annotations

from dataclasses import dataclass

from .host import Host, ProbeError
from .proc_table import ProcTable

# Libraries a process maps when it is going to run work on an NVIDIA GPU (the CUDA runtime, the
# frameworks' CUDA builds, NCCL, cuBLAS, cuDNN).
# Not libcuda.so itself: NVML users (this agent, nvidia-smi, exporters) map the driver's libraries.
CUDA_LIBS = (b"libcudart.so", b"libtorch_cuda.so", b"libnccl.so", b"libcublas.so",
             b"libjax_cuda", b"xla_extension.so", b"libcudnn.so")
MAPS_LIMIT = 4 << 20


@dataclass
class PendingProcess:
    """A young process with CUDA loaded and no GPU context: which GPU it will most likely use."""

    pid: int
    gpus: list[int]  # from CUDA_VISIBLE_DEVICES or LOCAL_RANK; [0] when neither says
    lib: str  # the CUDA library that showed it


def _uptime(host: Host) -> float | None:
    try:
        return float(host.read("/proc/uptime").split()[0])
    except (OSError, ProbeError, ValueError, IndexError):
        return None


def _expected_gpus(host: Host, pid: int, ngpus: int) -> list[int]:
    """The GPU a starting process will use: the first of CUDA_VISIBLE_DEVICES (as an index), else
    LOCAL_RANK (torchrun's convention), else 0."""
    try:
        env = dict(kv.split(b"=", 1) for kv in host.read_bytes(f"/proc/{pid}/environ", 1 << 16).split(b"\0")
                   if b"=" in kv)
    except (OSError, ProbeError):
        env = {}
    for key in (b"CUDA_VISIBLE_DEVICES", b"LOCAL_RANK"):
        first = env.get(key, b"").split(b",")[0].strip()
        if first.isdigit() and int(first) < max(ngpus, 1):
            return [int(first)]
    return [0]


class PendingScanner:
    """Finds young processes that load CUDA, scan after scan, at a cost that does not grow with the
    node's process count: the process table (`ProcTable`) reads each new pid's stat once, and only
    processes still young and without CUDA have their maps read again (a process maps CUDA some
    seconds after it starts)."""

    def __init__(self, host: Host, ngpus: int, max_age_s: float, clk_tck: int = 100, limit: int = 16,
                 table: ProcTable | None = None) -> None:
        self.host, self.ngpus, self.max_age_s, self.clk_tck, self.limit = host, ngpus, max_age_s, clk_tck, limit
        # Shared with the sampler's search for loader workers, which scans it; scanned here otherwise.
        self.table = table if table is not None else ProcTable(host)
        self._owns_table = table is None
        self._young: dict[int, tuple[float, int]] = {}  # pid -> (start s since boot, ppid): young, no CUDA yet

    def scan(self, known: set[int]) -> list[PendingProcess]:
        """Processes not in `known` that have mapped CUDA since the last scan; at most `limit`."""
        if self.ngpus <= 0:
            return []
        if self._owns_table and not self.table.scan():
            return []
        up = _uptime(self.host)
        if up is None or self.table.error is not None:
            return []
        entries = self.table.entries
        for pid in self.table.new:
            e = entries[pid]
            if up - e.starttime / self.clk_tck <= self.max_age_s:
                self._young[pid] = (e.starttime / self.clk_tck, e.ppid)
        out: list[PendingProcess] = []
        for pid, (start, ppid) in list(self._young.items()):
            # gone, already followed, a child of a followed process (a DataLoader worker inherits its
            # parent's mappings: the sampler follows it as a worker), or too old to be starting
            if pid not in entries or pid in known or ppid in known or up - start > self.max_age_s:
                del self._young[pid]
                continue
            if len(out) >= self.limit:
                break
            try:
                maps = self.host.read_bytes(f"/proc/{pid}/maps", MAPS_LIMIT)
            except (OSError, ProbeError):
                continue
            lib = next((x for x in CUDA_LIBS if x in maps), None)
            if lib is not None:
                del self._young[pid]
                out.append(PendingProcess(pid, _expected_gpus(self.host, pid, self.ngpus), lib.decode()))
        return out


def pending_gpu_processes(host: Host, known: set[int], ngpus: int, max_age_s: float, clk_tck: int = 100,
                          limit: int = 16) -> list[PendingProcess]:
    """Young processes (not in `known`) that have CUDA libraries mapped, in one scan."""
    return PendingScanner(host, ngpus, max_age_s, clk_tck, limit).scan(known)
