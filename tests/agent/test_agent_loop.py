"""The agent's loop on a fake H200 node with fake NVML: samples, diagnoses, serves what NVML said."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetune.agent.state import JobBook
from nodetune.diagnosis.findings import JobReport, Report
from tests.support.agent_support import JOB_PID, parse, scrape_text, start_agent, value, wait_for
from tests.support.faketree import laptop


@pytest.fixture
def running(tmp_path: Path):
    r = start_agent(tmp_path)
    yield r
    r.stop()


def test_metrics_reflect_fake_nvml(running) -> None:
    wait_for(lambda: running.agent.state.view.report is not None, what="first diagnosis")
    m = parse(scrape_text(running.url))
    g = {"gpu": "0"}
    assert value(m, "nodetune_gpu_utilization_ratio", **g) == pytest.approx(0.97)
    assert value(m, "nodetune_gpu_sm_active_ratio", **g) == pytest.approx(0.96)
    assert value(m, "nodetune_gpu_tensor_active_ratio", **g) == pytest.approx(0.93)
    assert value(m, "nodetune_gpu_dram_bandwidth_ratio", **g) == pytest.approx(0.17)
    assert value(m, "nodetune_gpu_power_watts", **g) == 350.0
    assert value(m, "nodetune_gpu_energy_joules_total", **g) == pytest.approx(123456.789)
    assert value(m, "nodetune_gpu_temperature_celsius", gpu="0", sensor="gpu") == 61.0
    assert value(m, "nodetune_gpu_sm_clock_hertz", **g) == 1980e6
    assert value(m, "nodetune_gpu_pcie_receive_bytes_per_second", **g) == 29 * 2**20
    assert value(m, "nodetune_gpu_clock_event_reason", gpu="0", reason="sw_power_cap") == 0.0
    assert value(m, "nodetune_gpu_state", gpu="0", state="ok") == 1.0
    assert value(m, "nodetune_gpu_ecc_errors_total", gpu="0", type="uncorrected") == 0.0
    assert value(m, "nodetune_gpu_info", gpu="0", name="NVIDIA H100 80GB HBM3",
                 uuid="GPU-00000000-aaaa-bbbb-cccc-dddddddddddd", bus_id="0000:00:05.0", architecture="hopper",
                 numa_node="-1", pcie_max_gen="5", pcie_max_width="16") == 1.0
    assert value(m, "nodetune_gpu_verdict", gpu="0", verdict="compute_bound") == 1.0
    assert value(m, "nodetune_gpu_verdict", gpu="0", verdict="data_starved") == 0.0
    assert value(m, "nodetune_pressure_stalled_seconds_total", resource="io", kind="some") == pytest.approx(0.002)
    assert value(m, "nodetune_disk_read_bytes_total", device="vda") == 240000 * 512
    assert value(m, "nodetune_agent_last_sample_timestamp_seconds") > 0
    assert all(v == 1.0 for (n, _), v in m.items() if n == "nodetune_agent_collector_success")
    assert not any("pid" in dict(labels) for _, labels in m)  # never a pid label


def test_job_verdict_seconds_grow_and_name_the_slurm_job(running) -> None:
    wait_for(lambda: running.agent.state.view.diagnoses_total >= 2, what="two diagnoses")
    m = parse(scrape_text(running.url))
    secs = value(m, "nodetune_job_verdict_seconds_total", job_id="slurm:1234.0", verdict="compute_bound")
    assert secs is not None and secs > 0.5
    assert value(m, "nodetune_job_gpu", job_id="slurm:1234.0", gpu="0") == 1.0
    assert running.agent.state.view.followed >= 1 and JOB_PID in running.agent.sampler.infos


def test_ring_stays_bounded_and_rolls(running) -> None:
    a = running.agent
    maxlen = a.state.ring.maxlen
    assert maxlen is not None and maxlen <= 20  # window_s 2 / 0.15 s, plus two
    wait_for(lambda: a.state.view.samples_total > maxlen + 5, what="ring wrap")
    assert len(a.state.ring) == maxlen
    assert len(a.sampler._window_pids) <= len(a.sampler.infos) + 1  # rolled: only what is alive carries over


def test_scrape_renders_once_per_state_version(running) -> None:
    wait_for(lambda: running.agent.state.view.samples_total > 2)
    a = running.agent
    a.stop_event.set()  # freeze the state: no more samples
    running.thread.join(timeout=3)
    assert scrape_text(running.url) == scrape_text(running.url)


def test_no_gpu_laptop_serves_host_series(tmp_path: Path) -> None:
    def node(root: Path):
        from tests.support.fakenvml import FakeNvml
        return laptop(root), FakeNvml([], init_error=12)

    r = start_agent(tmp_path, node=node)
    try:
        wait_for(lambda: r.agent.state.view.report is not None)
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_pressure_stalled_seconds_total", resource="cpu", kind="some") is not None
        info = [labels for (n, labels) in m if n == "nodetune_topology_info"]
        assert info and dict(info[0])["gpu_backend"] == "none"
        assert not any(n.startswith("nodetune_gpu_utilization") for n, _ in m)
    finally:
        r.stop()


def test_job_book_expires_ended_jobs_and_caps_count() -> None:
    book = JobBook(retention_s=10, max_jobs=2)

    def rep(*ids: str) -> Report:
        return Report(1, "t", "", 1, 0, None, "nvml", jobs=[JobReport(i, "slurm", None, "", [], [0], "compute_bound",
                                                                         None, True) for i in ids])

    book.add(rep("a"), 1.0, now=0)
    book.add(rep("a", "b"), 1.0, now=5)
    assert {j.job: j.seconds["compute_bound"] for j in book.rows()} == {"a": 2.0, "b": 1.0}
    book.add(rep("b"), 1.0, now=12)  # a last seen at 5: 7 s ago, kept
    book.add(rep("b"), 1.0, now=16)  # 11 s ago: gone
    assert [j.job for j in book.rows()] == ["b"]
    book.add(rep("c", "d", "e"), 1.0, now=17)
    assert len(book.rows()) == 2


def test_history_and_autotune_from_the_loop(tmp_path: Path) -> None:
    """The agent writes each diagnosis to the job history; autotune off by default changes nothing."""
    from nodetune.agent.history import History

    r = start_agent(tmp_path)
    try:
        wait_for(lambda: r.agent.state.view.history_writes_total >= 2, 20)
        m = parse(scrape_text(r.url))
        assert value(m, "nodetune_agent_history_up") == 1.0
        assert (value(m, "nodetune_agent_history_writes_total") or 0) >= 2
        assert not any(name == "nodetune_tuning_changes_total" for name, _ in m)  # autotune is off
    finally:
        r.stop()
    h = History(str(r.root / "var/lib/nodetune/history.sqlite")).open(create=False)
    (job,) = h.jobs()
    assert job.job.startswith("slurm") and sum(job.seconds.values()) > 0
    assert h.integrity() == "ok"
    h.close()
