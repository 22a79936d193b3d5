"""Snapshots: JSON round trip, versioning and damaged files (one clear line), replay, sampling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodetune.probes.gpu import BackendStatus
from nodetune.probes.host import Host
from nodetune.probes.node import Topology, probe_topology
from nodetune.probes.nvml_backend import NvmlBackend
from nodetune.probes.sampler import Sampler, record_window, take_snapshot
from nodetune.probes.serde import SchemaError, from_jsonable, to_jsonable
from nodetune.probes.snapshot import (
    SNAPSHOT_VERSION,
    ReplayBackend,
    Snapshot,
    SnapshotError,
    load_snapshot,
    save_snapshot,
    strip_identifiers,
)
from nodetune.probes.source import NoGpuBackend
from tests.support.fakenvml import FakeNvml, hgx_gpus, nvlink_pair_gpus
from tests.support.faketree import FakeProc, Preset, dgx_h100, h200_pair, laptop, vm_h200

TRAIN = "/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0"


@pytest.fixture(scope="module")
def dgx_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Preset]:
    """The 8-GPU tree (built once: it is read-only here) with a training process and a worker."""
    root = tmp_path_factory.mktemp("dgx-job")
    p = dgx_h100(root)
    p.node.process(FakeProc(pid=4242, comm="python", cmdline=["python", "train.py"], cpus=list(range(56)),
                            cgroup=TRAIN, numa_pages={0: 1000, 1: 10}, children=[4300],
                            threads={4242: ("python", "R", 100, 10), 4250: ("pt_autograd_0", "S", 5, 1)}))
    p.node.process(FakeProc(pid=4300, comm="pt_data_worker", cmdline=["python", "train.py"], ppid=4242,
                            state="D", cpus=list(range(56)), cgroup=TRAIN))
    return root, p


def _nvml(p: Preset) -> tuple[NvmlBackend, BackendStatus, FakeNvml]:
    """A fresh FakeNvml for the job tree: the process on GPU0 and GPU1, NVML levels for one pair."""
    gpus = hgx_gpus(p.gpu_addresses)
    gpus[0].processes = [(4242, 30 * 2**30)]
    gpus[1].processes = [(4242, 2**64 - 1)]
    nv = FakeNvml(gpus, levels={(0, 1): 40})
    b = NvmlBackend(nv)
    return b, b.open(), nv


def _nonvml(host: Host) -> tuple[NoGpuBackend, BackendStatus]:
    """What the CLI uses for a fake root: no NVML, the GPUs come from sysfs."""
    b = NoGpuBackend("NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this node")
    return b, b.open()


def _json_round_trip(snap: Snapshot) -> Snapshot:
    return from_jsonable(Snapshot, json.loads(json.dumps(to_jsonable(snap))))


# -- round trip -------------------------------------------------------------------------------

def test_round_trip_of_a_full_snapshot(dgx_job: tuple[Path, Preset]) -> None:
    root, p = dgx_job
    b, st, _ = _nvml(p)
    snap = take_snapshot(Host(str(root)), b, st, seconds=0.25, interval_s=0.1, anonymize=False)
    b.close()
    assert snap.window is not None and len(snap.window.samples) >= 2
    back = _json_round_trip(snap)
    assert back == snap
    assert isinstance(back.topology, Topology) and back.topology.gpus[0].static.name == "NVIDIA H100 80GB HBM3"
    assert to_jsonable(back) == to_jsonable(snap)


@pytest.mark.parametrize("preset", [vm_h200, laptop, h200_pair])
def test_round_trip_of_topology_only_snapshots(tmp_path: Path, preset) -> None:  # type: ignore[no-untyped-def]
    preset(tmp_path)
    host = Host(str(tmp_path))
    rb, status = _nonvml(host)
    snap = take_snapshot(host, rb, status, seconds=0)
    assert snap.window is None
    assert _json_round_trip(snap) == snap


def test_save_and_load(tmp_path: Path, dgx_job: tuple[Path, Preset]) -> None:
    root, p = dgx_job
    b, st, _ = _nvml(p)
    snap = take_snapshot(Host(str(root)), b, st, seconds=0.2, interval_s=0.1)
    snap.note = "bf16 matmul on GPU0"
    out = tmp_path / "snaps" / "node.json"
    out.parent.mkdir()
    save_snapshot(snap, str(out))
    assert os.listdir(out.parent) == ["node.json"]  # the temp file was renamed, not left behind
    assert json.loads(out.read_text())["version"] == SNAPSHOT_VERSION
    assert load_snapshot(str(out)) == snap


def test_strip_identifiers(dgx_job: tuple[Path, Preset]) -> None:
    root, p = dgx_job
    b, st, _ = _nvml(p)
    snap = take_snapshot(Host(str(root)), b, st, seconds=0)
    assert [g.static.uuid for g in snap.topology.gpus][:2] == ["GPU-redacted-0", "GPU-redacted-1"]
    assert {g.static.serial for g in snap.topology.gpus} == {"REDACTED"}
    assert snap.topology.node.hostname == "redacted"
    text = json.dumps(to_jsonable(snap))
    assert "1654922000000" not in text and "dgx01" not in text and "aaaa-bbbb" not in text
    again = strip_identifiers(snap)
    assert again.topology.gpus[0].static.uuid == "GPU-redacted-0"


# -- damaged and foreign files -------------------------------------------------------------------

@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    vm_h200(tmp_path / "node")
    host = Host(str(tmp_path / "node"))
    rb, status = _nonvml(host)
    f = tmp_path / "snap.json"
    save_snapshot(take_snapshot(host, rb, status, seconds=0), str(f))
    return f


def _error(path: Path) -> str:
    with pytest.raises(SnapshotError) as exc:
        load_snapshot(str(path))
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ")
    return msg[len(f"{path}: "):]


def test_wrong_version(good_file: Path) -> None:
    data = json.loads(good_file.read_text())
    data["version"] = 99
    good_file.write_text(json.dumps(data))
    assert _error(good_file) == f"snapshot version 99; this nodetune reads version {SNAPSHOT_VERSION}"


def test_not_json(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("version: 1\n")
    assert _error(f) == "not JSON (line 1, column 1: Expecting value)"
    f.write_bytes(b"\xff\xfe\x00garbage")
    assert _error(f).startswith("cannot read: ")


def test_truncated_file(good_file: Path) -> None:
    text = good_file.read_text()
    good_file.write_text(text[: len(text) // 2])
    assert _error(good_file).startswith("not JSON (line ")


def test_not_a_snapshot(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    for doc in ([1, 2], {"topology": {}}, "text"):
        f.write_text(json.dumps(doc))
        assert _error(f) == "not a nodetune snapshot (no version field)"
    assert _error(tmp_path / "absent.json") == "no such file"
    assert _error(tmp_path).startswith("cannot read: ")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["topology"]["cpu"].__setitem__("packages", "two"),
     "$.topology.cpu.packages: expected an integer, found 'two'"),
    (lambda d: d["topology"]["pci"][0]["link"].__setitem__("speed_gts", "fast"),
     "$.topology.pci[0].link.speed_gts: expected a number, found 'fast'"),
    (lambda d: d["topology"]["cpu"]["cpus"][3].__setitem__("online", 1),
     "$.topology.cpu.cpus[3].online: expected bool, found 1"),
    (lambda d: d["topology"]["cpu"]["numa_nodes"][0].__setitem__("cpus", {"0": 1}),
     "$.topology.cpu.numa_nodes[0].cpus: expected a list, found dict"),
    (lambda d: d["topology"].pop("node"), "$.topology.node: missing"),
    (lambda d: d["topology"].__setitem__("backend", None),
     "$.topology.backend: expected an object for BackendStatus, found NoneType"),
])
def test_wrong_type_at_a_path(good_file: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(good_file.read_text())
    edit(data)
    good_file.write_text(json.dumps(data))
    assert _error(good_file) == message


def test_from_jsonable_names_the_path() -> None:
    with pytest.raises(SchemaError, match=r"^\$\.available: expected bool, found 'yes'$"):
        from_jsonable(BackendStatus, {"available": "yes", "source": "nvml"})


# -- replay ------------------------------------------------------------------------------------

def test_replay_backend_plays_the_window_back(dgx_job: tuple[Path, Preset]) -> None:
    root, p = dgx_job
    b, st, _ = _nvml(p)
    snap = take_snapshot(Host(str(root)), b, st, seconds=0.2, interval_s=0.1, anonymize=False)
    assert snap.window is not None
    rb = ReplayBackend(_json_round_trip(snap))
    status = rb.open()
    assert (status.available, status.source, status.device_count, status.driver_version) == (
        True, "replay", 8, "580.159.04")
    assert rb.static(3) == snap.topology.gpus[3].static
    assert rb.static(9).missing == {"*": "not in snapshot"}
    assert rb.nvlinks(0) == snap.topology.gpus[0].nvlinks and len(rb.nvlinks(0)) == 18
    # Only NVML's own answers are replayed as NVML answers; sysfs levels stay sysfs levels.
    assert rb.common_ancestor(1, 0) == "NODE" and rb.common_ancestor(0, 2) is None
    recorded = [s.gpus[0] for s in snap.window.samples]
    played = [rb.sample(0) for _ in range(len(recorded) + 2)]
    assert played[: len(recorded)] == recorded
    assert played[-1] == recorded[-1]  # past the end the last sample repeats
    assert rb.sample(9).state == "error"
    # Replaying the replay's topology gives the recorded topology.
    assert probe_topology(Host(str(root)), rb, status).gpu_links == snap.topology.gpu_links


# -- the window -----------------------------------------------------------------------------------

def test_window_follows_gpu_processes_and_workers(dgx_job: tuple[Path, Preset]) -> None:
    root, p = dgx_job
    b, st, _ = _nvml(p)
    host = Host(str(root))
    topo = probe_topology(host, b, st)
    win = record_window(host, b, topo, seconds=0.3, interval_s=0.1)
    assert len(win.samples) >= 3
    assert all(len(s.gpus) == 8 and s.cost_s >= 0 for s in win.samples)
    assert [s.gpus[0].processes[0].used_memory_bytes for s in win.samples][0] == 30 * 2**30
    assert any(s.gpus[3].gpm is not None for s in win.samples)
    gpm = next(s.gpus[3].gpm for s in win.samples if s.gpus[3].gpm is not None)
    assert gpm.pcie_rx_mibps == 2.0
    by_pid = {p.pid: p for p in win.processes}
    assert set(by_pid) == {4242, 4300}
    main, worker = by_pid[4242], by_pid[4300]
    assert (main.role, main.gpus, main.job and main.job.id) == ("gpu", [0, 1], "4242.0")
    assert (worker.role, worker.parent_gpu_pid, worker.gpus) == ("worker", 4242, [0, 1])
    assert main.numa_pages_kb == {"0": 4000, "1": 40}  # read once, at the end of the window
    last = win.samples[-1]
    assert {p.pid: p.state for p in last.processes} == {4242: "S", 4300: "D"}
    assert [t.name for t in next(p for p in last.processes if p.pid == 4242).threads] == ["python", "pt_autograd_0"]
    assert last.cpu.total is not None and set(last.io.psi) == {"cpu", "io", "memory"}
    b.close()


def test_window_with_a_gpu_lost_midway(tmp_path: Path) -> None:
    p = h200_pair(tmp_path)
    gpus = nvlink_pair_gpus(p.gpu_addresses)
    gpus[1].lost_after_samples = 2
    b = NvmlBackend(FakeNvml(gpus))
    st = b.open()
    snap = take_snapshot(Host(str(tmp_path)), b, st, seconds=0.3, interval_s=0.1)
    assert snap.window is not None
    states = [s.gpus[1].state for s in snap.window.samples]
    assert states[:2] == ["ok", "lost"] and set(states[2:]) == {"lost"}
    assert all(s.gpus[0].state == "ok" for s in snap.window.samples)
    assert _json_round_trip(snap) == snap


def test_host_side_sample_without_gpus(tmp_path: Path) -> None:
    laptop(tmp_path)
    host = Host(str(tmp_path))
    rb, status = _nonvml(host)
    topo = probe_topology(host, rb, status)
    s = Sampler(host, rb, topo).sample()
    assert s.gpus == [] and s.processes == []
    assert len(s.cpu.per_cpu) == 8 and s.memory.meminfo_kb["MemTotal"] == 16 * 1048576
    assert [d.device for d in s.io.disks] == ["sda", "sda2", "dm-0"]
    assert [t.chip for t in s.thermal.sensors] == ["x86_pkg_temp"]
