"""The harness run for real on the CPU: a stand-in workload launched, waited on and stopped with its
whole process group; `window` recording through the fake and the real nodetune (no GPU here); the
diagnosis benchmark's dry run through bench/run_diagnosis.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness.launch import LaunchSpec, Offset, launch

REPO = Path(__file__).resolve().parents[2]
STANDIN = str(REPO / "bench" / "workloads" / "_cpu_standin.py")
FAKE_NODETUNE = f"{sys.executable} {REPO / 'bench' / 'workloads' / '_fake_diagnose.py'}"
# A leader that says READY and a child that ignores SIGTERM: only SIGKILL to the group ends it.
STUBBORN = ("import signal, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
            "time.sleep(0.3)\n"
            "print('READY', flush=True)\n"
            "time.sleep(60)\n")


def _ended(pid: int) -> bool:
    """Gone, or a zombie left for whoever reaps orphans here (a container's init may not)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _spec(tmp_path: Path, argv: list[str], name: str = "w") -> LaunchSpec:
    return LaunchSpec(name, argv, REPO, dict(os.environ), stderr_path=tmp_path / f"{name}.log",
                      stdout_path=tmp_path / f"{name}.out")


def test_stop_reaches_the_whole_process_group(tmp_path):
    w = launch(_spec(tmp_path, [sys.executable, "-c", STUBBORN]))
    assert w.wait_ready(time.monotonic() + 20)
    assert w.ready_after is not None and w.ready_after > 0.2
    pids = w.pids()
    assert len(pids) == 2  # the leader and its child (psutil)
    stopped = w.stop(grace=0.5)
    assert stopped.killed and stopped.exit_code is not None
    assert all(_ended(pid) for pid in pids)
    assert (tmp_path / "w.out").read_text() == "READY\n"


def test_offsets_after_launch_and_after_ready(tmp_path):
    w = launch(_spec(tmp_path, [sys.executable, STANDIN, "--warmup", "0.4", "--seconds", "30"]))
    try:
        assert w.wait_until(Offset("launch", 0.2), ready_timeout=20)
        assert time.monotonic() - w.started >= 0.2 and not w.ready.is_set()
        assert w.wait_until(Offset("ready", 0.3), ready_timeout=20)
        assert w.ready_after is not None and time.monotonic() - w.started >= w.ready_after + 0.3
    finally:
        assert w.stop(grace=5).exit_code == 0  # the stand-in ends on SIGTERM by itself


def test_no_ready_is_reported_not_waited_on_forever(tmp_path):
    silent = launch(_spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"], "silent"))
    t0 = time.monotonic()
    assert not silent.wait_until(Offset("ready", 5), ready_timeout=0.5)
    assert time.monotonic() - t0 < 3
    assert not silent.stop(grace=5).killed
    crashed = launch(_spec(tmp_path, [sys.executable, "-c", "import sys; sys.exit('boom')"], "crashed"))
    assert not crashed.wait_ready(time.monotonic() + 20)
    crashed.stop(grace=1)
    assert "boom" in crashed.stderr_tail()


def _harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.harness", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_window_diagnose_through_the_fake_nodetune(tmp_path):
    p = _harness("window", "--nodetune-cmd", FAKE_NODETUNE, "--kind", "diagnose", "--tag", "cpu-launch-1",
                 "--at", "ready+0.2", "--seconds", "0.3", "--interval", "0.5", "--dir", str(tmp_path),
                 "--name", "cpu", "--stdout", str(tmp_path / "cpu.out"), "--",
                 sys.executable, STANDIN, "--seconds", "30", "--steady-first", "5")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "  cpu-launch-1: GPU0 compute_bound/None conf 0.80 healthy True border False | fake\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "cpu-launch-1.err", "cpu-launch-1.json", "cpu-launch-1.json.gz", "cpu.log", "cpu.out"]
    assert json.loads((tmp_path / "cpu-launch-1.json").read_text())["gpus"][0]["verdict"] == "compute_bound"
    assert (tmp_path / "cpu.out").read_text() == "READY\n"
    assert "stopping (SIGTERM)" in (tmp_path / "cpu.log").read_text()


def test_window_snapshot_failure_and_log_tail(tmp_path):
    p = _harness("window", "--nodetune-cmd", f"{sys.executable} -c 'import sys; sys.exit(\"no NVML\")'",
                 "--kind", "snapshot", "--tag", "job", "--at", "ready+0", "--seconds", "1", "--dir", str(tmp_path),
                 "--log-tail", "--", sys.executable, STANDIN, "--seconds", "30")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "  snapshot of _cpu_standin failed: rc=1 no NVML"
    assert lines[1].startswith("  _cpu_standin: [cpu_standin ") and "stopping (SIGTERM)" in lines[1]
    assert (tmp_path / "job.snap.err").read_text().strip() == "no NVML"


def test_window_through_the_real_nodetune(tmp_path):
    """nodetune's own diagnose and snapshot take the arguments the harness gives them (no GPU here:
    the report has none, the windows still replay)."""
    for kind, tag in (("diagnose", "d"), ("snapshot", "s")):
        p = _harness("window", "--kind", kind, "--tag", tag, "--at", "ready+0", "--seconds", "1", "--interval",
                     "0.5", "--note", "bench test", "--dir", str(tmp_path), "--",
                     sys.executable, STANDIN, "--seconds", "30", "--burn")
        assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    assert "gpus" in json.loads((tmp_path / "d.json").read_text())
    from nodetune.probes.snapshot import load_snapshot

    for name in ("d.json.gz", "s.json.gz"):
        snap = load_snapshot(str(tmp_path / name))
        assert snap.window is not None and len(snap.window.samples) >= 2
    assert load_snapshot(str(tmp_path / "s.json.gz")).note == "bench test"


def test_dry_run_of_the_diagnosis_benchmark(tmp_path):
    out = tmp_path / "diagnosis_results.json"
    p = subprocess.run([sys.executable, str(REPO / "bench" / "run_diagnosis.py"), "--dry-run", "--seconds", "0.3",
                        "--only", "compute_bound,cpu_starved,allreduce", "--fake-wrong", "cpu_starved",
                        "--settle", "0.1", "--idle-quiet", "0.1", "--out", str(out)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    table = (tmp_path / "diagnosis_table.txt").read_text()
    assert table in p.stdout
    assert "[FAIL] every workload diagnosed correctly: 1/2 (wrong: cpu_starved@gpu0)" in table
    assert "[PASS] no job whose GPU was idle >= 50% of the window came out healthy" in table
    res = json.loads(out.read_text())
    assert [(r["workload"], r["status"], r["correct"]) for r in res["rows"]] == [
        ("compute_bound", "ok", True), ("cpu_starved", "ok", False), ("allreduce", "skipped", None)]
    assert res["rows"][0]["got"]["verdict"] == "compute_bound" and res["rows"][0]["workload_exit"] == 0
    assert res["goals"]["all_correct"] == {"pass": False, "wrong": ["cpu_starved@gpu0"], "correct": 1, "total": 2}
    assert sorted(f.name for f in (tmp_path / "logs").iterdir()) == [
        "compute_bound.cuda0.stderr.log", "cpu_starved.cuda0.stderr.log"]
    assert sorted(f.name for f in (tmp_path / "diagnose_raw").iterdir()) == [
        "round01.diagnose.json", "round02.diagnose.json"]


def test_concurrent_dry_run_on_two_fake_gpus(tmp_path):
    out = tmp_path / "r.json"
    p = _harness("diagnosis", "--dry-run", "--concurrent", "--fake-gpus", "2", "--seconds", "0.3",
                 "--only", "compute_bound,io_starved,allreduce", "--settle", "0.1", "--idle-quiet", "0.1",
                 "--snapshot-during", f"allreduce:{tmp_path / 'snap.json'}", "--out", str(out))
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert [(r["round"], r["workload"], r["gpu"], r["correct"]) for r in res["rows"]] == [
        (1, "compute_bound", 0, True), (1, "io_starved", 1, True), (2, "allreduce", 0, True),
        (2, "allreduce", 1, True)]
    assert res["rounds"][1]["snapshot"]["rc"] == 0 and (tmp_path / "snap.json").exists()
    assert [w["gpus"] for w in res["rounds"][1]["workloads"]] == [[0, 1]]
    assert "[PASS] every workload diagnosed correctly: 4/4" in res["table"]


def test_window_without_a_workload_is_a_usage_error(tmp_path):
    p = _harness("window", "--tag", "t", "--dir", str(tmp_path), "--seconds", "1")
    assert p.returncode == 2 and "goes after --" in p.stderr
    assert not list(tmp_path.iterdir())
