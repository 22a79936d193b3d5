"""Phases inside a window: start-up left out and said, the steady part diagnosed, a job that ends,
the per-GPU strip, borderline verdicts."""

from __future__ import annotations

from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.findings import Report
from tests.support.windows import ProcLoad, ThreadLoad, WindowBuilder

IMPORT_STACK = ["<module> (train.py)", "_find_and_load (<frozen importlib._bootstrap>)"]
STEP_STACK = ["<module> (train.py)", "main (train.py)", "Module._call_impl (torch/nn/modules/module.py)"]


def run(b: WindowBuilder) -> Report:
    topo, win = b.build()
    return diagnose(topo, win, Thresholds())


def trainer(**kw: object) -> ProcLoad:
    return ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 100)], **kw)  # type: ignore[arg-type]


def startup_then_steady(idle_samples: int, n: int = 20, age_s: float = 3.0, imports: bool = True) -> WindowBuilder:
    """Idle while importing (stack slices under the import machinery), then busy stepping."""
    pattern = [0.0] * (idle_samples + 1) + [100.0] * (n - idle_samples)
    b = (WindowBuilder(seconds=n * 0.5, interval=0.5).gpu(0, busy_pattern=pattern, sm=95, tensor=90, gpm_follows=True)
         .proc(trainer(age_s=age_s)))
    edge = idle_samples * 0.5
    if imports:
        b.stack(100, [(IMPORT_STACK, 20 * idle_samples)], at=(0.0, edge))
    return b.stack(100, [(STEP_STACK, 200)], at=(edge, n * 0.5))


def test_startup_is_left_out_and_the_steady_part_is_compute_bound():
    # The bf16 MLP diagnosed 5 s after launch: 38% of the window start-up.
    r = run(startup_then_steady(8))
    g = r.gpus[0]
    # SM activity comes from GPM in every sample, so steady = the busy part after start-up
    assert g.verdict == "compute_bound" and g.healthy
    assert [p.kind for p in g.phases] == ["startup", "busy"]
    assert g.diagnosed_s is not None and g.diagnosed_s[0] == 4.0
    assert g.summary.startswith("first 4.0 s: start-up (_find_and_load; process")  # the evidence named
    assert any("left out" in n for n in r.notes)
    assert "|" in g.strip and g.strip.startswith("·")
    assert "startup" in {f.kind for f in r.findings}  # said, as information
    assert r.healthy is True


def test_same_workload_diagnosed_at_different_times_gives_one_verdict():
    verdicts = {run(startup_then_steady(k)).gpus[0].verdict for k in (4, 8, 11)}
    assert verdicts == {"compute_bound"}


def test_old_job_with_a_stall_is_not_start_up():
    # A process 15 minutes old that stalls at the window's start: a stall, not start-up; whole window judged.
    r = run(startup_then_steady(8, age_s=900))
    g = r.gpus[0]
    assert g.phases[0].kind == "stall" and g.diagnosed_s is None
    assert g.verdict != "compute_bound" or not g.healthy


def test_job_that_ends_mid_window():
    b = (WindowBuilder(seconds=10, interval=0.5).gpu(0, busy_pattern=[100] * 13 + [0] * 8, sm=95, tensor=90)
         .proc(trainer(exits_at=13)))
    r = run(b)
    g = r.gpus[0]
    assert g.phases[-1].kind == "ended" and g.verdict == "compute_bound"
    assert g.diagnosed_s is not None and g.diagnosed_s[1] <= 6.0


def test_young_job_whole_window_start_up():
    b = (WindowBuilder(seconds=5, interval=0.5).gpu(0, util=0, sm=0).proc(trainer(age_s=1))
         .stack(100, [(IMPORT_STACK, 100)]))
    g = run(b).gpus[0]
    assert g.verdict == "startup" and len(g.phases) == 1


def test_steady_window_has_one_phase_and_a_full_strip():
    g = run(WindowBuilder().gpu(0, util=100, sm=96, tensor=93).proc(trainer())).gpus[0]
    assert len(g.phases) == 1 and g.phases[0].kind == "steady"
    assert g.strip == "█" * 11  # the first sample primes GPM: its utilization stands in


def test_borderline_window_says_so_and_which_way_it_leans():
    # Idle 36%: just under the 40% line between compute-bound and an idle cause.
    pattern = [100] * 7 + [0] * 4
    r = run(WindowBuilder().gpu(0, busy_pattern=pattern, sm=60, tensor=50).proc(trainer()))
    g = r.gpus[0]
    assert g.borderline and g.leans == g.verdict
    assert "borderline: leans" in g.summary and g.confidence <= 0.6


def test_clear_window_is_not_borderline():
    g = run(WindowBuilder().gpu(0, util=100, sm=96, tensor=93).proc(trainer())).gpus[0]
    assert g.borderline == [] and g.leans is None


def agent_window(idle_s: int, born_at_s: float = 5.0, **gpu: object) -> WindowBuilder:
    """The agent's window (60 s, a sample a second): the process starts `born_at_s` into it, its GPU
    idles `idle_s` more (imports, CUDA context) and then works; GPM activity follows utilization."""
    pattern = [0.0] * (int(born_at_s) + idle_s + 1) + [100.0] * 60
    load = {"busy_pattern": pattern, "sm": 95, "tensor": 80, "gpm_follows": True, **gpu}
    return (WindowBuilder(seconds=60, interval=1.0).gpu(0, **load)
            .proc(trainer(age_s=-born_at_s)).stack(100, [(STEP_STACK, 200)]))


def test_agent_window_with_start_up_is_the_steady_verdict():
    # Issue: in the agent a compute_bound.py job came out `startup` for 79 of its 95 s.
    r = run(agent_window(10))
    g = r.gpus[0]
    assert (g.verdict, g.healthy) == ("compute_bound", True)
    assert g.summary.startswith("first 15.0 s: start-up") and "then compute_bound" in g.summary
    assert g.phases[0].kind == "startup" and "started 5.0 s into the window" in g.phases[0].note
    assert r.jobs[0].verdict == "compute_bound"


def test_agent_window_mostly_start_up_still_judges_the_steady_part():
    # 50 s of start-up, 10 s steady: the steady part has the verdict.
    assert run(agent_window(45)).gpus[0].verdict == "compute_bound"


def test_steady_part_with_no_rule_is_unclassified_not_start_up():
    # A steady part no rule names is `unclassified`, with the start-up said in the summary.
    g = run(agent_window(10, sm=40, tensor=10, dram=10)).gpus[0]
    assert g.verdict != "startup" and g.summary.startswith("first 15.0 s: start-up")


def test_whole_window_start_up_is_startup():
    g = run(agent_window(70)).gpus[0]
    assert g.verdict == "startup" and [p.kind for p in g.phases] == ["startup"]


def test_idle_start_of_a_job_seen_working_before_is_no_start_up():
    # 20 s old at the window's start, idle its first 3 s, then working: its GPU may well have worked
    # before the window (a host step, a stall), so nothing is called start-up.
    pattern = [0.0] * 4 + [100.0] * 20
    b = (WindowBuilder(seconds=20, interval=1.0).gpu(0, busy_pattern=pattern, sm=95, tensor=80, gpm_follows=True)
         .proc(trainer(age_s=20)).stack(100, [(STEP_STACK, 200)]))
    g = run(b).gpus[0]
    assert not any(p.kind == "startup" for p in g.phases) and g.diagnosed_s is None
