"""Processes about to use a GPU: CUDA libraries mapped, no GPU context yet.

A framework job spends its first seconds importing and building its model before it creates a
CUDA context; until then NVML lists no process on any GPU, and the job is invisible to a probe that
starts from NVML. `import torch` maps libtorch_cuda and the CUDA runtime early, so a young process
with those mapped is a GPU job starting up. Only processes younger than `max_age_s` are looked at
(one stat read each; their maps only then), so the scan costs little on a busy node.
"""

from __future__ import annotations

from dataclasses import dataclass

from .host import Host, ProbeError
from .processes import parse_stat

# Libraries a process maps when it is going to use an NVIDIA GPU (driver API, runtime, the
# frameworks' CUDA builds, NCCL).
CUDA_LIBS = (b"libcuda.so", b"libcudart.so", b"libtorch_cuda.so", b"libnccl.so", b"libcublas.so",
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


def pending_gpu_processes(host: Host, known: set[int], ngpus: int, max_age_s: float, clk_tck: int = 100,
                          limit: int = 16) -> list[PendingProcess]:
    """Young processes (not in `known`) that have CUDA libraries mapped; at most `limit`."""
    if ngpus <= 0:
        return []
    up = _uptime(host)
    if up is None:
        return []
    out: list[PendingProcess] = []
    try:
        pids = [int(p) for p in host.listdir("/proc") if p.isdigit()]
    except (OSError, ProbeError):
        return []
    for pid in pids:
        if pid in known or len(out) >= limit:
            continue
        try:
            _, rest = parse_stat(host.read(f"/proc/{pid}/stat"), f"/proc/{pid}/stat")
            start = int(rest[19]) / clk_tck  # field 22, starttime
        except (OSError, ProbeError, ValueError, IndexError):
            continue  # gone, or not ours to read
        if up - start > max_age_s:
            continue
        try:
            maps = host.read_bytes(f"/proc/{pid}/maps", MAPS_LIMIT)
        except (OSError, ProbeError):
            continue
        lib = next((x for x in CUDA_LIBS if x in maps), None)
        if lib is not None:
            out.append(PendingProcess(pid, _expected_gpus(host, pid, ngpus), lib.decode()))
    return out
