"""Readahead for the block devices behind data paths, `none` scheduler for NVMe, io_uring status.

path -> mount (longest prefix in mountinfo) -> the device it sits on (a partition, dm-N, mdN)
-> whole disks beneath (through partitions, dm slaves, md members). read_ahead_kb is set on the
top device when it has a queue (dm/md: the readahead the file system actually gets) and on every
disk under it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from nodetune.probes.host import Host, ProbeError
from nodetune.probes.storage import disks_under, mount_for_path, probe_mounts

from ..context import TuneContext
from ..contract import Knob, TunerPlan
from ..errors import TargetError
from ..registry import tuner
from ..sysfs import sysfs_change

IO_URING = "/proc/sys/kernel/io_uring_disabled"
FADVISE_ADVICE = ("loaders reading files front to back: call os.posix_fadvise(fd, 0, 0, "
                  "POSIX_FADV_SEQUENTIAL) after open (doubles the file's readahead window); for "
                  "the next shard, POSIX_FADV_WILLNEED starts reading it in the background")


@dataclass
class ReadaheadParams:
    paths: list[str] = field(default_factory=list)
    read_ahead_kb: int | None = None
    nvme_scheduler: str | None = None
    allow_lower: bool = False

    def check(self) -> list[str]:
        out = []
        if self.read_ahead_kb is not None and not 4 <= self.read_ahead_kb <= 65536:
            out.append(f"read_ahead_kb: {self.read_ahead_kb} is outside 4..65536")
        for p in self.paths:
            if not p.startswith("/"):
                out.append(f"paths: {p!r} is not an absolute path")
        return out


def read_ahead_knob(dev: str) -> Knob:
    p = f"/sys/block/{dev}/queue/read_ahead_kb"
    return Knob(id=f"sysfs:{p}", kind="sysfs", group="readahead", label=f"read_ahead_kb {dev}", path=p,
                floor=True, unit="kB")


def scheduler_knob(dev: str) -> Knob:
    p = f"/sys/block/{dev}/queue/scheduler"
    return Knob(id=f"sysfs:{p}", kind="sysfs", group="scheduler", label=f"scheduler {dev}", path=p,
                selector=True)


def devices_for_path(host: Host, path: str) -> list[str]:
    """Block devices with a request queue behind `path`: the top device first, then its disks.

    The path must exist on the node (symlinks followed inside the root) and sit on a mount with a
    block device: tmpfs, NFS, /proc or a typo is a TargetError, never the root disk by default.
    """
    try:
        real = host.resolve_inside(path)
    except ProbeError as exc:  # PathOutsideRoot, or a directory on the way that cannot be read
        raise TargetError(f"no block device behind {path}: {exc.reason}") from None
    if not host.exists(real):
        raise TargetError(f"no block device behind {path}: no such file or directory on this node (a typo?)")
    missing: dict[str, str] = {}
    mounts = probe_mounts(host, missing, virtual=True)
    if "mounts" in missing:
        raise TargetError(f"{path}: cannot read the mount table ({missing['mounts']})")
    m = mount_for_path(mounts, real)
    if m is None:
        raise TargetError(f"no block device behind {path} (no mount in /proc/self/mountinfo holds it)")
    if m.device is None:
        raise TargetError(f"no block device behind {path} (fs type {m.fstype}, mounted at {m.mount_point} "
                          f"from {m.source}); nothing to tune")
    devs = [m.device] if host.exists(f"/sys/block/{m.device}/queue") else []
    devs += [d for d in disks_under(host, m.device) if d not in devs]
    if not devs:
        raise TargetError(f"no block device behind {path}: {m.device} (fs type {m.fstype}) has no request "
                          f"queue in /sys/block")
    return devs


def io_uring_status(host: Host) -> str:
    """kernel.io_uring_disabled in words."""
    try:
        v = host.read_int(IO_URING)
    except ProbeError:
        return (f"io_uring: {IO_URING} not present (kernel older than 6.6: io_uring is on unless "
                f"the kernel was built without it)")
    return {0: "io_uring: enabled (kernel.io_uring_disabled = 0)",
            1: "io_uring: disabled for unprivileged processes (kernel.io_uring_disabled = 1; "
               "members of kernel.io_uring_group may use it)",
            2: "io_uring: disabled for every process (kernel.io_uring_disabled = 2)"}.get(
        v, f"io_uring: kernel.io_uring_disabled = {v} (unknown value)")


@tuner
class ReadaheadTuner:
    name = "readahead"
    params = ReadaheadParams
    order = 20
    managed_by = {"readahead": ("TuneD",), "scheduler": ("TuneD",)}

    @staticmethod
    def command(params: dict[str, Any]) -> str | None:
        """`tune apply` with the data paths the advice names, else None."""
        if not params.get("paths"):
            return None
        args = [f"--data-path {shlex.quote(str(p))}" for p in params["paths"]]
        return "nodetune tune apply --profile data-loading " + " ".join(args)

    def plan(self, ctx: TuneContext, p: ReadaheadParams) -> TunerPlan:
        out = TunerPlan()
        if not p.paths:
            out.notes.append("readahead: no data paths given (--data-path DIR, or `paths` in the profile); "
                             "no block device to tune")
        seen: set[str] = set()
        for path in p.paths:
            for dev in devices_for_path(ctx.host, path):  # unnormalized: a `..` above the root is refused
                if dev in seen:
                    continue
                seen.add(dev)
                if p.read_ahead_kb is not None:
                    out.changes.append(sysfs_change(ctx, self.name, read_ahead_knob(dev), str(p.read_ahead_kb)))
                if p.nvme_scheduler is not None and dev.startswith("nvme"):
                    out.changes.append(sysfs_change(ctx, self.name, scheduler_knob(dev), p.nvme_scheduler))
        out.notes.append(io_uring_status(ctx.host))
        out.notes.append(FADVISE_ADVICE)
        return out
