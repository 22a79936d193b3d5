"""`nodetune topo` and `nodetune snapshot` on fake roots, replay, and errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nodetune.cli.app import app
from nodetune.probes.host import Host
from nodetune.probes.node import probe_topology
from nodetune.probes.nvml_backend import NvmlBackend
from nodetune.probes.sampler import take_snapshot
from nodetune.probes.serde import to_jsonable
from nodetune.probes.snapshot import load_snapshot, save_snapshot
from nodetune.probes.source import open_source
from tests.support.fakenvml import FakeNvml, nvlink_pair_gpus
from tests.support.faketree import Preset, dgx_h100, h200_pair, laptop, vm_h200

# Wide enough that rich does not elide table cells ("GP…").
runner = CliRunner(env={"COLUMNS": "220", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def dgx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dgx")
    dgx_h100(root)
    return root


def _ok(args: list[str]) -> str:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, (r.output, r.exception)
    return r.stdout


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a fresh interpreter: what a person's shell runs."""
    return subprocess.run([sys.executable, "-c", "from nodetune.cli.app import main; main()", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def _one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nodetune: error: "), r.stderr
    return lines[0][len("nodetune: error: "):]


# -- topo ----------------------------------------------------------------------------------------

def test_topo_dgx_text(dgx: Path) -> None:
    out = _ok(["topo", "--root", str(dgx)])
    assert "dgx01" in out and "kernel 6.8.0-45-generic" in out
    assert "2 socket(s), 112 cores, 224 online CPUs (0-223)" in out
    assert "node1: CPUs 56-111,168-223" in out and "distances [21, 10]" in out
    assert "GPU4 ?  0000:9a:00.0  NUMA 1  local CPUs 56-111,168-223  PCIe Gen5 x16" in out
    assert "nvidia-smi topo -m letters" in out
    matrix = [line for line in out.splitlines() if line.startswith("│ GPU0 ")][0]
    # GPU0..GPU7, then the two HCAs: no NVML under --root, so PCIe levels from sysfs.
    assert [c.strip() for c in matrix.split("│")[2:14]] == [
        "X", "NODE", "NODE", "NODE", "SYS", "SYS", "SYS", "SYS", "PIX", "SYS", "0-55,112-167", "0"]
    assert "ibp25s0, mlx5_0" in out and "GPU0 (PIX)" in out and "GPU4 (NODE)" in out
    assert "NVML describes the live node only" in out  # said once per GPU under "Not available"


def test_topo_vm_and_laptop_text(tmp_path: Path) -> None:
    vm_h200(tmp_path / "vm")
    laptop(tmp_path / "lap")
    vm = _ok(["topo", "--root", str(tmp_path / "vm")])
    assert "NUMA unknown (-1)  local CPUs 0-15  PCIe Gen5 x16" in vm
    assert "numa_node reads -1: firmware did not report the device's NUMA node" in vm
    assert [c.strip() for c in [x for x in vm.splitlines() if x.startswith("│ GPU0 ")][0].split("│")[2:4]] == [
        "X", "PHB"]
    lap = _ok(["topo", "--root", str(tmp_path / "lap")])
    assert "0 GPU(s)" in lap and "enp0s31f6" in lap and "GPU links" not in lap


def test_topo_json(dgx: Path) -> None:
    data = json.loads(_ok(["topo", "--root", str(dgx), "--json"]))
    assert (data["cpu"]["packages"], data["cpu"]["cores"], len(data["cpu"]["online"])) == (2, 112, 224)
    assert [g["numa_node"] for g in data["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert data["backend"]["available"] is False
    assert {(lk["a"], lk["b"]): lk["level"] for lk in data["gpu_links"]}[(0, 7)] == "SYS"
    assert sorted(d["kind"] for d in data["pci"]).count("infiniband") == 2


def test_topo_json_through_open_source_with_nvml(tmp_path: Path) -> None:
    p = h200_pair(tmp_path)
    src = open_source(str(tmp_path), nvml=FakeNvml(nvlink_pair_gpus(p.gpu_addresses)))
    try:
        topo = probe_topology(src.host, src.backend, src.status)
    finally:
        src.close()
    assert src.status.available and topo.link(0, 1).label == "NV18"  # type: ignore[union-attr]


# -- snapshot and replay ---------------------------------------------------------------------------

def test_snapshot_command(tmp_path: Path) -> None:
    vm_h200(tmp_path / "vm")
    out = tmp_path / "snap.json"
    r = runner.invoke(app, ["snapshot", "-o", str(out), "--seconds", "0.3", "--interval", "0.11",
                            "--root", str(tmp_path / "vm"), "--note", "idle VM"])
    assert r.exit_code == 0, (r.output, r.exception)
    snap = load_snapshot(str(out))
    assert snap.window is not None and len(snap.window.samples) >= 3
    assert r.stderr.strip() == f"wrote {out}: 1 GPU(s), {len(snap.window.samples)} sample(s)"
    assert snap.note == "idle VM" and snap.topology.node.hostname == "redacted"
    assert snap.window.samples[-1].cpu.total is not None and snap.window.samples[-1].gpus == []
    assert snap.topology.gpus[0].numa_node is None


@pytest.mark.parametrize("preset", [dgx_h100, vm_h200, laptop])
def test_replay_shows_what_the_live_command_showed(tmp_path: Path, preset) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "node"
    preset(root)
    snap = tmp_path / "snap.json"
    _ok(["snapshot", "-o", str(snap), "--seconds", "0", "--root", str(root), "--keep-ids"])
    live = _ok(["topo", "--root", str(root), "--json"])
    replayed = _ok(["topo", "--replay", str(snap), "--json"])
    assert json.loads(replayed) == json.loads(live)
    assert replayed == live
    assert _ok(["topo", "--replay", str(snap)]) == _ok(["topo", "--root", str(root)])


def test_replay_of_an_nvml_snapshot(tmp_path: Path) -> None:
    p: Preset = h200_pair(tmp_path / "node")
    b = NvmlBackend(FakeNvml(nvlink_pair_gpus(p.gpu_addresses)))
    snap = take_snapshot(Host(str(tmp_path / "node")), b, b.open(), seconds=0.2, interval_s=0.1, anonymize=False)
    b.close()
    f = tmp_path / "snap.json"
    save_snapshot(snap, str(f))
    assert json.loads(_ok(["topo", "--replay", str(f), "--json"])) == json.loads(json.dumps(to_jsonable(snap.topology)))
    text = _ok(["topo", "--replay", str(f)])
    assert "NV18" in text and "GPU0 NVIDIA H200  0000:00:05.0  NUMA unknown (-1)" in text
    assert "nvml, driver 580.159.04" in text


# -- errors are one line -----------------------------------------------------------------------------

def test_root_that_does_not_exist(tmp_path: Path) -> None:
    assert (_one_error_line(_cli("topo", "--root", str(tmp_path / "nope")))
            == f"--root {tmp_path / 'nope'}: not a directory")


def test_replay_of_a_garbage_file(tmp_path: Path) -> None:
    f = tmp_path / "garbage.json"
    f.write_bytes(b"\x00\x01{not json")
    msg = _one_error_line(_cli("topo", "--replay", str(f)))
    assert msg.startswith(f"{f}: not JSON (line 1, column 1")


def test_replay_of_a_missing_file_and_of_a_damaged_snapshot(tmp_path: Path) -> None:
    assert (_one_error_line(_cli("topo", "--replay", str(tmp_path / "none.json")))
            == f"{tmp_path / 'none.json'}: no such file")
    laptop(tmp_path / "lap")
    f = tmp_path / "snap.json"
    _ok(["snapshot", "-o", str(f), "--seconds", "0", "--root", str(tmp_path / "lap")])
    data = json.loads(f.read_text())
    data["topology"]["gpus"] = "none"
    f.write_text(json.dumps(data))
    assert _one_error_line(_cli("topo", "--replay", str(f), "--json")) == (
        f"{f}: $.topology.gpus: expected a list, found str")
    data["version"] = 0
    f.write_text(json.dumps(data))
    assert _one_error_line(_cli("topo", "--replay", str(f))) == (
        f"{f}: snapshot version 0; this nodetune reads version 1")


def test_snapshot_to_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    laptop(tmp_path / "lap")
    out = tmp_path / "no" / "such" / "dir" / "s.json"
    msg = _one_error_line(_cli("snapshot", "-o", str(out), "--seconds", "0", "--root", str(tmp_path / "lap")))
    assert msg == f"{out}: cannot write snapshot: No such file or directory"
    assert not out.parent.exists()


def test_snapshot_with_a_bad_root(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    msg = _one_error_line(_cli("snapshot", "-o", str(tmp_path / "s.json"), "--seconds", "0", "--root", str(f)))
    assert msg == f"--root {f}: not a directory"
    assert not (tmp_path / "s.json").exists()


# -- plain text without rich is rich's text ---------------------------------------------------------

def _rich_text(topology, width: int) -> str:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    from nodetune.cli.render_topo import render_topology

    buf = io.StringIO()
    render_topology(topology, Console(file=buf, width=width, soft_wrap=True, emoji=False, highlight=False,
                                      force_terminal=False, color_system=None))
    return buf.getvalue()


@pytest.mark.parametrize("preset", [dgx_h100, vm_h200, laptop])
def test_plain_topo_is_what_rich_draws(tmp_path: Path, preset) -> None:  # type: ignore[no-untyped-def]
    from nodetune.cli.render_topo import plain_topology

    preset(tmp_path)
    src = open_source(str(tmp_path))
    try:
        topology = probe_topology(src.host, src.backend, src.status)
    finally:
        src.close()
    for width in (250, 400):
        assert plain_topology(topology, width) == _rich_text(topology, width)
    assert plain_topology(topology, 40) is None or preset is laptop  # rich would shrink the tables


def test_plain_topo_of_nvml_gpus_and_names_only_rich_can_lay_out(tmp_path: Path) -> None:
    from nodetune.cli.render_topo import plain_topology

    p = h200_pair(tmp_path)
    src = open_source(str(tmp_path), nvml=FakeNvml(nvlink_pair_gpus(p.gpu_addresses)))
    try:
        topology = probe_topology(src.host, src.backend, src.status)
    finally:
        src.close()
    text = plain_topology(topology, 250)
    assert text is not None and "NV18" in text and text == _rich_text(topology, 250)
    topology.node.hostname = "nœud"  # wide or combining characters: rich measures them
    assert plain_topology(topology, 250) is None
    topology.node.hostname = "node [bold]x[/]"  # literal, not markup, in both
    assert plain_topology(topology, 250) == _rich_text(topology, 250)
    assert "node [bold]x[/]" in _rich_text(topology, 250)


def test_topo_without_typer_prints_what_typer_prints(dgx: Path) -> None:
    fast = _cli("topo", "--root", str(dgx))
    assert fast.returncode == 0 and fast.stdout == _ok(["topo", "--root", str(dgx)])
    assert _cli("topo", f"--root={dgx}", "--json").stdout == _ok(["topo", "--root", str(dgx), "--json"])
    forced = subprocess.run([sys.executable, "-c", "from nodetune.cli.app import main; main()", "topo", "--root",
                             str(dgx)], capture_output=True, text=True, timeout=120, check=False,
                            env={**__import__("os").environ, "FORCE_COLOR": "1", "COLUMNS": "250"})
    assert forced.returncode == 0 and "\x1b[" in forced.stdout  # a forced terminal is rich's to draw
