"""Autotune on fake trees: off by default, allowlist, hysteresis, rate limit, failures rolled back
and reported, and `nodetune tune rollback` undoing what it did."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nodetune.agent.autotune import Autotuner
from nodetune.diagnosis.findings import Advice, Finding, Report
from nodetune.probes.host import Host
from tests.support.tuners_support import knob_values, laptop_with_job


def report(*findings: Finding) -> Report:
    return Report(version=1, source="agent", taken_at="now", window_s=60, elapsed_s=0.1, hostname="x",
                  gpu_backend="nvml", findings=list(findings))


def io_starved(kb: int = 4096, severity: str = "critical") -> Finding:
    return Finding("data_starved", severity, 0.9, "data-starved (io_input)", cause="io_input", gpus=[0], job="slurm:1",
                   advice=[Advice("Raise read-ahead", tuner="readahead",
                                  params={"paths": ["/home"], "read_ahead_kb": kb}),
                           Advice("Use more workers")])


def gpu_throttled() -> Finding:
    return Finding("throttled", "warning", 0.8, "power capped", gpus=[0],
                   advice=[Advice("Raise the power limit", tuner="power", params={"gpu": 0, "gpu_power_limit_w": 700})])


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def tuner(root, **kw) -> Autotuner:
    return Autotuner(Host(str(root)), **{"allow": ["readahead"], "hold_windows": 3, **kw})


def test_off_by_default_changes_nothing(tmp_path):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    a = Autotuner(Host(str(tmp_path)), allow=[])
    for _ in range(10):
        assert a.observe(report(io_starved())) == []
    assert knob_values(tmp_path) == before


def test_hysteresis_a_flickering_finding_never_acts(tmp_path):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    a = tuner(tmp_path)
    for k in range(12):  # present, present, absent, ...: never three windows in a row
        assert a.observe(report(io_starved()) if k % 3 != 2 else report()) == []
    assert knob_values(tmp_path) == before


def test_a_steady_finding_acts_once_through_the_journal_and_rollback_undoes_it(tmp_path):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    a = tuner(tmp_path)
    assert a.observe(report(io_starved())) == [] and a.observe(report(io_starved())) == []
    changes = a.observe(report(io_starved()))
    assert changes and all(c.ok and c.tuner == "readahead" for c in changes)
    assert {c.knob for c in changes} >= {"read_ahead_kb sda"} and all(c.target == "4096" for c in changes)
    assert a.changes_total[("readahead", "readahead")] == len(changes)  # label knob: the bounded group
    assert a.observe(report(io_starved())) == []  # applied once, not every window
    after = knob_values(tmp_path)
    assert after != before
    st = subprocess.run([sys.executable, "-m", "nodetune.cli", "tune", "status", "--root", str(tmp_path)],
                        capture_output=True, text=True)
    assert st.returncode == 0 and "autotune" in st.stdout
    rb = subprocess.run([sys.executable, "-m", "nodetune.cli", "tune", "rollback", "--root", str(tmp_path)],
                        capture_output=True, text=True)
    assert rb.returncode == 0, rb.stderr
    assert knob_values(tmp_path) == before


def test_rate_limit(tmp_path):
    laptop_with_job(tmp_path)
    clock = Clock()
    a = tuner(tmp_path, hold_windows=1, max_per_hour=2, clock=clock)
    applied = 0
    for kb in (1024, 2048, 4096, 8192):  # four different pieces of advice in one hour
        applied += bool(a.observe(report(io_starved(kb))))
        clock.t += 60
    assert applied == 2 and a.rate_limited_total >= 2
    clock.t += 3600
    assert a.observe(report(io_starved(8192)))  # the next hour has room again


def test_allowlist_and_gpu_power_never(tmp_path):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    a = tuner(tmp_path, allow=["hugepages"], hold_windows=1)
    for _ in range(3):
        assert a.observe(report(io_starved())) == []  # readahead is not allowed
    b = tuner(tmp_path, allow=["power"], hold_windows=1)
    for _ in range(3):
        assert b.observe(report(gpu_throttled())) == []  # only GPU keys: dropped, nothing left to do
    assert knob_values(tmp_path) == before
    with pytest.raises(ValueError, match="autotune may not use gpu"):
        tuner(tmp_path, allow=["gpu"])
    with pytest.raises(ValueError, match="profile"):
        tuner(tmp_path, allow=["profile"])


def test_a_failing_change_is_rolled_back_and_reported(tmp_path):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    from tests.support.tuners_support import RejectingHost

    before = knob_values(tmp_path)
    # the kernel refuses dm-0's value after sda was changed: the transaction must put sda back
    a = Autotuner(RejectingHost(str(tmp_path), reject="dm-0/queue/read_ahead_kb"), allow=["readahead"],
                  hold_windows=1)
    bad = io_starved()
    (c,) = a.observe(report(bad))
    assert not c.ok and c.reason and a.failures_total == 1
    assert knob_values(tmp_path) == before
    assert a.observe(report(bad)) == []  # not retried every window
