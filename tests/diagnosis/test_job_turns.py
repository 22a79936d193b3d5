"""Jobs that take turns on one GPU (a script running short programs one after another): each gets
the verdict of its own span, the GPU the verdict of the job holding it at the window's end, and a
job's history rows cover only the seconds it was there."""

from __future__ import annotations

from nodetune.agent.history import History
from nodetune.agent.state import JobBook
from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.findings import Report
from tests.support.windows import ProcLoad, ThreadLoad, WindowBuilder

SLEEPING = ["<module> (serve.py)", "main (serve.py)", "wait (threading.py)"]


def turns_report() -> Report:
    # a.py trains for 20 s and exits; b.py starts a second later and holds memory, doing nothing.
    b = WindowBuilder(seconds=40).gpu(0, busy_pattern=[100] * 20 + [0] * 21, sm=90, tensor=80, gpm_follows=True,
                                       mem_used_gib=30)
    b.proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 100)], exits_at=20, age_s=300,
                    cmd="python a.py"))
    b.proc(ProcLoad(pid=101, gpus=[0], threads=[ThreadLoad(101, "python", 0)], age_s=-21, cmd="python b.py"))
    b.stack(101, [(SLEEPING, 200)], at=(21, 40))
    topo, win = b.build()
    return diagnose(topo, win, Thresholds())


def test_each_job_gets_the_verdict_of_its_own_turn():
    r = turns_report()
    jobs = {j.command: j for j in r.jobs}
    assert jobs["python a.py"].verdict == "compute_bound"
    assert jobs["python b.py"].verdict == "idle_allocated"
    assert jobs["python a.py"].span_s == [0.0, 19.0]
    assert jobs["python b.py"].span_s == [21.0, 40.0]
    # the GPU is b.py's at the window's end: its verdict is b.py's turn, the earlier one in words
    g = r.gpus[0]
    assert g.verdict == "idle_allocated" and g.summary.startswith("before 21.0 s: another job; then idle_allocated")


def test_jobs_alone_on_their_gpu_keep_the_whole_window():
    b = WindowBuilder(seconds=20).gpu(0, util=100, sm=90, tensor=80)
    b.proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 100)], age_s=300))
    topo, win = b.build()
    r = diagnose(topo, win, Thresholds())
    assert r.jobs[0].span_s is None


def test_history_rows_cover_only_the_seconds_each_job_was_there(tmp_path):
    r = turns_report()
    h = History(str(tmp_path / "h.sqlite")).open()
    # the agent's last 15 s of this 40-s window: a.py had gone by then, b.py was there throughout
    assert h.record(r, 1025.0, 1040.0)
    ids = {j.command: j.id for j in r.jobs}
    assert [(iv.t_start, iv.t_end, iv.verdict) for iv in h.timeline(ids["python b.py"]).intervals] == [
        (1025.0, 1040.0, "idle_allocated")]
    assert not any(j.job == ids["python a.py"] for j in h.jobs())
    # the whole window: each job gets its own span
    h.record(r, 1000.0, 1040.0)
    a = h.timeline(ids["python a.py"]).intervals
    assert [(iv.t_start, iv.t_end, iv.verdict) for iv in a] == [(1000.0, 1019.0, "compute_bound")]


def test_exported_job_seconds_count_only_each_jobs_turn():
    r = turns_report()
    book = JobBook(retention_s=600, max_jobs=10)
    book.add(r, 40.0, 5000.0)
    secs = {j.job: dict(j.seconds) for j in book.rows()}
    assert [v for k, v in secs.items() if "a.py" in k] == [{"compute_bound": 19.0}]
    assert [v for k, v in secs.items() if "b.py" in k] == [{"idle_allocated": 19.0}]



def test_a_job_after_one_that_left_the_process_list_gets_its_own_turn():
    # The agent keeps an exited process in its window's process list for one diagnosis period only;
    # the GPU's samples still show the previous job's context and its work.
    b = WindowBuilder(seconds=40).gpu(0, busy_pattern=[100] * 20 + [0] * 21, sm=90, tensor=80, gpm_follows=True,
                                       mem_used_gib=30, pids=[99])
    b.proc(ProcLoad(pid=101, gpus=[0], threads=[ThreadLoad(101, "python", 0)], age_s=-21, cmd="python b.py"))
    b.stack(101, [(SLEEPING, 200)], at=(21, 40))
    topo, win = b.build()
    for k, s in enumerate(win.samples):  # pid 99 held the GPU for the first 20 samples, then pid 101
        s.gpus[0].processes = [p for p in s.gpus[0].processes if (p.pid == 99) == (k < 20)]
    r = diagnose(topo, win, Thresholds())
    assert [(j.command, j.verdict, j.span_s) for j in r.jobs] == [("python b.py", "idle_allocated", [21.0, 40.0])]


def test_a_process_joining_a_running_job_does_not_take_the_gpus_verdict():
    # a.py trains throughout; b.py (another program) opens a context on the same GPU halfway.
    b = WindowBuilder(seconds=40).gpu(0, util=100, sm=90, tensor=80)
    b.proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 100)], age_s=300, cmd="python a.py"))
    b.proc(ProcLoad(pid=101, gpus=[0], threads=[ThreadLoad(101, "python", 0)], age_s=-21, cmd="python b.py"))
    topo, win = b.build()
    r = diagnose(topo, win, Thresholds())
    assert r.gpus[0].verdict == "compute_bound" and "another job" not in r.gpus[0].summary
