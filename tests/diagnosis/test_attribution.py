"""Idle-time attribution: every idle GPU second gets a cause from counters or stacks, or is
`unexplained`; the verdict follows what the evidence shows."""

from __future__ import annotations

import pytest

from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.findings import Report
from nodetune.diagnosis.stacks import classify_stack
from tests.support.windows import NicLoad, ProcLoad, ThreadLoad, WindowBuilder

SAVE_STACK = ["<module> (train.py)", "main (train.py)", "save (torch/serialization.py)",
              "_save (torch/serialization.py)", "persistent_id (torch/serialization.py)"]
STEP_STACK = ["<module> (train.py)", "main (train.py)", "Module._call_impl (torch/nn/modules/module.py)",
              "forward (model.py)"]
SYNC_STACK = ["<module> (train.py)", "main (train.py)", "synchronize (torch/cuda/__init__.py)"]
HOST_STACK = ["<module> (train.py)", "main (train.py)", "host_step (train.py)"]
EVAL_STACK = ["<module> (train.py)", "main (train.py)", "evaluate (train.py)",
              "roc_auc_score (sklearn/metrics/_ranking.py)"]
IMPORT_STACK = ["<module> (train.py)", "_find_and_load (<frozen importlib._bootstrap>)",
                "_load_unlocked (<frozen importlib._bootstrap>)", "<module> (torch/__init__.py)"]
LOADER_STACK = ["<module> (train.py)", "_SingleProcessDataLoaderIter.__next__ (torch/utils/data/dataloader.py)",
                "_MapDatasetFetcher.fetch (torch/utils/data/_utils/fetch.py)", "Decode.__getitem__ (train.py)"]

# 1.5 s of steps, then ~6 s writing: the checkpoint job of the issue, sampled every 0.5 s.
CKPT_UTIL = [100, 100, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
CKPT_WRITES = [0, 0, 0, 500, 500, 500, 500, 500, 500, 0, 0, 0, 0, 0, 0]  # MiB/s per sample; then fsync


def run(b: WindowBuilder) -> Report:
    topo, win = b.build()
    return diagnose(topo, win, Thresholds())


def trainer(pid: int = 100, gpus: list[int] | None = None, main_cpu: float = 30.0, **kw: object) -> ProcLoad:
    return ProcLoad(pid=pid, gpus=gpus or [0], threads=[ThreadLoad(pid, "python", main_cpu),
                                                        ThreadLoad(pid + 1, "pt_autograd", 2.0)], **kw)  # type: ignore[arg-type]


def checkpoint_job(stacks: bool = True) -> WindowBuilder:
    b = (WindowBuilder(seconds=7.5, interval=0.5)
         .gpu(0, busy_pattern=CKPT_UTIL, sm=40, tensor=35, mem_used_gib=30)
         .proc(trainer(main_cpu=99, write_mibps=CKPT_WRITES,
                       state_pattern=["R"] * 9 + ["D"] * 6)))
    if stacks:
        b.stack(100, [(SAVE_STACK, 160), (SYNC_STACK, 40)])
    return b


@pytest.mark.parametrize("frames,category", [
    (SAVE_STACK, "checkpoint"), (IMPORT_STACK, "startup"), (EVAL_STACK, "evaluation"), (SYNC_STACK, "synchronization"),
    (STEP_STACK, "gpu_dispatch"), (HOST_STACK, "other"), (LOADER_STACK, "data_loading"),
    (["main (t.py)", "all_reduce (torch/distributed/distributed_c10d.py)"], "communication"),
    (["main (t.py)", "Run.sleep (_common.py)"], "sleeping"),
    (["main (t.py)", "checkpoint (torch/utils/checkpoint.py)", "forward (model.py)"], "gpu_dispatch"),
    (["Connection._poll (multiprocessing/connection.py)", "wait (multiprocessing/connection.py)",
      "_PollLikeSelector.select (selectors.py)"], "data_loading"),
])
def test_stack_categories(frames, category):
    assert classify_stack(frames)[0] == category


def test_checkpoint_job_is_not_called_data_starved():
    # The false alarm: data_starved (cpu_input), critical, num_workers advice, while the
    # stacks said 0% loading. Writes in the idle intervals and torch.save stacks say checkpoint.
    r = run(checkpoint_job())
    g = r.gpus[0]
    assert g.verdict == "checkpoint" and g.cause == "checkpoint"
    kinds = {f.kind for f in r.findings}
    assert "data_starved" not in kinds
    f = next(f for f in r.findings if f.kind == "checkpoint")
    assert f.severity == "critical" and set(f.evidence["basis"]) == {"counters", "stacks"}
    assert not any("num_workers" in a.text for a in f.advice)
    a = g.attribution
    assert a is not None and a.share("checkpoint") >= 0.7 and a.unexplained_share <= 0.15
    assert "writing a checkpoint" in a.text and "GiB written" in a.text and "save" in a.text


def test_checkpoint_from_counters_alone_without_pyspy():
    b = checkpoint_job(stacks=False).stack(100, [], ok=False, reason="py-spy not installed")
    r = run(b)
    assert r.gpus[0].verdict == "checkpoint"
    a = r.gpus[0].attribution
    assert a is not None and a.causes[0].basis == ["counters"] and any("py-spy not installed" in n for n in a.notes)


def test_half_compute_half_host_work_names_the_frame():
    # 1 s of matmul, 1 s of CPU work: GPU idle half the time: the CPU work is the cause.
    b = (WindowBuilder(seconds=10, interval=0.5).gpu(0, busy_pattern=[100, 100, 0, 0], sm=90, tensor=80)
         .proc(trainer(main_cpu=100)).stack(100, [(HOST_STACK, 100), (SYNC_STACK, 100)]))
    r = run(b)
    g = r.gpus[0]
    assert (g.verdict, g.cause) == ("host_other", "host_code")
    f = next(f for f in r.findings if f.kind == "host_other")
    assert f.evidence["top_frame"] == "host_step"
    assert g.attribution is not None and g.attribution.unexplained_share < 0.15
    assert "data_starved" not in {f.kind for f in r.findings}


def test_cpu_side_evaluation():
    b = (WindowBuilder(seconds=10, interval=0.5).gpu(0, busy_pattern=[100, 0, 0, 0], sm=90, tensor=80)
         .proc(trainer(main_cpu=100)).stack(100, [(EVAL_STACK, 150), (STEP_STACK, 50)]))
    r = run(b)
    assert (r.gpus[0].verdict, r.gpus[0].cause) == ("host_other", "evaluation")


def test_loading_evidence_keeps_data_starved():
    b = (WindowBuilder().gpu(0, busy_pattern=[0, 0, 0, 0, 12], sm=1).proc(trainer(main_cpu=99))
         .stack(100, [(LOADER_STACK, 90), (STEP_STACK, 10)]))
    r = run(b)
    assert (r.gpus[0].verdict, r.gpus[0].cause) == ("data_starved", "cpu_input")
    a = r.gpus[0].attribution
    assert a is not None and a.causes[0].cause == "data_loading"


def test_startup_job_young_and_importing():
    # Diagnosed 2 s after launch: imports, no GPU work yet.
    b = (WindowBuilder(seconds=5, interval=0.5).gpu(0, util=0, sm=0, mem_used_gib=0.5)
         .proc(trainer(main_cpu=100, age_s=2)).stack(100, [(IMPORT_STACK, 100)]))
    r = run(b)
    g = r.gpus[0]
    assert g.verdict == "startup"
    f = next(f for f in r.findings if f.kind == "startup")
    assert f.severity == "info" and "process 2 s old" in f.summary
    assert not r.jobs[0].healthy and r.worst_severity() == "info"


def test_no_evidence_is_unknown_and_never_critical():
    b = WindowBuilder().gpu(0, util=0, sm=0, mem_used_gib=0.5).proc(trainer(main_cpu=50))
    r = run(b)
    f = next(f for f in r.findings if f.kind == "data_starved")
    assert f.cause == "unknown" and f.severity == "warning"
    assert r.gpus[0].attribution is not None and r.gpus[0].attribution.unexplained_share >= 0.9


def test_info_notes_never_make_a_job_unhealthy():
    # Power-capped at the default limit (every busy H200 window): info, and the job stays healthy.
    b = (WindowBuilder().gpu(0, util=99, sm=96, tensor=93, reasons=["sw_power_cap"], power=692, limit=700)
         .proc(trainer()))
    r = run(b)
    assert r.gpus[0].healthy and r.jobs[0].healthy and r.healthy is True
    assert "healthy" in r.gpus[0].summary and r.worst_severity() == "info"


def test_summary_never_says_healthy_when_not():
    b = WindowBuilder().gpu(0, util=100, sm=95, tensor=85, reasons=["sw_power_cap"], power=495, limit=500)
    r = run(b.proc(trainer()))
    assert not r.gpus[0].healthy and r.healthy is False
    assert "and healthy" not in r.gpus[0].summary and "not healthy: throttled" in r.gpus[0].summary


def test_pinning_advice_only_where_threads_run_remote():
    starved = dict(busy_pattern=[0, 0, 0, 0, 12], sm=1)
    b = (WindowBuilder(gpus=2, numa_nodes=2, cpus=32).gpu(0, **starved)
         .proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 99, processor=20)]))
         .stack(100, [(LOADER_STACK, 90), (STEP_STACK, 10)]))
    f = next(f for f in run(b).findings if f.kind == "data_starved")
    assert any(a.tuner == "pinning" for a in f.advice)
    local = (WindowBuilder(gpus=2, numa_nodes=2, cpus=32).gpu(0, **starved)
             .proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 99, processor=3)]))
             .stack(100, [(LOADER_STACK, 90), (STEP_STACK, 10)]))
    f = next(f for f in run(local).findings if f.kind == "data_starved")
    assert not any(a.tuner == "pinning" for a in f.advice)


def test_worker_advice_counts_cpus_actually_free():
    b = (WindowBuilder().host_load(cpu_busy=95).gpu(0, busy_pattern=[0, 0, 0, 0, 12], sm=1).proc(trainer(main_cpu=99))
         .stack(100, [(LOADER_STACK, 90), (STEP_STACK, 10)]))
    topo, win = b.build()
    from nodetune.probes.cpu import CpuTimes
    for k, s in enumerate(win.samples):  # per-CPU counters: 15 of 16 CPUs busy, one idle
        s.cpu.per_cpu = [CpuTimes(c, user=k * 100 if c else 0, idle=0 if c else k * 100) for c in range(16)]
    f = next(f for f in diagnose(topo, win).findings if f.kind == "data_starved")
    assert not any("num_workers=" in a.text for a in f.advice)
    assert any("busy" in a.text and "decode on the GPU" in a.text for a in f.advice)


def test_straggler_names_the_slow_gpu_and_rank():
    b = WindowBuilder(gpus=4, seconds=10, interval=0.5)
    for i in range(4):
        slow = i == 2
        b.gpu(i, busy_pattern=[100, 0, 0, 0] if slow else [100], sm=50 if slow else 20, tensor=40 if slow else 5,
              power=400 if slow else 250)
        b.proc(ProcLoad(pid=100 + i, gpus=[i], cgroup="/system.slice/slurmstepd.scope/job_42/step_0",
                        threads=[ThreadLoad(100 + i, "python", 100 if slow else 40)]))
        b.stack(100 + i, [(HOST_STACK, 150), (SYNC_STACK, 50)] if slow else
                [(["main (t.py)", "all_reduce (torch/distributed/distributed_c10d.py)"], 180), (SYNC_STACK, 20)])
    r = run(b)
    f = next(f for f in r.findings if f.kind == "straggler")
    assert f.gpus == [2] and f.pids == [102] and f.evidence["peer_communication_stack_share"] >= 0.8
    assert r.gpus[2].verdict == "straggler"
    assert "GPU2 (pid 102)" in f.summary


def test_no_straggler_when_ranks_are_even():
    b = WindowBuilder(gpus=2)
    for i in (0, 1):
        b.gpu(i, util=100, sm=95, tensor=90)
        b.proc(ProcLoad(pid=100 + i, gpus=[i], cgroup="/system.slice/slurmstepd.scope/job_42/step_0",
                        threads=[ThreadLoad(100 + i, "python", 50)]))
    assert "straggler" not in {f.kind for f in run(b).findings}


def test_nic_traffic_makes_a_multi_node_job_communication_bound():
    # One GPU here, peers on other nodes: the InfiniBand port next to the GPU runs near its rate.
    b = (WindowBuilder().gpu(0, util=95, sm=12, tensor=2, power=200)
         .proc(trainer(main_cpu=100))
         .nic(NicLoad("mlx5_0", rate_gbps=400, rx_mibps=30000, tx_mibps=30000, near_gpus=[0], xmit_wait_share=0.3))
         .nic(NicLoad("eth0", kind="ethernet", rate_gbps=25, rx_mibps=1, tx_mibps=1)))
    r = run(b)
    assert r.gpus[0].verdict == "communication_bound"
    f = next(f for f in r.findings if f.kind == "communication_bound")
    assert f.evidence["nic"] == "mlx5_0/1" and f.evidence["nic_link_share"] == pytest.approx(0.63, abs=0.01)
    assert any("credits" in n for n in f.notes)
    quiet = (WindowBuilder().gpu(0, util=95, sm=12, tensor=2, power=200).proc(trainer(main_cpu=100))
             .nic(NicLoad("mlx5_0", rx_mibps=10, tx_mibps=10, near_gpus=[0])))
    assert "communication_bound" not in {f.kind for f in run(quiet).findings}


def test_nic_probe_reads_real_layouts(tmp_path):
    from nodetune.diagnosis.host_stats import nic_stats
    from nodetune.probes.host import Host
    from nodetune.probes.nic import probe_nics
    from nodetune.probes.snapshot import Sample
    from tests.support.faketree import dgx_h100

    fn = dgx_h100(tmp_path).node
    fn.ib_counters("mlx5_0", rcv_bytes=4_000_000, xmit_bytes=8_000_000, xmit_wait=100,
                   hw={"np_cnp_sent": 5, "out_of_sequence": 0})
    fn.net_counters("ibp25s0", rx_bytes=1000, tx_bytes=2000, speed=400000)
    host = Host(str(tmp_path))
    a = probe_nics(host)
    ib = next(p for p in a.ports if p.device == "mlx5_0")
    assert (ib.rx_bytes, ib.tx_bytes, ib.rate_gbps, ib.state, ib.link_layer) == (4_000_000, 8_000_000, 400.0,
                                                                                 "ACTIVE", "InfiniBand")
    assert ib.counters["port_xmit_wait"] == 100 and ib.counters["np_cnp_sent"] == 5
    eth = next(p for p in a.ports if p.device == "ibp25s0")
    assert (eth.kind, eth.rx_bytes, eth.rate_gbps) == ("ethernet", 1000, 400.0)
    # one second later: 25 GB/s received on mlx5_0
    fn.ib_counters("mlx5_0", rcv_bytes=4_000_000 + 25 * 10**9, xmit_bytes=8_000_000, xmit_wait=100,
                   hw={"np_cnp_sent": 9, "out_of_sequence": 0})
    b = probe_nics(host)
    mk = lambda t, n: Sample(t=t, wall="", cpu=None, memory=None, io=None, thermal=None, nics=n)  # type: ignore[arg-type]  # noqa: E731
    st = next(n for n in nic_stats([mk(0.0, a), mk(1.0, b)]) if n.device == "mlx5_0/1")
    assert st.rx_mibps == pytest.approx(25e9 / 2**20, rel=1e-3) and st.link_share == pytest.approx(0.5, abs=0.01)
    assert st.errors == {"np_cnp_sent": 4}


def test_node_without_nics_probes_cleanly(tmp_path):
    from nodetune.probes.host import Host
    from nodetune.probes.nic import probe_nics
    from tests.support.faketree import laptop

    laptop(tmp_path)
    s = probe_nics(Host(str(tmp_path)))
    assert all(p.kind == "ethernet" for p in s.ports)
