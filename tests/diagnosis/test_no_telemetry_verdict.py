"""A GPU with no utilization reading (no NVML, or one NVML cannot see) has no verdict: `unknown` with
the reason, never `idle` at 0.9."""

from __future__ import annotations

import time
from pathlib import Path

from nodetune.diagnosis.engine import diagnose
from nodetune.probes.host import Host
from nodetune.probes.node import probe_topology
from nodetune.probes.nvml_backend import NvmlBackend
from nodetune.probes.sampler import Sampler
from nodetune.probes.snapshot import Window
from nodetune.probes.source import NoGpuBackend
from tests.support.fakenvml import FakeNvml, hgx_gpus
from tests.support.faketree import dgx_h100


def _window(host: Host, backend: object, n: int = 3) -> tuple[object, Window]:
    topo = probe_topology(host, backend, backend.open())  # type: ignore[arg-type]
    s = Sampler(host, backend, topo)  # type: ignore[arg-type]
    win = Window(seconds=2, interval_s=1)
    for _ in range(n):
        win.samples.append(s.sample())
        time.sleep(0.01)
    s.roll(win)
    return topo, win


def test_no_nvml_is_unknown_with_the_reason(tmp_path: Path) -> None:
    dgx_h100(tmp_path)
    host = Host(str(tmp_path))
    topo, win = _window(host, NoGpuBackend("NVML library (libnvidia-ml.so.1) not found"))
    r = diagnose(topo, win)  # type: ignore[arg-type]
    assert len(r.gpus) == 8
    for g in r.gpus:
        assert (g.verdict, g.confidence, g.healthy) == ("unknown", 0.0, False)
        assert g.summary == "unknown: no GPU telemetry (NVML library (libnvidia-ml.so.1) not found)"
        assert not g.borderline


def test_a_gpu_nvml_cannot_read_is_unknown_and_the_others_keep_their_verdicts(tmp_path: Path) -> None:
    p = dgx_h100(tmp_path)
    gpus = hgx_gpus(p.gpu_addresses)
    gpus[3].fail["nvmlDeviceGetUtilizationRates"] = 999
    backend = NvmlBackend(FakeNvml(gpus))
    topo, win = _window(Host(str(tmp_path)), backend)
    r = diagnose(topo, win)  # type: ignore[arg-type]
    by = {g.index: g for g in r.gpus}
    assert by[0].verdict == "idle" and by[0].confidence == 0.9
    assert by[3].verdict == "unknown" and by[3].confidence == 0.0
    assert by[3].summary.startswith("unknown: NVML gave no utilization for this GPU (")
