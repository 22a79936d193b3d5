"""Young jobs get the verdict of what they do from their first steady seconds: start-up only with
positive evidence (stacks under imports or model construction, a GPU context created by a busy
process, GPU memory climbing), never from age alone. Job identity: programs run one after another
are separate jobs; a launcher's ranks are one."""

from __future__ import annotations

from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.findings import Report
from nodetune.diagnosis.jobs import group_jobs
from tests.support.windows import ProcLoad, ThreadLoad, WindowBuilder

DISPATCH = ["<module> (infer.py)", "main (infer.py)", "Module._call_impl (torch/nn/modules/module.py)"]
LOADING = ["<module> (train.py)", "main (train.py)", "__next__ (torch/utils/data/dataloader.py)",
           "_next_data (torch/utils/data/dataloader.py)"]
SLEEPING = ["<module> (serve.py)", "main (serve.py)", "wait (threading.py)"]
IMPORTS = ["<module> (train.py)", "_find_and_load (<frozen importlib._bootstrap>)"]
BUILD = ["<module> (train.py)", "main (train.py)",
         "GPT2LMHeadModel.__init__ (transformers/models/gpt2/modeling_gpt2.py)"]


def run(b: WindowBuilder) -> Report:
    topo, win = b.build()
    return diagnose(topo, win, Thresholds())


def young(pid: int = 100, cpu: float = 100, **kw: object) -> ProcLoad:
    return ProcLoad(pid=pid, gpus=[0], threads=[ThreadLoad(pid, "python", cpu)], age_s=7.0, **kw)  # type: ignore[arg-type]


def test_young_launch_bound_inference_is_launch_bound_not_startup():
    # timm/generate() at batch 1, 7 s old: 25% busy, SMs 8%, the thread saturated dispatching.
    b = WindowBuilder().gpu(0, util=25, sm=8, tensor=1).proc(young()).stack(100, [(DISPATCH, 200)], at=(0, 10))
    r = run(b)
    assert r.gpus[0].verdict == "launch_bound"
    assert "startup" not in {f.kind for f in r.findings}


def test_young_job_starved_from_its_first_batch_is_data_starved():
    b = WindowBuilder().gpu(0, busy_pattern=[0, 0, 9, 0, 0, 0, 8, 0, 0, 0, 7], sm=2).proc(young(cpu=10))
    for w in range(4):
        b.proc(ProcLoad(pid=200 + w, gpus=[0], role="worker", parent=100, threads=[ThreadLoad(200 + w, "python", 97)],
                        age_s=6.0))
    r = run(b.stack(100, [(LOADING, 200)], at=(0, 10)))
    g = r.gpus[0]
    assert (g.verdict, g.cause) == ("data_starved", "cpu_input")
    assert g.attribution is not None and g.attribution.share("startup") == 0.0


def test_young_process_holding_memory_with_no_work_is_idle_allocated():
    b = (WindowBuilder(seconds=40).gpu(0, util=0, sm=0, mem_used_gib=30).proc(young(cpu=0))
         .stack(100, [(SLEEPING, 400)], at=(0, 40)))
    r = run(b)
    assert r.gpus[0].verdict == "idle_allocated"
    assert "startup" not in {f.kind for f in r.findings}


def test_young_pageable_copies_are_transfer_bound():
    # 5 GiB/s of pageable copies on a Gen5 x16 link (8% of it), SMs idle.
    b = (WindowBuilder().gpu(0, util=10, sm=0.1, pcie_rx=5000).proc(young())
         .stack(100, [(["<module> (load.py)", "main (load.py)"], 200)], at=(0, 10)))
    assert run(b).gpus[0].verdict == "transfer_bound"


def test_young_idle_gpu_without_evidence_is_not_startup():
    # A 7-s-old process, GPU idle, its context older than the window, no stacks: no evidence of
    # start-up, so no start-up (the report says what it saw, not a guess).
    r = run(WindowBuilder().gpu(0, util=0, sm=0, mem_used_gib=30).proc(young(cpu=0)))
    assert r.gpus[0].verdict != "startup"
    assert "startup" not in {f.kind for f in r.findings}


def test_stall_building_the_model_then_busy_is_startup_then_compute_bound():
    # transformers GPT-2: 6 s building the model (stacks), then 4 s at 100% on tensor pipes.
    pattern = [0.0] * 7 + [100.0] * 4
    b = (WindowBuilder().gpu(0, busy_pattern=pattern, sm=95, tensor=90, gpm_follows=True).proc(young())
         .stack(100, [(BUILD, 120)], at=(0, 6)).stack(100, [(DISPATCH, 80)], at=(6, 10)))
    g = run(b).gpus[0]
    assert g.verdict == "compute_bound"
    assert g.summary.startswith("first 6.0 s: start-up (GPT2LMHeadModel.__init__")


def test_whole_window_of_imports_is_startup_by_stacks():
    b = WindowBuilder().gpu(0, util=0, sm=0).proc(young()).stack(100, [(IMPORTS, 200)], at=(0, 10))
    r = run(b)
    g = r.gpus[0]
    assert g.verdict == "startup"
    f = next(f for f in r.findings if f.kind == "startup")
    assert "stacks" in f.evidence["basis"] and "process_age" not in f.evidence["basis"]


def test_import_reads_are_startup_not_data_loading():
    b = (WindowBuilder(seconds=20).gpu(0, busy_pattern=[0.0] * 13 + [100.0] * 8, sm=95, tensor=90, gpm_follows=True)
         .proc(young(read_mibps=40)).stack(100, [(IMPORTS, 240)], at=(0, 12))
         .stack(100, [(DISPATCH, 160)], at=(12, 20)))
    g = run(b).gpus[0]
    assert g.verdict == "compute_bound"
    assert "loading" not in g.summary


def test_pending_process_with_cuda_loaded_is_startup():
    # No GPU context yet: NVML lists nothing; the process has loaded CUDA (role pending) and imports.
    b = WindowBuilder().gpu(0, util=0, sm=0)
    b.proc(ProcLoad(pid=100, gpus=[0], role="pending", threads=[ThreadLoad(100, "python", 100)], age_s=2.0))
    r = run(b.stack(100, [(IMPORTS, 200)], at=(0, 10)))
    g = r.gpus[0]
    assert g.verdict == "startup" and "no GPU context yet" in g.summary
    assert r.jobs and r.jobs[0].verdict == "startup"


def test_programs_run_one_after_another_are_separate_jobs():
    b = WindowBuilder(seconds=10).gpu(0, util=100, sm=90, tensor=80)
    b.proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 100)], exits_at=4, age_s=30, pgid=50))
    b.proc(ProcLoad(pid=101, gpus=[0], threads=[ThreadLoad(101, "python", 100)], age_s=-5, pgid=50))
    _, win = b.build()
    for p in win.processes:
        p.ppid = 50  # both children of one script
    jobs = group_jobs(win)
    assert len(jobs) == 2 and all(j.id.startswith("pid:") and "@" in j.id for j in jobs)


def test_ranks_of_a_launcher_are_one_job():
    b = WindowBuilder(gpus=2).gpu(0, util=100, sm=90, tensor=80).gpu(1, util=100, sm=90, tensor=80)
    b.proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 100)], age_s=30, pgid=50))
    b.proc(ProcLoad(pid=101, gpus=[1], threads=[ThreadLoad(101, "python", 100)], age_s=30, pgid=50))
    _, win = b.build()
    for p in win.processes:
        p.ppid = 50
    jobs = group_jobs(win)
    assert len(jobs) == 1 and jobs[0].id.startswith("ranks:50@") and jobs[0].gpus == [0, 1]


def test_two_different_modules_under_one_parent_are_not_ranks():
    # `python -m a` and `python -m b` started together by one script: two programs, two jobs.
    b = WindowBuilder(gpus=2).gpu(0, util=100, sm=90, tensor=80).gpu(1, util=100, sm=90, tensor=80)
    b.proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 100)], age_s=30, pgid=50,
                    cmd="python -m trainer.a"))
    b.proc(ProcLoad(pid=101, gpus=[1], threads=[ThreadLoad(101, "python", 100)], age_s=30, pgid=50,
                    cmd="python -m trainer.b"))
    _, win = b.build()
    for p in win.processes:
        p.ppid = 50
    assert len(group_jobs(win)) == 2


def test_workers_read_every_few_samples_still_explain_idle_time():
    # The agent reads loader workers every 5th sample: each interval between two readings gets the
    # CPU rate the readings show, so saturated workers still name the idle time (counters).
    b = WindowBuilder(seconds=20).gpu(0, util=20, sm=8, tensor=5).proc(
        ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 15)]))
    for w in range(4):
        b.proc(ProcLoad(pid=200 + w, gpus=[0], role="worker", parent=100, threads=[ThreadLoad(200 + w, "python", 97)]))
    topo, win = b.build()
    for k, s in enumerate(win.samples):
        if k % 5:
            s.processes = [p for p in s.processes if p.pid < 200]
    r = diagnose(topo, win, Thresholds())
    att = r.gpus[0].attribution
    assert att is not None and att.share("data_loading") >= 0.5
    assert "counters" in next(c for c in att.causes if c.cause == "data_loading").basis


def test_cpu_only_torch_script_is_not_start_up_past_a_minute():
    # `import torch` maps libtorch_cuda: a CPU-only script looks pending. Busy on the CPU with no
    # context at 90 s old is not a GPU job starting up.
    b = WindowBuilder(seconds=10).gpu(0, util=0, sm=0)
    b.proc(ProcLoad(pid=100, gpus=[0], role="pending", threads=[ThreadLoad(100, "python", 100)], age_s=90.0))
    r = run(b)
    assert r.gpus[0].verdict != "startup"
    young_b = WindowBuilder(seconds=10).gpu(0, util=0, sm=0)
    young_b.proc(ProcLoad(pid=100, gpus=[0], role="pending", threads=[ThreadLoad(100, "python", 100)], age_s=5.0))
    assert run(young_b).gpus[0].verdict == "startup"
