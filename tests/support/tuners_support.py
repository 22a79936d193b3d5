"""Shared helpers for the tuner tests (no tests here): contexts on fake trees, knob read-outs.

Permission and kernel-rejection failures are injected with `RejectingHost`, a Host whose write of
one knob raises the KnobWriteError the real Host raises for EACCES/EINVAL. That works the same
when the tests run as root, where chmod 0o444 would not stop a write.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nodetune.probes.host import Host, KnobWriteError, ProbeError, parse_cpulist
from nodetune.probes.memory import parse_selected
from nodetune.tuners.affinity import TreeAffinity
from nodetune.tuners.context import TuneContext
from nodetune.tuners.gpu_control import GpuControl
from nodetune.tuners.transaction.engine import Engine
from nodetune.tuners.transaction.journal import DEFAULT_JOURNAL, Journal
from tests.support.faketree import FakeNode, FakeProc, Preset, dgx_h100, laptop


@dataclass(frozen=True)
class KernelHost(Host):
    """A fake root whose writes behave like sysfs: a selector file keeps its choices and moves
    the brackets (or rejects a word it does not offer, as EINVAL would), a value gets its newline."""

    def write(self, p: str, value: str) -> None:
        try:
            old = self.read(p)
        except ProbeError:
            old = ""
        if "[" in old:
            words = [w.strip("[]") for w in old.split()]
            if value not in words:
                raise KnobWriteError(f"{p}: the kernel rejected {value!r}")
            value = " ".join(f"[{w}]" if w == value else w for w in words)
        super().write(p, value.rstrip("\n") + "\n")


@dataclass(frozen=True)
class RejectingHost(KernelHost):
    """A node whose kernel refuses writes to knobs whose path ends with `reject`."""

    reject: str = ""
    why: str = "the kernel rejected the value"

    def write(self, p: str, value: str) -> None:
        if self.reject and p.endswith(self.reject):
            raise KnobWriteError(f"{p}: {self.why}")
        super().write(p, value)


@dataclass(frozen=True)
class StingyHost(KernelHost):
    """A node whose kernel grants at most `cap` hugetlb pages per pool (fragmented memory)."""

    cap: int = 0

    def write(self, p: str, value: str) -> None:
        if p.endswith("/nr_hugepages"):
            value = str(min(int(value), self.cap))
        super().write(p, value)


def ctx_for(host: Host | str | Path, nvml: Any = None) -> TuneContext:
    host = host if isinstance(host, Host) else KernelHost(str(host))
    gpus = GpuControl(nvml) if nvml is not None else GpuControl.disabled("fake root: no NVML")
    return TuneContext(host, TreeAffinity(host), gpus)


def journal_for(root: str | Path) -> Journal:
    return Journal(Host(str(root)).path(DEFAULT_JOURNAL))


def engine_for(ctx: TuneContext) -> Engine:
    return Engine(ctx, journal_for(ctx.host.root))


def laptop_with_job(root: str | Path, threads: int = 3) -> FakeNode:
    """The laptop preset plus a 3-thread python job (pid 4242) allowed on all 8 CPUs."""
    fn = laptop(root).node
    tids = {4242 + i: ("python" if i == 0 else f"worker{i}", "S", 1, 1) for i in range(threads)}
    fn.process(FakeProc(pid=4242, comm="python", cmdline=["python", "train.py"], cpus=list(range(8)),
                        threads=tids, starttime=5000))
    return fn


def _sel(text: str) -> str:
    text = text.strip()
    return parse_selected(text, "x") if "[" in text else text


def knob_values(root: str | Path) -> dict[str, Any]:
    """Every value a tuner may touch, read as the kernel would report it (selected word, number,
    cpu set), so a test can assert that a rollback restored each one exactly."""
    r = Path(root)
    out: dict[str, Any] = {}
    for f in sorted((r / "sys").rglob("*")):
        if f.is_symlink() or not f.is_file():
            continue
        rel = "/" + str(f.relative_to(r))
        name = f.name
        if name in ("enabled", "defrag") and "transparent_hugepage" in rel or name == "scheduler":
            out[rel] = _sel(f.read_text())
        elif name in ("read_ahead_kb", "nr_hugepages", "energy_perf_bias"):
            out[rel] = int(f.read_text())
        elif name in ("scaling_governor", "energy_performance_preference"):
            out[rel] = f.read_text().strip()
    for f in sorted((r / "proc").glob("*/task/*/status")):
        m = re.search(r"^Cpus_allowed_list:\s*(\S+)", f.read_text(), re.M)
        out["/" + str(f.relative_to(r))] = parse_cpulist(m.group(1)) if m else None
    dma = r / "dev/cpu_dma_latency"
    if dma.exists():
        out["/dev/cpu_dma_latency"] = dma.read_bytes()
    return out


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}


_TEMPLATES: dict[str, Preset] = {}


def dgx_copy(dst: Path) -> Preset:
    """A private copy of the 2-socket 8-GPU tree (building one takes seconds; copying does not)."""
    if "dgx" not in _TEMPLATES:
        base = Path(tempfile.mkdtemp(prefix="nodetune-dgx-"))
        atexit.register(shutil.rmtree, base, True)
        _TEMPLATES["dgx"] = dgx_h100(base / "root")
    t = _TEMPLATES["dgx"]
    root = dst / "dgx"
    shutil.copytree(t.node.root, root, symlinks=True)
    return replace(t, node=FakeNode(root))


# A profile touching every tuner on the laptop_with_job tree (pid 4242), shared by the journal tests.
LAPTOP_PROFILE = {
    "hugepages": {"thp_enabled": "always", "thp_defrag": "never"},
    "readahead": {"paths": ["/"], "read_ahead_kb": 2048},
    "power": {"governor": "performance", "epp": "performance", "epb": 0},
    "pinning": {"pids": [4242], "cpus": "0-3"},
}
