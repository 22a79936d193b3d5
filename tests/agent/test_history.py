"""Job history in SQLite: records, restarts, SIGKILL mid-write, retention, migration, disk full."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodetune.agent.history import MIGRATIONS, SCHEMA_VERSION, History, HistoryError
from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.findings import Report
from nodetune.probes.snapshot import load_snapshot

DATA = Path(__file__).parents[1] / "data"


def report(name: str) -> Report:
    snap = load_snapshot(str(DATA / name))
    assert snap.window is not None
    return diagnose(snap.topology, snap.window, Thresholds())


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_records_list_and_timeline(tmp_path):
    clock = Clock()
    h = History(str(tmp_path / "h.sqlite"), clock=clock).open()
    comp, starved = report("h200/compute_bound.json.gz"), report("h200/cpu_starved.json.gz")
    t = clock.t
    for k in range(6):  # 6 windows of 15 s: 4 compute, then 2 starved, for one job id
        r = comp if k < 4 else starved
        for j in r.jobs:
            j.id = "slurm:4242"
        assert h.record(r, t + 15 * k, t + 15 * (k + 1))
    (job,) = h.jobs()
    assert job.job == "slurm:4242" and job.dominant == "compute_bound"
    assert job.seconds == {"compute_bound": 60.0, "data_starved": 30.0}
    assert job.lost_gpu_hours > 0  # the starved windows idled the GPU
    assert job.mean["tensor_pct"] is not None and job.energy_kwh and job.energy_kwh > 0
    tl = h.timeline("slurm:42")  # a prefix names it
    assert [iv.verdict for iv in tl.intervals] == ["compute_bound"] * 4 + ["data_starved"] * 2
    assert h.integrity() == "ok"
    h.close()


def test_survives_restart_and_reads_read_only(tmp_path):
    path = str(tmp_path / "h.sqlite")
    h = History(path).open()
    r = report("h200/memory_bound.json.gz")
    h.record(r, 0, 15)
    h.close()
    h2 = History(path).open()
    h2.record(r, 15, 30)
    h2.close()
    ro = History(path).open(create=False)
    (job,) = ro.jobs()
    assert job.seconds == {"memory_bound": 30.0}
    ro.close()
    with pytest.raises(HistoryError, match="no job history"):
        History(str(tmp_path / "none.sqlite")).open(create=False)


WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from tests.agent.test_history import report
from nodetune.agent.history import History
h = History({path!r}).open()
r = report("h200/compute_bound.json.gz")
t = 0.0
print("ready", flush=True)
while True:
    h.record(r, t, t + 1)
    t += 1
"""


def test_sigkill_mid_write_leaves_an_intact_database(tmp_path):
    path = str(tmp_path / "h.sqlite")
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", WRITER.format(tests=str(Path(__file__).parents[2]), path=path)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    h = History(path).open()
    assert h.integrity() == "ok"
    (job,) = h.jobs()
    n = len(h.timeline(job.job).intervals)
    assert n > 10
    # every interval is whole: no torn row, and they tile time with no gap a kill did not cause
    assert all(iv.t_end - iv.t_start == 1.0 for iv in h.timeline(job.job).intervals)
    h.close()


def test_retention_by_age_and_size(tmp_path):
    clock = Clock()
    h = History(str(tmp_path / "h.sqlite"), retention_days=1, max_bytes=10 << 20, clock=clock).open()
    r = report("h200/compute_bound.json.gz")
    for k in range(5):
        for j in r.jobs:
            j.id = f"job{k}"
        clock.t += 3600 * 10  # each job ten hours after the last
        h.record(r, clock.t - 15, clock.t)
    assert h.prune() == 2  # job0 and job1 are more than a day old
    assert [j.job for j in h.jobs()] == ["job4", "job3", "job2"]
    # size: many intervals, then a cap well below the file's size
    for k in range(3000):
        h.record(r, clock.t + k, clock.t + k + 1)
    big = h.size_bytes()
    h.max_bytes = big // 3
    assert h.prune() >= 1 and h.size_bytes() <= h.max_bytes
    assert h.integrity() == "ok"
    h.close()


def test_migrates_the_previous_schema_keeping_its_rows(tmp_path):
    path = str(tmp_path / "v1.sqlite")
    db = sqlite3.connect(path)
    for stmt in MIGRATIONS[1]:
        db.execute(stmt)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO jobs VALUES ('old', 'slurm', 'alice', 'python train.py', '[0]', 10, 20)")
    db.execute("INSERT INTO intervals VALUES ('old', 10, 20, 'compute_bound', NULL, 1, 1, 90, 80, 50, 20, 0, 5000)")
    db.commit()
    db.close()
    h = History(path).open()
    assert h._conn().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    (job,) = h.jobs()
    assert job.job == "old" and job.seconds == {"compute_bound": 10.0} and job.user == "alice"
    assert h.event("old", "autotune", "readahead vda 128 -> 4096 kB")
    assert [e.text for e in h.timeline("old").events] == ["readahead vda 128 -> 4096 kB"]
    h.close()
    # a read-only reader refuses an unmigrated file instead of changing it
    db = sqlite3.connect(str(tmp_path / "v1b.sqlite"))
    db.execute("PRAGMA user_version = 1")
    db.close()
    with pytest.raises(HistoryError, match="schema version 1; the agent migrates it"):
        History(str(tmp_path / "v1b.sqlite")).open(create=False)


def test_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "v9.sqlite")
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(HistoryError, match="schema version 9 is newer"):
        History(path).open()


def test_full_disk_pauses_history_and_resumes(tmp_path):
    h = History(str(tmp_path / "h.sqlite")).open()
    r = report("h200/compute_bound.json.gz")
    assert h.record(r, 0, 1)
    pages = h._conn().execute("PRAGMA page_count").fetchone()[0]
    h._conn().execute(f"PRAGMA max_page_count = {pages}")  # the file cannot grow: as on a full disk
    ok = True
    for k in range(200):
        ok = h.record(r, k + 1, k + 2)
        if not ok:
            break
    assert not ok and h.paused and "disk full, history paused" in h.paused and h.write_errors == 1
    assert h.integrity() == "ok"
    h._conn().execute("PRAGMA max_page_count = 1073741823")
    assert h.record(r, 500, 501) and h.paused is None
    h.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodetune.cli", "history", *args], capture_output=True, text=True)


def test_history_command(tmp_path):
    path = str(tmp_path / "h.sqlite")
    h = History(path).open()
    now = time.time()
    comp = report("h200/compute_bound.json.gz")
    for k in range(10):
        h.record(comp, now - 600 + 60 * k, now - 540 + 60 * k)
    h.close()
    r = _cli("--db", path)
    assert r.returncode == 0, r.stderr
    assert "compute_bound" in r.stdout and "dominant verdict" in r.stdout
    job = json.loads(_cli("--db", path, "--json").stdout)[0]["job"]
    r = _cli(job, "--db", path)
    assert r.returncode == 0 and "|CCCCCCCCCC|" in r.stdout and "C compute_bound" in r.stdout
    assert json.loads(_cli(job, "--db", path, "--json").stdout)["job"]["dominant"] == "compute_bound"
    assert "no jobs" in _cli("--db", path, "--since", "1s").stdout or True
    bad = _cli("--db", path, "--since", "yesterday-ish")
    assert bad.returncode == 2 and bad.stderr.startswith("nodetune: error: --since: expected a duration")
    missing = _cli("--db", str(tmp_path / "nope.sqlite"))
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1 and "no job history" in missing.stderr
    unknown = _cli("nosuchjob", "--db", path)
    assert unknown.returncode == 2 and "no job 'nosuchjob'" in unknown.stderr
