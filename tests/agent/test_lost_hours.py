"""The one definition of lost GPU-hours (agent/lost_hours.py) and what history makes of it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from nodetune.agent.history import History
from nodetune.agent.lost_hours import BUSY, IDLE, lost_seconds, verdict_of
from nodetune.agent.state import JobBook, job_label
from nodetune.diagnosis.findings import CauseShare, GpuVerdict, IdleAttribution
from tests.agent.test_history import Clock, report

MAIN = "from nodetune.cli.app import main; main()"


def gv(verdict: str, util: float | None, idle: float, causes: list[tuple[str, float]] = ()) -> GpuVerdict:
    att = IdleAttribution(0, idle, idle * 60, [CauseShare(c, s, s * 60) for c, s in causes]) if causes else None
    return GpuVerdict(0, "H200", verdict, None, False, 0.8, "", {"util_pct": util, "idle_share": idle}, attribution=att)


def test_idle_by_cause_plus_unproductive_busy_time() -> None:
    starved = lost_seconds(gv("data_starved", 10, 0.9, [("data_loading", 0.7)]), 100)
    assert {k: round(v, 6) for k, v in starved.items()} == {
        (IDLE, "data_loading"): 70.0, (IDLE, "unexplained"): 20.0, (BUSY, "data_starved"): 10.0}
    assert lost_seconds(gv("compute_bound", 97, 0.02), 100) == {(IDLE, "unexplained"): 2.0}  # only its idle bit
    assert sum(lost_seconds(gv("launch_bound", 30, 0.0), 100).values()) == 100.0  # busy, not productive
    assert lost_seconds(gv("gpu_lost", None, 0.0), 15) == {(IDLE, "gpu_lost"): 15}


def test_a_gpu_without_data_is_unknown_and_loses_nothing() -> None:
    g = gv("idle", None, 0.0)  # what the engine says of a GPU NVML cannot see
    assert verdict_of(g) == "unknown" and lost_seconds(g, 100) == {}


def test_history_records_idle_seconds_by_cause_from_the_attribution(tmp_path: Path) -> None:
    clock = Clock(time.time() - 120)
    path = tmp_path / "h.sqlite"
    h = History(str(path), clock=clock).open()
    r = report("h200/cpu_starved.json.gz")  # diagnose: idle 99%, 93% loading data
    for k in range(4):
        assert h.record(r, clock.t + 15 * k, clock.t + 15 * (k + 1))
    (job,) = h.jobs()
    ivs = h.timeline(job.job).intervals
    assert round(sum(iv.idle_by_cause["data_loading"] for iv in ivs)) == round(0.93 * 60)
    assert job.lost_gpu_hours == round(sum(sum(lost_seconds(g, 60).values()) for g in r.gpus) / 3600, 4)
    h.close()
    out = subprocess.run([sys.executable, "-c", MAIN, "history", "--db", str(path), job.job],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "idle GPU-seconds by cause: data_loading 56" in out.stdout and "1 GPU (0)" in out.stdout
    listing = subprocess.run([sys.executable, "-c", MAIN, "history", "--db", str(path), "--since", "1.5h"],
                             capture_output=True, text=True, timeout=60)
    head, row = listing.stdout.splitlines()[:2]
    assert listing.returncode == 0 and row[head.index("GPUs"):].split()[0] == "1"  # a count, not GPU 0


def test_job_labels_are_bounded_and_name_the_program() -> None:
    assert job_label("slurm:1234.0", "slurm", "python train.py") == "slurm:1234.0"
    assert job_label("pid:567", "process", "/opt/venv/bin/python3 -u /work/train.py --lr 3") == "program:train.py"
    assert job_label("pgid:9", "process-group", "torchrun --nproc 8 -m my.trainer") == "program:my.trainer"
    r = report("h200/cpu_starved.json.gz")
    book = JobBook(3600, 10)
    book.add(r, 15, 1.0)
    r.jobs[0].id = "pid:999"  # the same program run again: the same series
    book.add(r, 15, 2.0)
    (row,) = book.rows()
    assert row.job == "program:cpu_starved.py" and sum(row.seconds.values()) == 30
    assert sum(row.lost.values()) > 0
