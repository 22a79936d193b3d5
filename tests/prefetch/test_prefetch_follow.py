"""prefetch --follow on fake trees: /proc/PID/fd links and fdinfo offsets under a temp root, real data files."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nodetune.prefetch import order as orders
from nodetune.prefetch.follow import Follower, FollowOptions, summary
from nodetune.prefetch.options import PrefetchError
from nodetune.prefetch.warmer import Warmer
from nodetune.probes.host import Host
from tests.support.faketree import FakeNode, FakeProc

KiB = 1 << 10
PID, WORKER = 4242, 4243
O_RDONLY_FLAGS = "0100000"  # O_LARGEFILE | O_RDONLY, as fdinfo prints it (octal)


class Recording(Warmer):
    """The real warmer, inline (no threads), remembering which files it was handed, in order."""

    def __init__(self, host: Host) -> None:
        super().__init__(host, "fadvise", threads=0)
        self.paths: list[str] = []

    def _one(self, path: str, listed: int) -> None:
        self.paths.append(path)
        super()._one(path, listed)


class Job:
    """A fake node with one training process (and optionally a worker) reading /data/ds/NNN.bin."""

    def __init__(self, tmp: Path, n: int = 64, size: int = 64 * KiB, worker: bool = False) -> None:
        self.node = FakeNode(tmp)
        self.node.meminfo(64)
        self.node.psi()
        self.node.diskstats([(253, 0, "vda", 100, 1000, 10)])
        self.size = size
        self.paths = [f"/data/ds/{i:03d}.bin" for i in range(n)]
        for p in self.paths:
            self.node.p(p).parent.mkdir(parents=True, exist_ok=True)
            self.node.p(p).write_bytes(b"x" * size)
        self.node.write("/data/train.log", "")
        self.pids = [PID, WORKER] if worker else [PID]
        self.node.process(FakeProc(PID, "python", ["python", "train.py"], uid=os.geteuid(),
                                   children=[WORKER] if worker else []))
        if worker:
            self.node.process(FakeProc(WORKER, "pt_data_worker", ["python", "train.py"], ppid=PID, uid=os.geteuid()))
        self.host = Host(str(tmp))
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def reads(self, pid: int, path: str | None, pos: int = 0, fd: int = 7, flags: str = O_RDONLY_FLAGS) -> None:
        """`pid` now holds `path` open at `pos` on `fd` (None: the fd is closed)."""
        link, info = self.node.p(f"/proc/{pid}/fd/{fd}"), self.node.p(f"/proc/{pid}/fdinfo/{fd}")
        if link.is_symlink():
            link.unlink()
        if path is None:
            info.unlink(missing_ok=True)
            return
        os.symlink(path, link)
        self.node.write(f"/proc/{pid}/fdinfo/{fd}", f"pos:\t{pos}\nflags:\t{flags}\nmnt_id:\t25\nino:\t1\n")

    def follower(self, **kw: object) -> tuple[Follower, Recording]:
        w = Recording(self.host)
        return Follower(self.host, PID, FollowOptions(**kw), clock=self.clock, warmer=w), w  # type: ignore[arg-type]

    def step(self, f: Follower, pid: int, i: int, dt: float = 0.02) -> str | None:
        self.now += dt
        self.reads(pid, self.paths[i], pos=self.size // 2)
        return f.tick()


def test_follows_name_order_and_warms_ahead_of_the_reader_never_behind(tmp_path):
    job = Job(tmp_path, n=200)
    job.reads(PID, "/data/train.log", fd=3, flags="0102001")  # written, not data: ignored
    f, w = job.follower(start_files=16, min_files=8)
    for i in range(10):
        assert job.step(f, PID, i) is None
    f.sync()
    assert f.report.order == "name order of /data/ds"
    assert w.paths, "nothing was warmed"
    first = job.paths.index(w.paths[0])
    assert first >= 2  # starts ahead of where the reader was when the order was known, not at file 0
    assert all(job.paths.index(p) > 0 for p in w.paths)
    assert len(set(w.paths)) == len(w.paths)  # each file warmed once per epoch
    assert f.report.files_warmed == len(w.paths) and f.report.bytes_warmed == len(w.paths) * job.size
    assert f.report.in_order_share == 1.0
    assert "/data/train.log" not in w.paths


def test_the_window_follows_the_slowest_reader(tmp_path):
    job = Job(tmp_path, n=300, worker=True)
    f, w = job.follower(start_files=16, min_files=8)
    for i in range(6):
        job.reads(PID, job.paths[100 + i], fd=5)
        job.step(f, WORKER, 20 + i)
    assert f.report.readers == 2
    # the worker (file 25) is the slowest: the window starts right after it, not after file 105
    assert min(job.paths.index(p) for p in w.paths) <= 27
    assert max(job.paths.index(p) for p in w.paths) <= 25 + 16


def test_random_access_is_detected_and_stops_with_one_line(tmp_path):
    job = Job(tmp_path, n=1000)
    f, w = job.follower(min_steps=24)
    rng = random.Random(7)
    why = None
    for _ in range(200):
        why = job.step(f, PID, rng.randrange(1000))
        if why:
            break
    assert why is not None and "following cannot help" in why and "\n" not in why
    assert f.report.random_access and f.report.exit_code == 1
    assert f.report.bytes_warmed <= 64 * job.size  # at most the start window, if chance looked sequential


def test_vanished_and_shrunk_files_are_skipped_and_counted(tmp_path):
    job = Job(tmp_path, n=100)
    f, w = job.follower(start_files=30, min_files=8)
    for i in range(3):
        job.step(f, PID, i)
    # the directory was listed at the first two files; now some files ahead go away or shrink
    os.truncate(job.node.p(job.paths[40]), 10)
    job.node.p(job.paths[41]).unlink()
    for i in range(3, 30):
        assert job.step(f, PID, i) is None
    f.sync()
    assert f.report.shrunk >= 1 and f.report.vanished >= 1
    assert "shrank" in summary(f.report) and "vanished" in summary(f.report)


def test_the_budget_caps_what_is_ahead(tmp_path):
    job = Job(tmp_path, n=200, size=256 * KiB)
    f, w = job.follower(budget=1 << 20, start_files=64, min_files=8)
    for i in range(12):
        job.step(f, PID, i)
        assert f.report.ahead_bytes <= 1 << 20
    assert f.report.held_by_budget > 0
    assert f.report.max_ahead_bytes <= 1 << 20


def test_a_list_file_gives_the_order(tmp_path):
    job = Job(tmp_path, n=50)
    job.node.write("/data/order.txt", "".join(f"ds/{i:03d}.bin\n" for i in reversed(range(50))))
    f, w = job.follower(list_file="/data/order.txt", start_files=5, min_files=5)
    for i in (49, 48, 47, 46, 45, 44):
        job.step(f, PID, i)
    f.sync()
    assert f.report.order == "list /data/order.txt"
    assert [job.paths.index(p) for p in w.paths][:5] == [44, 43, 42, 41, 40]  # the list's order, not names'


def test_the_order_seen_is_followed_in_the_next_epoch(tmp_path):
    job = Job(tmp_path, n=60)
    perm = list(range(60))
    random.Random(3).shuffle(perm)
    f, w = job.follower(start_files=5, min_files=5, min_steps=200)
    for i in perm + perm[:10]:
        job.step(f, PID, i)
    f.sync()
    assert f.report.order == "order seen"
    nxt = {job.paths[i] for i in perm[10:20]}
    assert nxt & set(w.paths)


def test_it_stops_when_the_process_exits(tmp_path):
    job = Job(tmp_path)
    f, _ = job.follower()
    job.step(f, PID, 0)
    shutil.rmtree(job.node.p(f"/proc/{PID}"))
    assert f.tick() == "the process exited"


@pytest.mark.parametrize("state", ["gone", "zombie"])
def test_a_pid_that_is_gone_is_one_line(tmp_path, state):
    job = Job(tmp_path)
    if state == "gone":
        shutil.rmtree(job.node.p(f"/proc/{PID}"))
    else:
        job.node.process(FakeProc(PID, "python", ["python"], state="Z", uid=os.geteuid()))
    with pytest.raises(PrefetchError, match=f"--follow {PID}: (no such process|the process has exited)"):
        job.follower()


def test_cli_bad_pid_exits_2_with_one_line(tmp_path):
    Job(tmp_path)
    r = subprocess.run([sys.executable, "-m", "nodetune.cli", "prefetch", "--follow", "999", "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == "nodetune: error: --follow 999: no such process"


def test_steps_in_order_wrap_at_the_end_of_an_epoch():
    assert orders.step_in_order(99, 0, 100, 16)
    assert orders.step_in_order(10, 12, 100, 16)
    assert not orders.step_in_order(10, 9, 100, 16)
    assert not orders.step_in_order(10, 60, 100, 16)


def test_recommend_proposes_the_follower_for_an_io_starved_job(tmp_path):
    from nodetune.cli.advice_command import advice_command
    from nodetune.tuners.recommend import advice_items, follow_items, profile_from_advice
    from tests.support.faketree import laptop

    laptop(tmp_path / "root")
    starved = {"kind": "data_starved", "cause": "io_input", "severity": "critical", "pids": [567, 601, 602],
               "job": "pid567", "evidence": {"gpu_idle_share": 0.7},
               "advice": [{"text": "Overlap I/O"}]}
    cpu = {**starved, "cause": "cpu_input", "pids": [700], "advice": []}
    report = tmp_path / "report.json"
    report.write_text(__import__("json").dumps({"gpus": [], "findings": [starved, cpu]}))
    r = subprocess.run([sys.executable, "-m", "nodetune.cli", "tune", "recommend", "--advice", str(report),
                        "--root", str(tmp_path / "root")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "nodetune prefetch --follow 567" in r.stdout and "--follow 700" not in r.stdout
    items = follow_items([starved, cpu])
    assert items == [{"tuner": "prefetch", "params": {"pid": 567}, "text": items[0]["text"]}]
    assert advice_command("prefetch", {"pid": 567}) == "nodetune prefetch --follow 567"
    _, notes = profile_from_advice(advice_items(items))
    assert notes == [f"prefetch: nodetune prefetch --follow 567  ({items[0]['text']})"]


def test_autotune_starts_a_follower_for_an_io_starved_job_and_it_stops_when_the_job_ends(tmp_path):
    import time

    from nodetune.agent.autotune import Autotuner
    from nodetune.agent.collectors.prefetch import prefetch as prefetch_metrics
    from nodetune.agent.state import View
    from nodetune.diagnosis.findings import Finding, Report

    job = Job(tmp_path, n=100)
    job.reads(PID, job.paths[0])
    starved = Finding("data_starved", "critical", 0.9, "starved", cause="io_input", pids=[PID], job="pid4242")
    report = Report(version=1, source="agent", taken_at="now", window_s=60, elapsed_s=0.1, hostname="x",
                    gpu_backend="fake", findings=[starved])
    off = Autotuner(job.host, ["readahead"], hold_windows=1)
    assert off.observe(report) == [] and off.followers is None  # not allowed: nothing follows
    at = Autotuner(job.host, ["prefetch"], hold_windows=2)
    assert at.observe(report) == []  # the finding must hold for two diagnoses
    changes = at.observe(report)
    assert [(c.tuner, c.knob, c.ok) for c in changes] == [("prefetch", f"follow pid {PID}", True)]
    assert at.followers is not None and at.followers.totals().followers == 1
    assert at.observe(report) == []  # once per job
    shutil.rmtree(job.node.p(f"/proc/{PID}"))  # the job ends
    for _ in range(200):
        if at.followers.totals().followers == 0:
            break
        time.sleep(0.01)
    t = at.followers.totals()
    assert t.followers == 0 and t.started_total == 1 and t.stopped_total == {"exited": 1}
    names = {m.name: m for m in prefetch_metrics(View(prefetch=t))}
    assert names["nodetune_prefetch_followers"].samples[0].value == 0
    assert [s.labels for s in names["nodetune_prefetch_followers_stopped"].samples if s.name.endswith("_total")] == \
        [{"reason": "exited"}]
    assert list(prefetch_metrics(View())) == []  # no followers allowed, no series
    at.close()


def test_sampler_feed_warms_the_order_the_loader_reads_each_epoch(tmp_path):
    from nodetune.prefetch import SamplerFeed

    class Fed:
        def __init__(self) -> None:
            self.fed: list[list[str]] = []

        def feed(self, paths: object) -> None:
            self.fed.append(list(paths))  # type: ignore[call-overload]

    class Shuffled:
        def __init__(self) -> None:
            self.rng = random.Random(1)

        def __iter__(self):  # a new order each epoch, like RandomSampler
            order = list(range(10))
            self.rng.shuffle(order)
            return iter(order)

        def __len__(self) -> int:
            return 10

    pf = Fed()
    feed = SamplerFeed(Shuffled(), lambda i: f"/d/{i}", pf)  # type: ignore[arg-type]
    e1, e2 = list(feed), list(feed)
    assert e1 != e2 and len(feed) == 10
    assert pf.fed == [[f"/d/{i}" for i in e1], [f"/d/{i}" for i in e2]]  # fed exactly what was read, in order


def test_the_dataloader_example_imports_without_torch():
    import importlib.util

    spec = importlib.util.spec_from_file_location("prefetch_dataloader",
                                                  Path(__file__).parents[2] / "examples/prefetch_dataloader.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert callable(mod.main)
    if mod.torch is None:
        r = subprocess.run([sys.executable, spec.origin, "/tmp"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "needs torch" in r.stderr


def test_bytes_ahead_wrap_epochs_and_far_apart_files_are_no_dataset():
    o = orders.Order("t", ["/d/a", "/d/b", "/d/c"], [1, 10, 100])
    assert o.span_bytes(1, 3) == 110 and o.span_bytes(2, 5) == 100 + 1 + 10 and o.span_bytes(0, 6) == 222
    assert o.span_bytes(3, 3) == 0
    assert orders.common_dir(["/data/ds/a/1.jpg", "/data/ds/b/2.jpg"]) == "/data/ds"
    assert orders.common_dir(["/home/u/cfg.yaml", "/home/u/runs/x/log.txt"]) is None
    assert orders.common_dir(["/a.bin", "/b.bin"]) is None


def test_each_file_is_warmed_once_an_epoch_and_only_ahead_of_the_reader(tmp_path):
    # the H200 run's loop: a loader that drops what it read saw the follower read 35x its dataset, mostly behind it
    n = 100
    job = Job(tmp_path, n=n)
    f, w = job.follower(start_files=20, min_files=8, lead_s=0.1)
    issued: list[tuple[int, int]] = []  # (file, reader's file when issued)
    targets: list[tuple[int, int]] = []  # (file, the epoch it was warmed for)
    for step in range(int(2.5 * n)):
        before = len(w.paths)
        assert job.step(f, PID, step % n) is None
        issued += [(job.paths.index(p), step % n) for p in w.paths[before:]]
        targets += [(i, step // n + (i <= at)) for i, at in issued[len(targets):]]
    f.sync()
    assert f.report.order == "name order of /data/ds" and f.report.epoch == 2
    assert all(0 < (i - at) % n < n for i, at in issued)  # strictly ahead, never the file being read or behind
    assert len(set(targets)) == len(targets)  # at most once an epoch
    counts: dict[int, int] = {}
    for i, _ in issued:
        counts[i] = counts.get(i, 0) + 1
    assert max(counts.values()) <= 3 and min(counts.get(i, 0) for i in range(10, 90)) >= 2  # next epochs too
    assert f.report.bytes_warmed <= 3 * n * job.size


def test_a_file_held_open_beside_the_dataset_does_not_hide_its_directory(tmp_path):
    job = Job(tmp_path, n=120)
    job.node.write("/opt/lib/libtorch_data.bin", "x" * 100)
    job.reads(PID, "/opt/lib/libtorch_data.bin", fd=3)  # read-only, open all along (as CUDA libraries are)
    f, w = job.follower(start_files=8, min_files=8)
    for i in range(12):
        assert job.step(f, PID, i) is None
    f.sync()
    assert f.report.order == "name order of /data/ds"
    assert w.paths and "/opt/lib/libtorch_data.bin" not in w.paths


def test_the_guess_of_the_dataset_directory():
    g = orders.guess_dir
    assert g(["/opt/lib/a.so", "/d/ds/001.bin", "/d/ds/002.bin"]) == "/d/ds"
    assert g(["/d/img/cat/1.jpg", "/d/img/cat/2.jpg", "/d/img/dog/3.jpg", "/d/img/dog/4.jpg", "/d/img/emu/5.jpg"]) \
        == "/d/img"
    assert g(["/opt/lib/a.so", "/d/ds/001.bin"]) is None  # two files that share nothing: no guess yet
    assert g(["/a.bin", "/b.bin"]) is None


def test_a_cgroup_limit_caps_the_window(tmp_path):
    job = Job(tmp_path, n=200, size=256 * KiB)
    job.node.write("/proc/self/cgroup", "0::/job.slice/run.scope\n")
    job.node.write("/sys/fs/cgroup/job.slice/run.scope/memory.max", "max\n")
    job.node.write("/sys/fs/cgroup/job.slice/run.scope/memory.stat", "anon 0\nfile 0\n")
    job.node.write("/sys/fs/cgroup/job.slice/memory.max", f"{4 << 20}\n")  # a parent's limit binds
    job.node.write("/sys/fs/cgroup/job.slice/memory.stat", f"anon {1 << 20}\nfile 0\n")
    f, w = job.follower(start_files=64, min_files=8)
    for i in range(12):
        job.step(f, PID, i)
        assert f.report.ahead_bytes <= (3 << 20) // 2  # half of what the cgroup can cache
    assert f.report.held_by_budget > 0 and w.paths


def test_io_uring_by_name_reads_whole_files_of_any_size(tmp_path):
    from nodetune.prefetch import uring

    if not uring.available(None)[0]:
        pytest.skip("io_uring not available here")
    sizes = {"empty": 0, "small": 5000, "big": 3 << 20}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(os.urandom(size))
    w = Warmer(Host("/"), "io_uring", threads=0)
    w.submit([(str(tmp_path / n), s) for n, s in sizes.items()] + [(str(tmp_path / "gone"), 9)])
    assert w.method == "io_uring"
    assert (w.counts.files, w.counts.bytes, w.counts.vanished) == (3, sum(sizes.values()), 1)


def test_a_job_id_names_the_process_to_follow_and_a_reused_pid_is_one_line(tmp_path):
    from nodetune.prefetch.procfiles import resolve_job

    job = Job(tmp_path, worker=True)  # FakeProc start times are 123456
    assert resolve_job(job.host, f"pid:{PID}@123456") == PID
    assert resolve_job(job.host, f"ranks:{PID}@123456") == PID  # the worker stands in for a rank here
    assert resolve_job(job.host, f"pid:{PID}") == PID
    bad = {f"pid:{PID}@99": "started at tick 123456, not 99: the job ended and its pid was reused",
           f"ranks:{PID}@99": "no rank of 4242 started at tick 99",
           "pid:999@1": "the job has ended (no process 999)",
           "job:12": "expected pid:PID@START or ranks:PPID@START"}
    for jid, msg in bad.items():
        with pytest.raises(PrefetchError, match=re.escape(msg)) as e:
            resolve_job(job.host, jid)
        assert "\n" not in e.value.reason


def test_cli_follow_job_that_ended_exits_2_with_one_line(tmp_path):
    Job(tmp_path)
    r = subprocess.run([sys.executable, "-m", "nodetune.cli", "prefetch", "--follow-job", f"pid:{PID}@1", "--root",
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "its pid was reused" in r.stderr


def test_a_process_of_another_user_is_one_line(tmp_path):
    from nodetune.prefetch.procfiles import check_target

    job = Job(tmp_path)
    job.node.process(FakeProc(PID, "python", ["python"], uid=0))
    with pytest.raises(PrefetchError, match=f"--follow {PID}: the process belongs to uid 0, not to this user") as e:
        check_target(job.host, PID, euid=1000)
    assert "\n" not in e.value.reason
    check_target(job.host, PID, euid=0)  # root may follow anyone


def test_a_reader_seeking_at_random_within_a_file_stops_with_one_line(tmp_path):
    job = Job(tmp_path, n=40, size=1 << 20)
    f, w = job.follower(min_steps=24, start_files=4, min_files=4)
    job.step(f, PID, 0)
    job.step(f, PID, 1)  # two files: the directory is known
    rng = random.Random(5)
    why = None
    for _ in range(200):
        job.now += 0.02
        job.reads(PID, job.paths[1], pos=rng.randrange(1 << 20))
        why = f.tick()
        if why:
            break
    assert why is not None and "random offsets within its files" in why and "\n" not in why
    assert f.report.random_access and f.report.exit_code == 1
    f.sync()
    assert f.report.files_warmed <= 8  # the start window at most


def test_a_sequential_reader_within_big_files_is_followed(tmp_path):
    job = Job(tmp_path, n=20, size=1 << 20)
    f, w = job.follower(min_steps=24, start_files=4, min_files=4)
    for i in range(6):
        for k in range(8):  # each file read forward in 8 steps
            job.now += 0.02
            job.reads(PID, job.paths[i], pos=k * (1 << 17))
            assert f.tick() is None
    assert not f.report.random_access and w.paths


def test_a_queued_file_the_reader_reached_meanwhile_is_dropped_unread(tmp_path):
    job = Job(tmp_path, n=50)
    w = Warmer(job.host, "fadvise", threads=0)
    w.submit([(job.paths[3], job.size)], lambda: False)
    w.submit([(job.paths[4], job.size)], lambda: True)
    assert (w.counts.passed, w.counts.files) == (1, 1)
