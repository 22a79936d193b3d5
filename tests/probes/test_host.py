"""Host: one root for every read, and a person-readable reason for every read that fails."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetune.probes.host import (
    Host,
    KnobWriteError,
    PathOutsideRoot,
    ProbeError,
    attempt,
    format_cpulist,
    parse_cpulist,
    parse_cpumask,
)
from nodetune.probes.pci import probe_pci
from tests.support.faketree import FakeNode


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    return FakeNode(tmp_path / "root")


def test_path_maps_node_paths_under_the_root(tmp_path: Path) -> None:
    h = Host(str(tmp_path))
    assert h.path("/sys/bus/pci") == os.path.join(str(tmp_path), "sys/bus/pci")
    assert Host("/").path("/proc/stat") == "/proc/stat"
    assert Host("/").live and not h.live
    with pytest.raises(ValueError, match="absolute"):
        h.path("proc/stat")


def test_reads_text_lines_and_integers(node: FakeNode) -> None:
    node.attr("/sys/x/numa_node", 1)
    node.attr("/sys/x/vendor", "0x10de")
    h = Host(str(node.root))
    assert h.read("/sys/x/numa_node") == "1\n"
    assert h.read_line("/sys/x/numa_node") == "1"
    assert h.read_int("/sys/x/numa_node") == 1
    assert h.read_int("/sys/x/vendor", 16) == 0x10DE
    assert h.exists("/sys/x/vendor") and not h.exists("/sys/x/nope")
    assert h.listdir("/sys/x") == ["numa_node", "vendor"]


def test_missing_file_is_a_reason_naming_the_node_path(node: FakeNode) -> None:
    h = Host(str(node.root))
    with pytest.raises(ProbeError) as exc:
        h.read("/sys/bus/pci/devices/0000:18:00.0/numa_node")
    # The reason names the node path, not the temp root a person never sees.
    assert exc.value.reason == "/sys/bus/pci/devices/0000:18:00.0/numa_node: not present"
    for fn in (h.listdir, h.readlink):
        with pytest.raises(ProbeError, match="not present"):
            fn("/sys/nothing")


def test_directory_where_a_file_is_expected(node: FakeNode) -> None:
    node.p("/sys/x/numa_node").mkdir(parents=True)
    with pytest.raises(ProbeError) as exc:
        Host(str(node.root)).read("/sys/x/numa_node")
    assert exc.value.reason == "/sys/x/numa_node: is a directory"


def test_file_where_a_directory_is_expected(node: FakeNode) -> None:
    node.attr("/sys/x", 1)
    with pytest.raises(ProbeError) as exc:
        Host(str(node.root)).listdir("/sys/x")
    assert exc.value.reason == "/sys/x: Not a directory"


def test_binary_and_garbage_content(node: FakeNode) -> None:
    node.p("/sys/x").mkdir(parents=True)
    node.p("/sys/x/bin").write_bytes(b"\xff\xfe\x00\x81garbage")
    node.write("/sys/x/word", "banana\n")
    node.p("/sys/x/nul").write_bytes(b"\x00\x01\x02\n")
    h = Host(str(node.root))
    with pytest.raises(ProbeError, match=r"^/sys/x/bin: not text$"):
        h.read_int("/sys/x/bin")
    assert h.read_bytes("/sys/x/bin") == b"\xff\xfe\x00\x81garbage"
    with pytest.raises(ProbeError, match=r"/sys/x/word: expected an integer, found 'banana'"):
        h.read_int("/sys/x/word")
    with pytest.raises(ProbeError, match="expected an integer"):
        h.read_int("/sys/x/nul")


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    """A tree that an unprivileged user can walk (pytest's tmp_path sits under a 0700 directory)."""
    d = Path(tempfile.mkdtemp(prefix="nodetune-perm-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _as_nobody(fn: object) -> dict[str, object]:
    """Run `fn()` in a forked child that dropped root; return its JSON-able result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(r)
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            except OSError as exc:
                out: dict[str, object] = {"skip": f"cannot drop root: {exc}"}
            else:
                out = {"result": fn()}  # type: ignore[operator]
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"skip": "child wrote nothing"}')


def test_permission_denied_is_a_reason(world_readable_root: Path) -> None:
    """chmod 000 does not stop root (CAP_DAC_OVERRIDE): as root the read runs in a child that
    dropped to `nobody`; as a normal user it runs here."""
    node = FakeNode(world_readable_root)
    node.attr("/sys/x/ok", 7)
    node.attr("/sys/x/secret", 1)
    os.chmod(node.p("/sys/x/secret"), 0o000)
    h = Host(str(world_readable_root))

    def read_both() -> list[str]:
        out = []
        for p in ("/sys/x/ok", "/sys/x/secret"):
            try:
                out.append(h.read_line(p))
            except ProbeError as exc:
                out.append(exc.reason)
        return out

    if os.geteuid() == 0:
        got = _as_nobody(read_both)
        if "skip" in got:
            pytest.skip(str(got["skip"]))
        result = got["result"]
    else:
        result = read_both()
    assert result == ["7", "/sys/x/secret: permission denied"]


def test_permission_denied_reaches_a_probe_as_a_missing_reason(world_readable_root: Path) -> None:
    node = FakeNode(world_readable_root)
    node.pci_device(["pci0000:00", "0000:00:05.0"], 0x030200, 0x10DE, 0x2335, 0, [0, 1], driver="nvidia")
    os.chmod(node.p("/sys/devices/pci0000:00/0000:00:05.0/numa_node"), 0o000)
    h = Host(str(world_readable_root))

    def probe() -> dict[str, object]:
        dev = probe_pci(h)[0]
        return {"numa": dev.numa_node, "missing": dev.missing, "width": dev.link.width}

    if os.geteuid() == 0:
        got = _as_nobody(probe)
        if "skip" in got:
            pytest.skip(str(got["skip"]))
        result = got["result"]
    else:
        result = probe()
    assert result == {
        "numa": None,
        "missing": {"numa_node": "/sys/bus/pci/devices/0000:00:05.0/numa_node: permission denied"},
        "width": 16,
    }


def test_attempt_records_the_reason_and_returns_none() -> None:
    missing: dict[str, str] = {}

    def fail() -> int:
        raise ProbeError("/proc/x: not present")

    assert attempt(missing, "x", fail) is None
    assert attempt(missing, "y", lambda: 3) == 3
    assert missing == {"x": "/proc/x: not present"}


def test_attempt_lets_programming_errors_through() -> None:
    # Only ProbeError is a reported value; a bug in a probe must still surface in tests.
    with pytest.raises(ZeroDivisionError):
        attempt({}, "x", lambda: 1 // 0)


def test_realpath_follows_relative_sysfs_links_and_stays_inside_the_root(node: FakeNode) -> None:
    node.attr("/sys/devices/pci0000:00/0000:00:05.0/numa_node", 0)
    node.link("/sys/bus/pci/devices/0000:00:05.0", "/sys/devices/pci0000:00/0000:00:05.0")
    h = Host(str(node.root))
    assert h.realpath("/sys/bus/pci/devices/0000:00:05.0") == "/sys/devices/pci0000:00/0000:00:05.0"
    assert h.readlink("/sys/bus/pci/devices/0000:00:05.0") == "../../../devices/pci0000:00/0000:00:05.0"
    assert h.realpath("/") == "/"


def test_unroot_does_not_take_a_sibling_directory_for_the_root(tmp_path: Path) -> None:
    # /tmp/x/root2 starts with the string "/tmp/x/root" but is not under it.
    root, sibling = tmp_path / "root", tmp_path / "root2"
    (root / "sys").mkdir(parents=True)
    (sibling / "file").parent.mkdir(parents=True)
    (sibling / "file").write_text("x")
    os.symlink(os.path.relpath(sibling / "file", root / "sys"), root / "sys" / "escape")
    h = Host(str(root))
    assert h.unroot(str(sibling / "file")) == str(sibling / "file")
    # and a link that climbs out to the sibling is refused, never followed
    with pytest.raises(PathOutsideRoot, match=r"^/sys/escape: symlink /sys/escape -> \.\./\.\./root2/file climbs"):
        h.realpath("/sys/escape")
    assert not h.exists("/sys/escape")


def test_write_reasons(node: FakeNode) -> None:
    node.attr("/sys/block/sda/queue/read_ahead_kb", 128)
    node.p("/sys/block/sda/queue/scheduler").mkdir(parents=True)
    h = Host(str(node.root))
    h.write("/sys/block/sda/queue/read_ahead_kb", "4096")
    assert h.read_int("/sys/block/sda/queue/read_ahead_kb") == 4096
    with pytest.raises(KnobWriteError, match=r"^/sys/block/sdz/queue/nr_requests: not present on this node$"):
        h.write("/sys/block/sdz/queue/nr_requests", "64")
    with pytest.raises(KnobWriteError, match=r"^/sys/block/sda/queue/scheduler: Is a directory$"):
        h.write("/sys/block/sda/queue/scheduler", "none")


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0-3,8,10-11\n", [0, 1, 2, 3, 8, 10, 11]),
        ("0\n", [0]),
        ("\n", []),
        ("0-7:2", [0, 2, 4, 6]),  # stride form (cpusets, isolcpus)
        ("3,1,1-2", [1, 2, 3]),
    ],
)
def test_parse_cpulist(text: str, cpus: list[int]) -> None:
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize("text", ["0-x", "a", "1-2-3,", "0-3:z"])
def test_parse_cpulist_garbage(text: str) -> None:
    with pytest.raises(ProbeError, match=r"^/sys/x/cpulist: bad cpu list"):
        parse_cpulist(text, "/sys/x/cpulist")


def test_parse_cpumask_and_format() -> None:
    assert parse_cpumask("00000000,0000ffff\n") == list(range(16))
    assert parse_cpumask("1,00000001") == [0, 32]
    with pytest.raises(ProbeError, match="bad cpu mask"):
        parse_cpumask("zz")
    assert format_cpulist([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert format_cpulist(set()) == ""
    for cpus in ([0], [1, 3, 5], list(range(224)), [0, 1, 56, 57, 58]):
        assert parse_cpulist(format_cpulist(cpus)) == cpus
