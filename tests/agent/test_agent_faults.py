"""Faults while the agent runs: each keeps it serving, shows as a metric, and is logged once."""

from __future__ import annotations

import logging
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from nodetune.agent.kmsg import parse_xid
from tests.support.agent_support import (
    BUSY_GPM,
    JOB_PID,
    busy_node,
    parse,
    scrape_text,
    start_agent,
    value,
    wait_for,
)
from tests.support.fakenvml import FakeNvml, hgx_gpus
from tests.support.faketree import Preset


def _log_lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


def test_nvml_field_errors_mid_run_are_missing_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    r = start_agent(tmp_path)
    try:
        wait_for(lambda: r.agent.state.view.samples_total > 2)
        r.nvml.gpus[0].fail["nvmlDeviceGetPowerUsage"] = 999
        n = r.agent.state.view.samples_total
        wait_for(lambda: r.agent.state.view.samples_total > n + 2)
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_gpu_power_watts", gpu="0") is None  # absent, not a fake 0
        assert value(m, "nodetune_gpu_utilization_ratio", gpu="0") == pytest.approx(0.97)
        assert value(m, "nodetune_gpu_missing_fields", gpu="0") >= 1
        assert value(m, "nodetune_gpu_state", gpu="0", state="ok") == 1.0
    finally:
        r.stop()


def test_a_probe_that_raises_is_counted_by_probe_and_logged_once(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    class Broken(FakeNvml):
        broken = False

        def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
            if self.broken:
                raise RuntimeError("driver returned garbage")
            return super().nvmlDeviceGetComputeRunningProcesses(h)

    def node(root: Path) -> tuple[Preset, FakeNvml]:
        p, nv = busy_node(root)
        return p, Broken(nv.gpus)

    r = start_agent(tmp_path, node=node)
    try:
        wait_for(lambda: r.agent.state.view.samples_total > 2)
        r.nvml.broken = True  # type: ignore[attr-defined]
        wait_for(lambda: r.agent.state.view.sample_errors.get("nvml_backend", 0) >= 3, what="errors counted")
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_agent_sample_errors_total", probe="nvml_backend") >= 3
        assert len(_log_lines(caplog, "sample failed in probe nvml_backend")) == 1
        r.nvml.broken = False  # type: ignore[attr-defined]
        n = r.agent.state.view.samples_total
        wait_for(lambda: r.agent.state.view.samples_total > n, what="recovery")
    finally:
        r.stop()


def test_gpu_lost_mid_run_is_a_state_and_a_verdict(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    r = start_agent(tmp_path)
    try:
        wait_for(lambda: r.agent.state.view.report is not None)
        r.nvml.gpus[0].lost_after_samples = 0
        wait_for(lambda: r.agent.state.view.gpu_states.get(0) == "lost", what="lost state")
        wait_for(lambda: any(g.verdict == "gpu_lost" for g in (r.agent.state.view.report.gpus or [])),
                 what="gpu_lost verdict")
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_gpu_state", gpu="0", state="lost") == 1.0
        assert value(m, "nodetune_gpu_verdict", gpu="0", verdict="gpu_lost") == 1.0
        assert value(m, "nodetune_agent_topology_reprobes_total") >= 1
        assert len(_log_lines(caplog, "GPU 0: lost")) == 1
        assert r.thread.is_alive()
    finally:
        r.stop()


def test_a_sysfs_or_procfs_file_vanishing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    r = start_agent(tmp_path)
    try:
        wait_for(lambda: r.agent.state.view.samples_total > 2)
        before = r.agent.state.view.missing_fields["io"]
        (r.root / "proc/pressure/io").unlink()
        wait_for(lambda: r.agent.state.view.missing_fields["io"] > before, what="io missing")
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_agent_probe_missing_fields", probe="io") > before
        assert value(m, "nodetune_pressure_stalled_seconds_total", resource="io", kind="some") is None
        assert value(m, "nodetune_pressure_stalled_seconds_total", resource="cpu", kind="some") is not None
        assert len(_log_lines(caplog, "probe io:")) == 1
    finally:
        r.stop()


def test_scrape_while_the_sampler_is_stuck(tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()

    class Stuck(FakeNvml):
        def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
            gate.wait(30)
            return super().nvmlDeviceGetUtilizationRates(h)

    def node(root: Path) -> tuple[Preset, FakeNvml]:
        p, nv = busy_node(root)
        return p, Stuck(nv.gpus)

    r = start_agent(tmp_path, node=node)
    try:
        wait_for(lambda: r.agent.state.view.samples_total > 2)
        gate.clear()
        time.sleep(0.5)  # the loop is now blocked inside NVML
        stamps = []
        for _ in range(3):
            t0 = time.monotonic()
            m = parse(scrape_text(r.url, timeout=2))
            assert time.monotonic() - t0 < 0.5
            stamps.append(value(m, "nodetune_agent_last_sample_timestamp_seconds"))
            time.sleep(0.3)
        assert stamps[0] == stamps[-1]  # stale, and the scrape says so
        assert value(m, "nodetune_gpu_utilization_ratio", gpu="0") == pytest.approx(0.97)  # the last good sample
    finally:
        gate.set()
        r.stop()


def test_kmsg_unreadable_is_a_metric_and_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def node(root: Path) -> tuple[Preset, FakeNvml]:
        got = busy_node(root)
        (root / "dev/kmsg").mkdir(parents=True)  # a directory: open works, read fails (EISDIR)
        return got

    r = start_agent(tmp_path, node=node)
    try:
        wait_for(lambda: not r.agent.state.view.kmsg_up and r.agent.state.view.kmsg_reason != "not started")
        wait_for(lambda: r.agent.state.view.samples_total > 2)
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_agent_kmsg_up") == 0.0
        assert len(_log_lines(caplog, "Xid events not counted")) == 1
    finally:
        r.stop()


def test_xid_events_counted_per_gpu_and_code(tmp_path: Path) -> None:
    def node(root: Path) -> tuple[Preset, FakeNvml]:
        got = busy_node(root)
        (root / "dev").mkdir(parents=True, exist_ok=True)
        (root / "dev/kmsg").write_text(
            "4,1001,5000000,-;NVRM: Xid (PCI:0000:00:05): 79, pid=4242, name=python3, GPU has fallen off the bus.\n"
            "4,1002,5000001,-;NVRM: Xid (PCI:0000:00:05): 13, pid=4242, Graphics Exception\n"
            "6,1003,5000002,-;eth0: link up\n")
        return got

    r = start_agent(tmp_path, node=node)
    try:
        wait_for(lambda: len(r.agent.state.view.xid) == 2, what="two Xid codes")
        with open(r.root / "dev/kmsg", "a") as fh:
            fh.write("4,1004,5000003,-;NVRM: Xid (PCI:0000:00:05): 79, pid=4242, GPU has fallen off the bus.\n"
                     "4,1005,5000004,-;NVRM: Xid (PCI:0000:3b:00): 48, DBE\n")
        wait_for(lambda: r.agent.state.view.xid.get(("0", "79")) == 2, what="appended Xid")
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_gpu_xid_errors_total", gpu="0", code="79") == 2
        assert value(m, "nodetune_gpu_xid_errors_total", gpu="0", code="13") == 1
        assert value(m, "nodetune_gpu_xid_errors_total", gpu="other", code="48") == 1  # not in the topology
        assert value(m, "nodetune_agent_kmsg_up") == 1.0
    finally:
        r.stop()


def test_parse_xid() -> None:
    assert parse_xid("NVRM: Xid (PCI:0000:18:00): 79, pid=1, GPU has fallen off the bus.") == ("0000:18:00", "79")
    assert parse_xid("NVRM: Xid (PCI:00000000:9A:00.0): 31, ch 0") == ("0000:9a:00", "31")
    assert parse_xid("usb 1-1: new device") is None


def _fake_pyudev(events: list[tuple[str, str]]) -> types.ModuleType:
    class Dev:
        def __init__(self, sub: str, action: str) -> None:
            self.subsystem, self.action = sub, action

    class Monitor:
        @classmethod
        def from_netlink(cls, ctx: object) -> Monitor:
            return cls()

        def filter_by(self, sub: str) -> None:
            assert sub in ("pci", "block")

        def start(self) -> None:
            return None

        def poll(self, timeout: float) -> Dev | None:
            if events:
                return Dev(*events.pop(0))
            time.sleep(min(timeout, 0.05))
            return None

    mod = types.ModuleType("pyudev")
    mod.Context = object  # type: ignore[attr-defined]
    mod.Monitor = Monitor  # type: ignore[attr-defined]
    return mod


def test_hotplug_event_reprobes_topology(tmp_path: Path) -> None:
    events = [("block", "add"), ("pci", "remove"), ("pci", "bind")]
    mod = _fake_pyudev(events)
    r = start_agent(tmp_path, hotplug_loader=lambda name: mod)
    try:
        wait_for(lambda: r.agent.state.view.topology_reprobes_total >= 1, what="re-probe")
        wait_for(lambda: not events)
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_agent_hotplug_up") == 1.0
        assert value(m, "nodetune_agent_hotplug_events_total", subsystem="block", action="add") == 1
        assert value(m, "nodetune_agent_hotplug_events_total", subsystem="pci", action="remove") == 1
        assert value(m, "nodetune_agent_hotplug_events_total", subsystem="pci", action="bind") is None
    finally:
        r.stop()


def test_no_pyudev_is_a_note_and_a_metric(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    def missing(name: str) -> types.ModuleType:
        raise ImportError("No module named 'pyudev'")

    r = start_agent(tmp_path, hotplug_loader=missing)
    try:
        wait_for(lambda: r.agent.state.view.hotplug_reason not in (None, "not started"))
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_agent_hotplug_up") == 0.0
        assert len(_log_lines(caplog, "hot-plug not watched: udev monitor unavailable: ImportError")) == 1
    finally:
        r.stop()


def test_workers_and_jobs_follow_processes_that_come_and_go(tmp_path: Path) -> None:
    r = start_agent(tmp_path)
    try:
        wait_for(lambda: JOB_PID in r.agent.sampler.infos)
        r.nvml.gpus[0].processes = []
        import shutil
        shutil.rmtree(r.root / f"proc/{JOB_PID}")
        wait_for(lambda: JOB_PID not in r.agent.sampler.infos, what="exited process dropped")
        assert r.agent.sampler.dropped >= 1
    finally:
        r.stop()


def test_gpm_unsupported_gpu_has_no_gpm_series(tmp_path: Path) -> None:
    def node(root: Path) -> tuple[Preset, FakeNvml]:
        p, _ = busy_node(root)
        return p, FakeNvml(hgx_gpus(p.gpu_addresses, nvlinks=[], gpm=None, util_gpu=50, pcie_rx_kb=4096))

    r = start_agent(tmp_path, node=node)
    try:
        wait_for(lambda: r.agent.state.view.samples_total > 2)
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_gpu_sm_active_ratio", gpu="0") is None
        assert value(m, "nodetune_gpu_pcie_receive_bytes_per_second", gpu="0") == 4096 * 1024
        assert BUSY_GPM  # the busy preset is the other tests' GPM
    finally:
        r.stop()
