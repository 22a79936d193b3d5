"""The agent reads a GPU process's quiet threads on the worker cadence and its busy ones every sample
(probes/sampler.py). Windows recorded on the H200 with every thread in every sample, thinned the way
the sampler reads them, at each phase of its cadence, diagnose to the same verdicts, and the process
statistics the rules read stay within a tenth of a point or so."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.window_stats import process_stats
from nodetune.probes.snapshot import Window, load_snapshot

DATA = Path(__file__).resolve().parents[1] / "data"
WINDOWS = ["frameworks/hf_gpt2_train-50", "frameworks/pl_checkpoint-50", "frameworks/tv_imagefolder-10",
           "frameworks/wds_shards-50", "frameworks/run2/hf_generate-10", "h200/idle_allocated"]
EVERY = 5  # the agent's worker cadence


def thinned(win: Window, phase: int) -> Window:
    """`win` as the sampler would have read it: each GPU process's threads all on the cadence
    (and on first sight), else only those running, in D, or whose CPU time moved between the last
    two full readings."""
    ticks: dict[int, dict[int, int]] = {}
    busy: dict[int, set[int]] = {}
    for n, s in enumerate(win.samples):
        for p in s.processes:
            info = win.process(p.pid)
            if info is None or info.role == "worker" or not p.alive:
                continue
            if n % EVERY == phase or p.pid not in busy:
                last = ticks.get(p.pid, {})
                now = {t.tid: t.utime + t.stime for t in p.threads}
                ticks[p.pid] = now
                busy[p.pid] = {t.tid for t in p.threads if t.state in ("R", "D") or last.get(t.tid) != now[t.tid]}
            else:
                p.threads = [t for t in p.threads if t.tid in busy[p.pid]]
                p.threads_partial = True
    return win


@pytest.mark.parametrize("name", WINDOWS)
def test_thinned_windows_diagnose_alike(name: str) -> None:
    path = str(DATA / f"{name}.json.gz")
    whole = load_snapshot(path)
    assert whole.window is not None
    want = diagnose(whole.topology, whole.window, Thresholds(), "replay")
    want_ps = {p.pid: p for p in process_stats(whole.window, whole.topology.node.clk_tck or 100)}
    thinned_any = False
    for phase in range(EVERY):
        snap = load_snapshot(path)
        assert snap.window is not None
        win = thinned(snap.window, phase)
        thinned_any |= any(p.threads_partial for s in win.samples for p in s.processes)
        got = diagnose(snap.topology, win, Thresholds(), "replay")
        assert [(g.index, g.verdict, g.confidence) for g in got.gpus] == \
            [(g.index, g.verdict, g.confidence) for g in want.gpus], phase
        for p in process_stats(win, snap.topology.node.clk_tck or 100):
            w = want_ps[p.pid]
            assert (p.cpu_pct, p.d_threads_mean) == (w.cpu_pct, w.d_threads_mean)
            for mine, theirs in ((p.busiest_thread_pct, w.busiest_thread_pct), (p.main_thread_pct, w.main_thread_pct)):
                assert (mine is None) == (theirs is None) and abs((mine or 0) - (theirs or 0)) <= 0.5, (phase, p.pid)
    assert thinned_any  # the recorded trainers had quiet threads to leave out
