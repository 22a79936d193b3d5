"""Where a command's (or the agent's) data comes from: the live node (or a root), or a recorded snapshot."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodetune.probes.gpu import BackendStatus, GpuBackend, GpuSample, GpuStatic, NvLink
from nodetune.probes.host import Host, ProbeError

if TYPE_CHECKING:
    from nodetune.probes.snapshot import Snapshot


class NoGpuBackend:
    """A backend for nodes (or fake roots) where NVML cannot describe the GPUs."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def open(self) -> BackendStatus:
        return BackendStatus(False, "none", self.reason)

    def static(self, index: int) -> GpuStatic:
        return GpuStatic(index=index, missing={"*": self.reason})

    def prime(self, index: int) -> None:
        return None

    def sample(self, index: int, detail: bool = True) -> GpuSample:
        return GpuSample(index=index, t=time.monotonic(), state="error", missing={"*": self.reason})

    def nvlinks(self, index: int) -> list[NvLink]:
        return []

    def common_ancestor(self, a: int, b: int) -> str | None:
        return None

    def close(self) -> None:
        return None


@dataclass
class Source:
    host: Host
    backend: GpuBackend
    status: BackendStatus
    snapshot: Snapshot | None = None

    def close(self) -> None:
        self.backend.close()


def open_source(root: str = "/", replay: str | None = None, nvml: object | None = None) -> Source:
    """Open the live node (NVML only for the real root) or a snapshot for replay."""
    if replay:
        # here: the snapshot format pulls in every probe's types, which a live `topo` never needs
        from nodetune.probes.snapshot import ReplayBackend, load_snapshot

        snap = load_snapshot(replay)  # SnapshotError names the file and what is wrong
        rb = ReplayBackend(snap)
        return Source(Host(root), rb, rb.open(), snap)
    if not os.path.isdir(root):
        raise ProbeError(f"--root {root}: not a directory")
    host = Host(root)
    backend: GpuBackend
    if host.live or nvml is not None:
        from nodetune.probes.nvml_backend import NvmlBackend

        backend = NvmlBackend(nvml)
    else:
        backend = NoGpuBackend(f"--root {root}: NVML describes the live node only; GPUs are read from sysfs")
    return Source(host, backend, backend.open())
