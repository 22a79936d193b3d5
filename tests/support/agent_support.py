"""Helpers for the agent tests: a fake node with fake NVML, an agent running in a thread, scrapes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from nodetune.agent.application import Agent
from tests.support.fakenvml import FakeGpu, FakeNvml, hgx_gpus
from tests.support.faketree import FakeProc, Preset, dgx_h100, vm_h200

REPO = Path(__file__).resolve().parents[2]
FAST = """[agent]
listen = "127.0.0.1:0"
sample_interval_s = 0.15
diagnose_every_s = 1
window_s = 2
detail_every_s = 1
worker_scan_every_s = 0.5
"""
BUSY_GPM = {2: 96.0, 3: 60.0, 5: 93.0, 10: 17.0, 12: 5.0, 13: 0.0, 20: 13.0, 21: 29.0, 60: 0.0, 61: 0.0}
JOB_PID = 4242
JOB_CGROUP = "/system.slice/slurmstepd.scope/job_1234/step_0/user/task_0"


@dataclass
class Running:
    agent: Agent
    thread: threading.Thread
    nvml: FakeNvml
    preset: Preset
    root: Path

    @property
    def url(self) -> str:
        assert self.agent.served is not None
        return f"http://127.0.0.1:{self.agent.served.port}"

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def busy_node(root: Path, gpus: list[FakeGpu] | None = None) -> tuple[Preset, FakeNvml]:
    p = vm_h200(root)
    p.node.process(FakeProc(pid=JOB_PID, comm="python3", cmdline=["python3", "train.py"], cpus=list(range(16)),
                            cgroup=JOB_CGROUP, utime=100, stime=10))
    if gpus is None:
        gpus = hgx_gpus(p.gpu_addresses, nvlinks=[], util_gpu=97, util_mem=40, power_mw=350000, temp=61,
                        sm_clock=1980, reasons=0, processes=[(JOB_PID, 40 << 30)], gpm=dict(BUSY_GPM))
    return p, FakeNvml(gpus)


def write_config(root: Path, text: str = FAST) -> Path:
    cfg = root / "etc/nodetune/config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(text)
    return cfg


def start_agent(tmp_path: Path, config: str = FAST, gpus: list[FakeGpu] | None = None,
                node: Callable[[Path], tuple[Preset, FakeNvml]] | None = None, **kw: Any) -> Running:
    root = tmp_path / "root"
    p, nv = node(root) if node else busy_node(root, gpus)
    cfg = write_config(root, config)
    a = Agent(root=str(root), config_path=str(cfg), nvml=nv, **kw)
    a.start()
    t = threading.Thread(target=a.run, name="agent-loop", daemon=True)
    t.start()
    return Running(a, t, nv, p, root)


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def scrape_text(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> str:
    req = urllib.request.Request(url + "/metrics", headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - loopback URL built by the test
        return str(r.read().decode())


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, /, **labels: str) -> float | None:
    return metrics.get((metric, frozenset(labels.items())))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_process(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m nodetune.cli agent --root ROOT ...` as a person's shell (or systemd) starts it."""
    return subprocess.Popen([sys.executable, "-m", "nodetune.cli", "agent", "--root", str(root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def serve_in_process(root: str, config: str, nvml: Any, port_q: Any) -> None:
    """Run an Agent on the fake tree at `root` until SIGTERM (a benchmark's child process): its
    bound port goes to `port_q` first."""
    from nodetune.agent.application import Agent

    a = Agent(root=root, config_path=str(write_config(Path(root), config)), nvml=nvml)
    a.install_signals()
    a.start()
    assert a.served is not None
    port_q.put(a.served.port)
    try:
        a.run()
    finally:
        a.stop()


def dgx_with_jobs(root: Path | str, gpus: int = 8, workers: int = 8, idle_threads: int = 0) -> FakeNvml:
    """A DGX H100 tree with one busy Slurm job a GPU (nine working threads, and `idle_threads`
    sleeping ones: the real trainers recorded on the H200 had 18-35 threads, one or two working),
    each with `workers` loader workers: the load the agent's cost benchmarks measure it under."""
    p = dgx_h100(Path(root))
    fg = hgx_gpus(p.gpu_addresses, util_gpu=97, power_mw=650000, gpm=dict(BUSY_GPM))
    for g in range(gpus):
        main = 10000 + 1000 * g
        kids = [main + 1 + k for k in range(workers)]
        p.node.process(FakeProc(pid=main, comm="python", cmdline=["python", "train.py", f"--rank={g}"],
                                cpus=list(range(224)), cgroup=f"/system.slice/slurmstepd.scope/job_{g}/step_0",
                                threads={main + t * 100000: ("python", "R", 900, 90) for t in range(1, 9)} | {
                                    main + (9 + t) * 100000: ("pt_omp", "S", 3, 1) for t in range(idle_threads)} | {
                                    main: ("python", "R", 900, 90)}, children=kids))
        for k in kids:
            p.node.process(FakeProc(pid=k, comm="pt_data_worker", cmdline=["python", "train.py"], ppid=main,
                                    cpus=list(range(224)), state="R", utime=500, stime=50,
                                    threads={k: ("pt_data_worker", "R", 500, 50), k + 500000: ("omp", "S", 1, 1)}))
        fg[g].processes = [(main, 30 << 30)]
    return FakeNvml(fg)
