"""Loader workers on their own cadence: read every N samples, main thread only; the cap is said."""

from __future__ import annotations

from pathlib import Path

from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.probes.host import Host
from nodetune.probes.node import probe_topology
from nodetune.probes.nvml_backend import NvmlBackend
from nodetune.probes.processes import MAX_WORKERS, descendants_capped, sample_process
from nodetune.probes.sampler import Sampler
from tests.support.fakenvml import FakeNvml, hgx_gpus
from tests.support.faketree import FakeProc, vm_h200
from tests.support.windows import ProcLoad, ThreadLoad, WindowBuilder

TRAIN = 4242


def _node(tmp_path: Path, workers: list[int], worker_threads: int = 3) -> tuple[Host, NvmlBackend, object]:
    p = vm_h200(tmp_path)
    p.node.process(FakeProc(pid=TRAIN, comm="python", cmdline=["python", "train.py"], cpus=[0, 1],
                            threads={TRAIN: ("python", "R", 500, 50), 4243: ("pt_autograd_0", "S", 5, 1)},
                            children=workers))
    for w in workers:
        threads = {w: ("pt_data_worker", "D", 300, 30)}
        threads.update({w + 100000 + k: ("omp", "S", 1, 1) for k in range(worker_threads - 1)})
        p.node.process(FakeProc(pid=w, comm="pt_data_worker", cmdline=["python"], ppid=TRAIN, cpus=[0, 1],
                                state="D", utime=400, stime=40, threads=threads, read_bytes=10 << 20))
    gpus = hgx_gpus(p.gpu_addresses)
    gpus[0].processes = [(TRAIN, 2**30)]
    backend = NvmlBackend(FakeNvml(gpus))
    host = Host(str(tmp_path))
    return host, backend, probe_topology(host, backend, backend.open())


def test_workers_are_read_on_their_cadence_and_the_gpu_process_every_sample(tmp_path: Path) -> None:
    host, backend, topo = _node(tmp_path, [5000, 5001])
    s = Sampler(host, backend, topo, worker_scan_every=5)  # type: ignore[arg-type]
    seen = [sorted(p.pid for p in s.sample().processes) for _ in range(10)]
    assert seen[0] == [TRAIN, 5000, 5001] and seen[5] == [TRAIN, 5000, 5001]
    assert all(x == [TRAIN] for k, x in enumerate(seen) if k % 5)
    # a window's last (detail) sample reads the workers whatever the cadence
    assert sorted(p.pid for p in s.sample(detail=True).processes) == [TRAIN, 5000, 5001]


def test_a_worker_keeps_its_main_thread_and_the_gpu_process_all_threads(tmp_path: Path) -> None:
    host, backend, topo = _node(tmp_path, [5000])
    got = {p.pid: p for p in Sampler(host, backend, topo).sample().processes}  # type: ignore[arg-type]
    assert [t.tid for t in got[5000].threads] == [5000]
    main = got[5000].threads[0]
    assert (main.state, main.utime, main.stime) == ("D", 300, 30)  # the thread's own counters, not the process's
    assert (got[5000].utime, got[5000].read_bytes) == (400, 10 << 20)
    assert sorted(t.tid for t in got[TRAIN].threads) == [TRAIN, 4243]


def test_a_single_threaded_worker_costs_one_stat_read(tmp_path: Path) -> None:
    host, _, _ = _node(tmp_path, [5000], worker_threads=1)
    ps = sample_process(host, 5000, main_thread_only=True)
    assert [(t.tid, t.state) for t in ps.threads] == [(5000, "D")]
    assert ps.threads[0].utime == ps.utime


def test_the_worker_cap_is_recorded_on_the_gpu_process(tmp_path: Path) -> None:
    workers = list(range(6000, 6000 + MAX_WORKERS + 3))
    host, backend, topo = _node(tmp_path, workers, worker_threads=1)
    kids, capped = descendants_capped(host, TRAIN)
    assert len(kids) == MAX_WORKERS and capped
    s = Sampler(host, backend, topo)  # type: ignore[arg-type]
    s.sample()
    assert s.infos[TRAIN].worker_cap == MAX_WORKERS and s.capped() == 1
    assert sum(1 for i in s.infos.values() if i.role == "worker") == MAX_WORKERS


def test_no_cap_below_it(tmp_path: Path) -> None:
    host, backend, topo = _node(tmp_path, [5000, 5001])
    kids, capped = descendants_capped(host, TRAIN)
    assert sorted(kids) == [5000, 5001] and not capped
    s = Sampler(host, backend, topo)  # type: ignore[arg-type]
    s.sample()
    assert s.infos[TRAIN].worker_cap is None and s.capped() == 0


def test_the_cap_is_a_metric() -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from nodetune.agent.collectors import StateCollector
    from nodetune.agent.state import State

    state = State(4)
    state.update(workers_capped=2)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StateCollector(state))
    text = generate_latest(reg).decode()
    assert f"nodetune_agent_worker_cap {float(MAX_WORKERS)}" in text
    assert "nodetune_agent_worker_cap_reached_processes 2.0" in text


def test_a_process_past_the_worker_cap_is_a_report_note():
    b = WindowBuilder(seconds=10).gpu(0, util=100, sm=90, tensor=80)
    b.proc(ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 100)], age_s=300))
    topo, win = b.build()
    win.processes[0].worker_cap = 256
    r = diagnose(topo, win, Thresholds())
    assert any("pid 100" in n and "256" in n for n in r.notes)


class _Ticks:
    """A StackRecorder stand-in: what each tick was asked to follow and to start."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], set[int] | None]] = []

    def tick(self, pids: list[int], start: set[int] | None = None) -> None:
        self.calls.append((pids, start))


def test_agent_stacks_start_only_where_a_gpu_dipped_lately(tmp_path: Path) -> None:
    """py-spy costs ~30 us a thread a tick: a GPU busy throughout (nothing idle to explain) starts no slice."""
    host, backend, topo = _node(tmp_path, [])
    s = Sampler(host, backend, topo)  # type: ignore[arg-type]
    rec = _Ticks()
    s.stacks = rec  # type: ignore[assignment]
    s.stacks_busy_s = 10.0
    nv = backend._nvml
    nv.gpus[0].util_gpu = 99
    s.sample()
    assert rec.calls[-1] == ([TRAIN], set())  # busy from its first sample: followed, no new slice
    nv.gpus[0].util_gpu = 40
    s.sample()
    assert rec.calls[-1] == ([TRAIN], {TRAIN})  # it dipped: its stacks explain the dip
    nv.gpus[0].util_gpu = 99
    s.sample()
    assert rec.calls[-1] == ([TRAIN], {TRAIN})  # within stacks_busy_s of the dip
    s._gpu_dipped[0] -= 11
    s.sample()
    assert rec.calls[-1] == ([TRAIN], set())


def test_one_off_windows_start_stacks_on_busy_gpus(tmp_path: Path) -> None:
    host, backend, topo = _node(tmp_path, [])
    s = Sampler(host, backend, topo)  # type: ignore[arg-type]
    rec = _Ticks()
    s.stacks = rec  # type: ignore[assignment]
    backend._nvml.gpus[0].util_gpu = 99
    s.sample()
    assert rec.calls[-1] == ([TRAIN], None)


def test_each_cpus_times_and_nics_are_read_on_the_worker_cadence_and_rated_between_the_ends_that_have_them(
        tmp_path: Path) -> None:
    from nodetune.diagnosis.host_stats import host_stats
    from nodetune.probes.snapshot import Window

    host, backend, topo = _node(tmp_path, [5000])
    s = Sampler(host, backend, topo, worker_scan_every=5)  # type: ignore[arg-type]
    samples = [s.sample() for _ in range(7)]
    assert [bool(x.cpu.per_cpu) for x in samples] == [True, False, False, False, False, True, False]
    assert [x.nics is not None for x in samples] == [True, False, False, False, False, True, False]
    assert all(x.cpu.total is not None for x in samples)  # the all-CPU line every sample
    # the window starts on a sample without per-CPU times: the rates come from samples 5 and 7
    stat = (tmp_path / "proc" / "stat").read_text().splitlines()
    busier = [" ".join([f.split()[0], str(int(f.split()[1]) + 50), *f.split()[2:]]) if f.startswith("cpu0 ") else f
              for f in stat]
    (tmp_path / "proc" / "stat").write_text("\n".join(busier) + "\n")
    samples.append(s.sample(detail=True))
    samples[-1].t = samples[5].t + 1.0
    hs = host_stats(Window(seconds=7, interval_s=1.0, samples=samples[1:]))
    assert hs.cpu_busy_by_cpu[0] > hs.cpu_busy_by_cpu[1]


def test_a_gpu_process_quiet_threads_are_read_on_the_worker_cadence(tmp_path: Path) -> None:
    host, backend, topo = _node(tmp_path, [])
    s = Sampler(host, backend, topo, worker_scan_every=5)  # type: ignore[arg-type]
    got = [next(p for p in s.sample().processes if p.pid == TRAIN) for _ in range(10)]
    # the first full reading cannot tell a quiet thread (no CPU time to compare): every thread is read
    assert all(sorted(t.tid for t in p.threads) == [TRAIN, 4243] for p in got[:5])
    # from the second on, the sleeping thread whose CPU time did not move is left to the cadence
    assert [t.tid for t in got[6].threads] == [TRAIN] and got[6].threads_partial
    assert not got[5].threads_partial and sorted(t.tid for t in got[5].threads) == [TRAIN, 4243]
    # a window's last (detail) sample lists every thread
    last = next(p for p in s.sample(detail=True).processes if p.pid == TRAIN)
    assert not last.threads_partial and len(last.threads) == 2
