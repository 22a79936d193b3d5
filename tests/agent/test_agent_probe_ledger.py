"""The ledger of probe families comes from Sample's fields: a NIC fault is counted and logged, and
a probe added to a sample class is counted with no list to edit."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from nodetune.agent.probe_ledger import Ledger, families, missing_counts
from nodetune.probes.cpu import CpuSample
from nodetune.probes.io import IoSample
from nodetune.probes.memory import MemorySample
from nodetune.probes.nic import NicPort, NicSample
from nodetune.probes.snapshot import Sample
from nodetune.probes.thermal import ThermalSample


def _sample(nics: NicSample | None) -> Sample:
    return Sample(t=0.0, wall="", cpu=CpuSample(missing={"loadavg": "gone"}), memory=MemorySample(), io=IoSample(),
                  thermal=ThermalSample(), nics=nics)


def test_nic_faults_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    port = NicPort(device="mlx5_0", kind="infiniband", missing={"rate": "unreadable"})
    s = _sample(NicSample(ports=[port], missing={"net": "no /sys/class/net"}))
    counts = missing_counts(s)
    assert counts["nic"] == 2 and counts["cpu"] == 1 and counts["gpu"] == 0 and counts["processes"] == 0
    assert missing_counts(_sample(None))["nic"] == 0  # an old snapshot without NIC counters
    ledger = Ledger()
    ledger.observe(_sample(None), first=True)  # what the node lacks from the start: remembered, not logged
    caplog.clear()
    for _ in range(3):
        assert ledger.observe(s)["nic"] == 2
    lines = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 2 and any("mlx5_0.rate" in ln for ln in lines) and any("nic: net" in ln for ln in lines)


@dataclass
class _Gauge:
    value: float | None = None
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class _Bigger(Sample):
    widget: _Gauge | None = None


def test_a_new_probe_field_is_a_family_with_no_list_to_edit() -> None:
    fams = {f.field: f for f in families(_Bigger)}
    assert fams["widget"].probe == __name__.rsplit(".", 1)[-1] and not fams["widget"].many
    assert {f.probe for f in families(Sample)} == {"cpu", "memory", "io", "thermal", "gpu", "processes", "nic"}
