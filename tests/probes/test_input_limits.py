"""Numbers and sizes read from files are checked: snapshots (gzip bombs, nesting, huge and
non-finite numbers, process counts), CPU lists, hugepage pools and profile numbers. Each refusal
is one line naming what was refused and where; nothing on the node changes."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from nodetune.probes.host import MAX_CPUS, Host, ProbeError, parse_cpulist, parse_cpumask
from nodetune.probes.serde import SchemaError, parse_json
from nodetune.probes.snapshot import MAX_PROCESSES, SnapshotError, load_snapshot
from nodetune.probes.topology import probe_cpu_topology
from nodetune.tuners.errors import ProfileError, TargetError
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import parse_profile, profile_from_data
from tests.support.faketree import FakeNode
from tests.support.tuners_support import ctx_for, dgx_copy, knob_values, laptop_with_job

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "h200-dataloader-starved.json.gz"


@pytest.fixture(scope="module")
def good_doc() -> dict[str, Any]:
    """The shipped real-node snapshot (topology and a window of samples) as parsed JSON."""
    doc: dict[str, Any] = json.loads(gzip.decompress(EXAMPLE.read_bytes()))
    assert len(doc["window"]["samples"]) > 1
    return doc


def _error(path: Path, **kw: Any) -> str:
    with pytest.raises(SnapshotError) as exc:
        load_snapshot(str(path), **kw)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg[len(f"{path}: "):]


# -- snapshots -----------------------------------------------------------------------------------

def _bomb(path: Path, mib: int) -> None:
    """A gzip of `mib` MiB of one repeated byte, written in a stream (a few MB for 1 GiB)."""
    co = zlib.compressobj(1, zlib.DEFLATED, 31)  # fast; zeros shrink ~200x even so
    block = b"0" * (1 << 20)
    with open(path, "wb") as fh:
        fh.write(co.compress(b'{"version": 1, "note": "'))
        for _ in range(mib):
            fh.write(co.compress(block))
        fh.write(co.compress(b'"}') + co.flush())


def test_gzip_bomb_is_refused_while_inflating_with_bounded_memory(tmp_path: Path) -> None:
    """1 GiB inflated from a ~1 MB file: refused at 512 MiB, and the loader never holds much more."""
    f = tmp_path / "bomb.json.gz"
    _bomb(f, 1024)
    assert f.stat().st_size < 8 << 20
    code = ("import resource, sys\n"
            "from nodetune.probes.snapshot import SnapshotError, load_snapshot\n"
            "try:\n    load_snapshot(sys.argv[1])\nexcept SnapshotError as e:\n    print(e)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")
    out = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True, check=True).stdout
    msg, rss_mib = out.strip().split("\n")
    assert msg == f"{f}: inflates to more than 256 MiB; refused (the limit on a snapshot's size)"
    assert int(rss_mib) < 512 + 200, f"peak RSS {rss_mib} MiB"  # the cap plus the interpreter, not 1 GiB+


def test_size_limits_apply_to_plain_and_gzip_files(tmp_path: Path, good_doc: dict[str, Any]) -> None:
    plain, gz = tmp_path / "s.json", tmp_path / "s.json.gz"
    plain.write_text(json.dumps(good_doc))
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert load_snapshot(str(plain)).window is not None and load_snapshot(str(gz)).window is not None
    assert _error(plain, max_bytes=4096) == "is more than 4096 bytes; refused (the limit on a snapshot's size)"
    assert _error(gz, max_bytes=4096) == "inflates to more than 4096 bytes; refused (the limit on a snapshot's size)"
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert _error(fifo) == "cannot read: a FIFO, not a regular file; refused"  # and no hang


def test_json_nested_100k_deep_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "deep.json"
    f.write_text('{"version": 1, "note": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert _error(f) == "nested too deeply to read (a snapshot is a few levels deep)"


@pytest.mark.parametrize(("where", "value", "message"), [
    (("window", "samples", 0, "t"), "1e308", "$.window.samples[0].t: 1e+308 is out of range (beyond ±1.84e+19)"),
    (("window", "samples", 0, "t"), "1e400", "number 1e400 is out of range (beyond ±1.84e+19)"),
    (("window", "samples", 0, "t"), "NaN", "NaN is not a number (nodetune never writes NaN or Infinity)"),
    (("window", "samples", 0, "t"), "-Infinity", "-Infinity is not a number (nodetune never writes NaN or Infinity)"),
    (("window", "seconds"), "1" + "0" * 400, "integer of 401 digits is out of range (beyond ±1.84e+19)"),
    (("window", "seconds"), "7" * 5000, "integer of 5000 digits is out of range (beyond ±1.84e+19)"),
    (("topology", "cpu", "packages"), str(2**64 + 1),
     "$.topology.cpu.packages: 18446744073709551617 is out of range (beyond ±1.84e+19)"),
])
def test_numbers_out_of_range_are_refused_with_their_path(tmp_path: Path, good_doc: dict[str, Any],
                                                          where: tuple[Any, ...], value: str, message: str) -> None:
    doc = json.loads(json.dumps(good_doc))
    d: Any = doc
    for k in where[:-1]:
        d = d[k]
    d[where[-1]] = "@@NUMBER@@"
    f = tmp_path / "n.json"
    f.write_text(json.dumps(doc).replace('"@@NUMBER@@"', value))
    assert _error(f) == message


def test_more_processes_than_the_limit_are_refused_before_decoding(tmp_path: Path, good_doc: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(good_doc))
    doc["window"]["processes"] = [{}] * (MAX_PROCESSES + 1)
    f = tmp_path / "p.json"
    f.write_text(json.dumps(doc))
    assert _error(f) == f"$.window.processes: {MAX_PROCESSES + 1} processes; more than {MAX_PROCESSES} is refused"
    doc["window"]["processes"] = []
    doc["window"]["samples"][1]["processes"] = [{}] * (MAX_PROCESSES + 1)
    f.write_text(json.dumps(doc))
    assert _error(f) == (f"$.window.samples[1].processes: {MAX_PROCESSES + 1} processes; more than "
                         f"{MAX_PROCESSES} is refused")


def test_parse_json_is_strict_and_plain_json_still_loads() -> None:
    assert parse_json('{"a": [1, 2.5, -3e10, null, true]}') == {"a": [1, 2.5, -3e10, None, True]}
    with pytest.raises(SchemaError, match="Infinity is not a number"):
        parse_json("[Infinity]")
    with pytest.raises(json.JSONDecodeError):
        parse_json("{")


# -- CPU lists -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("0-99999999", "--pin-cpus: cpu list '0-99999999' names CPU 99999999; more than 65536 CPUs is refused "
                   "(the kernel's NR_CPUS is at most 8192)"),
    ("0-999999999", "--pin-cpus: cpu list '0-999999999' names CPU 999999999; more than 65536 CPUs is refused "
                    "(the kernel's NR_CPUS is at most 8192)"),
    ("9" * 5000, "--pin-cpus: cpu list '" + "9" * 40 + "' names CPU of more than 12 digits; more than 65536 CPUs "
                 "is refused (the kernel's NR_CPUS is at most 8192)"),
    ("7-3", "--pin-cpus: bad cpu list '7-3'"),
    ("0-7:0", "--pin-cpus: bad cpu list '0-7:0'"),
])
def test_cpu_lists_are_bounded(text: str, message: str) -> None:
    with pytest.raises(ProbeError) as exc:
        parse_cpulist(text, "--pin-cpus")
    assert exc.value.reason == message
    assert parse_cpulist(f"0-{MAX_CPUS - 1}") == list(range(MAX_CPUS))


def test_cpu_masks_are_bounded() -> None:
    with pytest.raises(ProbeError, match=r"^m: cpu mask of 20000 hex digits is wider than 65536 CPUs; refused$"):
        parse_cpumask("f" * 20000, "m")
    assert parse_cpumask("0" * 20000 + "3") == [0, 1]  # leading zeros cost nothing


def test_pin_cpus_out_of_range_is_a_profile_error(tmp_path: Path) -> None:
    laptop_with_job(tmp_path / "root")
    with pytest.raises(ProfileError, match=r"^t: \[pinning\] cpus: cpus: cpu list '0-99999999' names CPU 99999999"):
        profile_from_data({"pinning": {"pids": [4242], "cpus": "0-99999999"}}, "t", "t")


def test_sysfs_cpu_online_out_of_range(tmp_path: Path) -> None:
    root = tmp_path / "root"
    fn = laptop_with_job(root)
    fn.attr("/sys/devices/system/cpu/online", "0-999999999")
    before = knob_values(root)
    cpu = probe_cpu_topology(Host(str(root)))  # a probe reports it, it does not crash
    assert cpu.missing["online"].startswith("/sys/devices/system/cpu/online: cpu list '0-999999999' names CPU")
    with pytest.raises(TargetError, match=r"^online CPUs unknown: /sys/devices/system/cpu/online: cpu list "
                                          r"'0-999999999' names CPU 999999999; more than 65536"):
        make_plan(ctx_for(root), profile_from_data({"pinning": {"pids": [4242], "cpus": "0-3"}}, "t", "t"))
    assert knob_values(root) == before


# -- hugepages -----------------------------------------------------------------------------------

def test_hugepages_beyond_physical_memory_are_refused_at_plan_time(tmp_path: Path) -> None:
    dgx = dgx_copy(tmp_path)
    root = dgx.node.root
    before = knob_values(root)
    prof = profile_from_data({"hugepages": {"hugetlb_pages_per_node": 10**11}}, "big", "big.toml")
    with pytest.raises(ProfileError) as exc:
        make_plan(ctx_for(root), prof)
    total_kb = int(dgx.node.p("/proc/meminfo").read_text().split()[1])  # "MemTotal: N kB"
    assert exc.value.reason == (
        f"[hugepages] hugetlb_pages_per_node = {10**11}: {10**11} x 2048 kB pages on 2 NUMA node(s) is "
        f"{10**11 * 2048 * 2 / 2**20:.4g} GiB, more than this node's memory (MemTotal {total_kb / 2**20:.4g} GiB: "
        f"at most {total_kb // 2048 // 2} pages per node); refused")
    assert knob_values(root) == before
    # what fits is planned
    ok = profile_from_data({"hugepages": {"hugetlb_pages_per_node": 1024}}, "ok", "ok.toml")
    assert len(make_plan(ctx_for(root), ok).changes) == 2


def test_hugepages_nodes_and_node_list_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"^t: \[hugepages\] nodes: 5000 is not a NUMA node number \(0\.\.1023\)$"):
        profile_from_data({"hugepages": {"hugetlb_pages_per_node": 1, "nodes": [0, 5000]}}, "t", "t")
    root = tmp_path / "root"
    fn = laptop_with_job(root)
    fn.attr("/sys/devices/system/node/online", "0-99999999")
    with pytest.raises(TargetError, match=r"^NUMA nodes unknown: /sys/devices/system/node/online: cpu list"):
        make_plan(ctx_for(root), profile_from_data({"hugepages": {"hugetlb_pages_per_node": 1}}, "t", "t"))


# -- profile numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize(("toml", "message"), [
    ("[hugepages]\nhugetlb_pages_per_node = 99999999999999999999\n",
     "p.toml: [hugepages] hugetlb_pages_per_node: 99999999999999999999 is out of range (beyond 64 bits)"),
    ("[hugepages]\nhugetlb_pages_per_node = inf\n",
     "p.toml: [hugepages] hugetlb_pages_per_node: expected an integer, found inf"),
    ("[readahead]\nread_ahead_kb = nan\n", "p.toml: [readahead] read_ahead_kb: expected an integer, found nan"),
    ("[readahead]\nread_ahead_kb = 1e400\n", "p.toml: [readahead] read_ahead_kb: expected an integer, found inf"),
    ("[readahead]\nread_ahead_kb = 70000\n", "p.toml: [readahead] read_ahead_kb: 70000 is outside 4..65536"),
    ("[pinning]\npids = [1, 99999999]\n", "p.toml: [pinning] pids: 99999999 is not a process id"),
    ("[gpu]\nlocked_clocks_mhz = [1, 99999999999999999999]\n",
     "p.toml: [gpu] locked_clocks_mhz: 99999999999999999999 is out of range (beyond 64 bits)"),
])
def test_profile_numbers_are_checked(toml: str, message: str) -> None:
    with pytest.raises(ProfileError) as exc:
        parse_profile(toml, "p", "p.toml")
    assert exc.value.reason == message


# -- Host reads ----------------------------------------------------------------------------------

def test_host_read_limits(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path / "root")
    fn.write("/proc/big", "x" * 5000)
    fn.write("/sys/long", "9" * 5000 + "\n")
    h = Host(str(fn.root))
    with pytest.raises(ProbeError, match=r"^/proc/big: larger than 4096 bytes; refused$"):
        h.read("/proc/big", limit=4096)
    assert len(h.read("/proc/big")) == 5000
    with pytest.raises(ProbeError, match=r"^/sys/long: expected an integer, found 5000 characters$"):
        h.read_int("/sys/long")
