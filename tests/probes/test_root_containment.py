"""Nothing outside `--root` is read or written: `..`, symlinks out of the tree, crafted journal
paths, cgroups and profiles, and data paths with no block device behind them.

Each attack runs on a fake tree next to an "outside" directory holding a file a hostile tree
points at; the test asserts the exact refusal (or the chroot-style containment) and that neither
the tree nor the outside file changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodetune.probes.host import Host, KnobWriteError, PathOutsideRoot, ProbeError
from nodetune.tuners.contract import CHANGE, SKIP, Knob
from nodetune.tuners.errors import ProfileError, TargetError
from nodetune.tuners.knobs.pinning import cgroup_pids
from nodetune.tuners.knobs.readahead import devices_for_path
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import load_profile, profile_from_data
from nodetune.tuners.transaction.record import APPLIED, BEGIN, INTENT, Record
from tests.support.faketree import FakeNode, laptop
from tests.support.tuners_support import (
    ctx_for,
    dgx_copy,
    engine_for,
    journal_for,
    knob_values,
    laptop_with_job,
)

NVME1 = "/sys/devices/pci0000:84/0000:84:03.0/0000:85:00.0/nvme/nvme1/nvme1n1"


def tree(root: str | Path) -> dict[str, object]:
    """Every file's bytes and every link's target under `root` (the journal's own files aside)."""
    out: dict[str, object] = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            f = Path(d) / name
            rel = str(f.relative_to(root))
            if rel.startswith("var/lib/nodetune") or rel.startswith("run/nodetune"):
                continue
            if f.is_symlink():
                out[rel] = "-> " + os.readlink(f)
            elif f.is_file():
                out[rel] = f.read_bytes()
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the tree with a file a hostile tree points at."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret").write_text("do not touch\n")
    return d


# -- Host ----------------------------------------------------------------------------------------

def test_dotdot_above_the_root_is_refused_for_every_operation(tmp_path: Path, outside: Path) -> None:
    fn = FakeNode(tmp_path / "root")
    fn.attr("/sys/x", 1)
    h = Host(str(fn.root))
    bad = "/sys/../../outside/secret"  # <root>/sys/../.. is the tmp dir holding outside/
    msg = rf"^{bad}: '\.\.' climbs above the root {fn.root}; refused$"
    for op in (h.read, h.read_bytes, h.listdir, h.readlink, h.realpath, h.path, h.stat):
        with pytest.raises(PathOutsideRoot, match=msg):
            op(bad)
    with pytest.raises(PathOutsideRoot, match=r"^/sys/\.\./\.\./outside/secret: a knob path with '\.\.' is refused"):
        h.write(bad, "pwned")
    assert not h.exists(bad)
    assert (outside / "secret").read_text() == "do not touch\n"
    # a refusal is both a ProbeError (reads report it) and a KnobWriteError (writes report it)
    assert issubclass(PathOutsideRoot, ProbeError) and issubclass(PathOutsideRoot, KnobWriteError)
    # `..` that stays inside is resolved physically, as the kernel would
    assert h.read_int("/sys/../sys/x") == 1


def test_dotdot_is_refused_on_the_live_root_too() -> None:
    h = Host("/")
    with pytest.raises(PathOutsideRoot, match=r"^/sys/\.\./\.\./\.\./tmp/x: '\.\.' climbs above the root /; refused$"):
        h.read("/sys/../../../tmp/x")
    with pytest.raises(PathOutsideRoot, match="a knob path with '..' is refused"):
        h.write("/sys/../tmp/nodetune-never-written", "x")
    assert not os.path.exists("/tmp/nodetune-never-written")
    assert h.read("/proc/self/stat")  # the hot path is untouched


def test_absolute_symlink_means_the_same_path_under_the_root(tmp_path: Path, outside: Path) -> None:
    fn = FakeNode(tmp_path / "root")
    fn.attr("/etc/real", "inside")
    os.symlink("/etc/real", fn.p("/etc/abs"))  # as in a mounted image: absolute, meant for its own root
    os.symlink(str(outside / "secret"), fn.p("/etc/out"))  # absolute, naming a real file outside
    h = Host(str(fn.root))
    assert h.read_line("/etc/abs") == "inside"
    assert h.realpath("/etc/abs") == "/etc/real"
    with pytest.raises(ProbeError, match=r"^/etc/out: not present$"):  # <root>/<outside>/secret: absent
        h.read("/etc/out")
    h.write("/etc/abs", "written inside\n")
    assert fn.p("/etc/real").read_text() == "written inside\n"
    with pytest.raises(KnobWriteError, match=r"^/etc/out: not present on this node$"):
        h.write("/etc/out", "pwned")
    assert (outside / "secret").read_text() == "do not touch\n"


def test_relative_symlink_climbing_out_is_refused(tmp_path: Path, outside: Path) -> None:
    fn = FakeNode(tmp_path / "root")
    fn.p("/sys/block").mkdir(parents=True)
    os.symlink("../../../outside", fn.p("/sys/block/evil"))
    h = Host(str(fn.root))
    msg = r"^/sys/block/evil/secret: symlink /sys/block/evil -> \.\./\.\./\.\./outside climbs above the root"
    for op in (h.read, h.listdir, h.realpath):
        with pytest.raises(PathOutsideRoot, match=msg):
            op("/sys/block/evil/secret")
    with pytest.raises(PathOutsideRoot, match=msg):
        h.write("/sys/block/evil/secret", "pwned")
    assert not h.exists("/sys/block/evil/secret")
    assert (outside / "secret").read_text() == "do not touch\n"


def test_a_fifo_in_the_tree_reads_as_empty_instead_of_hanging(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path / "root")
    fn.p("/proc").mkdir()
    os.mkfifo(fn.p("/proc/meminfo"))
    assert Host(str(fn.root)).read("/proc/meminfo") == ""


def test_reads_without_openat2_give_the_same_answers(tmp_path: Path, outside: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python walk (kernels before 5.6, seccomp without openat2) is the same contract."""
    from nodetune.probes import host as host_mod

    monkeypatch.setattr(host_mod, "_openat2", None)
    monkeypatch.setattr(host_mod, "_openat2_probed", True)
    fn = FakeNode(tmp_path / "root")
    fn.attr("/etc/real", "inside")
    os.symlink("/etc/real", fn.p("/etc/abs"))
    os.symlink("../../outside/secret", fn.p("/etc/climb"))
    h = Host(str(fn.root))
    assert h.read_line("/etc/abs") == "inside" and h.listdir("/etc") == ["abs", "climb", "real"]
    with pytest.raises(PathOutsideRoot, match=r"symlink /etc/climb -> \.\./\.\./outside/secret climbs"):
        h.read("/etc/climb")
    with pytest.raises(ProbeError, match=r"^/etc/nope: not present$"):
        h.read("/etc/nope")


# -- attacks through the root -------------------------------------------------------------------

def test_rollback_of_a_crafted_journal_path_writes_nothing_outside(tmp_path: Path) -> None:
    """A journal knob `/sys/../../../tmp/x` (damaged or crafted) is refused by Host.write."""
    root = tmp_path / "a" / "b" / "root"
    laptop_with_job(root)
    victim = tmp_path / "a" / "tmp" / "x"  # what <root>/sys/../../../tmp/x names
    victim.parent.mkdir(parents=True)
    victim.write_text("original\n")
    before = tree(root)
    evil = "/sys/../../../tmp/x"
    knob = Knob(id=f"sysfs:{evil}", kind="sysfs", group="readahead", label="read_ahead_kb evil", path=evil)
    with journal_for(root) as j:
        j.append(Record(txn="t-evil", state=BEGIN, t=1.0, profile="evil"))
        j.append(Record(txn="t-evil", state=INTENT, t=1.0, seq=0, knob=knob, tuner="readahead",
                        original="pwned", target="128"))
        j.append(Record(txn="t-evil", state=APPLIED, t=1.0, seq=0, actual="128"))
    res = engine_for(ctx_for(root)).rollback()
    rows = [(r.knob.path, r.outcome, r.reason) for r in res.rows]
    assert rows == [(evil, "failed", f"{evil}: '..' climbs above the root {root}; refused")]
    assert victim.read_text() == "original\n"
    assert tree(root) == before


def test_apply_through_an_absolute_sysfs_symlink_stays_in_the_tree(tmp_path: Path, outside: Path) -> None:
    """`sys/block/nvme1n1 -> /elsewhere`: read and written as <root>/elsewhere, never /elsewhere."""
    dgx = dgx_copy(tmp_path)
    fn, root = dgx.node, dgx.node.root
    fn.p("/data/train").mkdir(parents=True)
    # The outside copy of the device: what following the link on the host would have changed.
    (outside / "queue").mkdir()
    (outside / "queue" / "read_ahead_kb").write_text("128\n")
    fn.remove("/sys/block/nvme1n1")
    os.symlink(str(outside), fn.p("/sys/block/nvme1n1"))
    ctx = ctx_for(root)
    p = make_plan(ctx, profile_from_data({"readahead": {"paths": ["/data/train"], "read_ahead_kb": 4096}}, "t", "t"))
    assert [(c.knob.label, c.action, c.reason) for c in p.changes] == [
        ("read_ahead_kb nvme1n1", SKIP, "/sys/block/nvme1n1/queue/read_ahead_kb: not present")]
    before = tree(root)
    engine_for(ctx).apply(p.changes, "t")
    assert tree(root) == before
    assert (outside / "queue" / "read_ahead_kb").read_text() == "128\n"

    # The same absolute link as a mounted image means it: <root>/elsewhere is tuned and restored.
    fn.remove("/sys/block/nvme1n1")
    os.symlink("/elsewhere", fn.p("/sys/block/nvme1n1"))
    fn.attr("/elsewhere/queue/read_ahead_kb", 128)
    before = knob_values(root)
    p = make_plan(ctx, profile_from_data({"readahead": {"paths": ["/data/train"], "read_ahead_kb": 4096}}, "t", "t"))
    assert [(c.knob.label, c.current, c.action) for c in p.changes] == [("read_ahead_kb nvme1n1", "128", CHANGE)]
    engine_for(ctx).apply(p.changes, "t")
    assert fn.p("/elsewhere/queue/read_ahead_kb").read_text().strip() == "4096"
    assert fn.p(f"{NVME1}/queue/read_ahead_kb").read_text().strip() == "128"
    engine_for(ctx).rollback()
    assert knob_values(root) == before
    assert (outside / "queue" / "read_ahead_kb").read_text() == "128\n"


def test_cgroup_with_dotdot_is_refused_before_anything_is_read(tmp_path: Path, outside: Path) -> None:
    laptop_with_job(tmp_path / "root")
    with pytest.raises(ProfileError, match=r"^t\.toml: \[pinning\] cgroups: '/\.\./\.\./\.\./\.\./tmp/evil': "
                                           r"'\.\.' is not allowed in a cgroup path "
                                           r"\(it would leave /sys/fs/cgroup\)$"):
        profile_from_data({"pinning": {"cgroups": ["/../../../../tmp/evil"]}}, "t", "t.toml")


def test_cgroup_symlinks_out_of_the_cgroup_tree_are_refused(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    fn = laptop_with_job(root)
    (outside / "cgroup.procs").write_text("1\n")
    fn.p("/sys/fs/cgroup").mkdir(parents=True, exist_ok=True)
    os.symlink("../../../../outside", fn.p("/sys/fs/cgroup/climb"))
    os.symlink("/etc", fn.p("/sys/fs/cgroup/etc"))
    fn.write("/etc/cgroup.procs", "4242\n")
    h = Host(str(root))
    before = tree(root)
    with pytest.raises(TargetError, match=r"^cgroup /climb: /sys/fs/cgroup/climb: symlink /sys/fs/cgroup/climb -> "
                                          r"\.\./\.\./\.\./\.\./outside climbs above the root"):
        cgroup_pids(h, "/climb")
    with pytest.raises(TargetError, match=r"^cgroup /etc: /sys/fs/cgroup/etc resolves to /etc, outside "
                                          r"/sys/fs/cgroup; refused$"):
        cgroup_pids(h, "/etc")
    assert tree(root) == before


def test_node_profile_symlinked_to_etc_shadow_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    fn = laptop(root).node
    fn.write("/etc/shadow", "root:$6$secret:19000:0:99999:7:::\n")
    fn.p("/etc/nodetune/profiles").mkdir(parents=True)
    os.symlink("/etc/shadow", fn.p("/etc/nodetune/profiles/evil.toml"))
    os.symlink("../../../../../outside/x.toml", fn.p("/etc/nodetune/profiles/climb.toml"))
    h = Host(str(root))
    with pytest.raises(ProfileError) as exc:
        load_profile(h, "evil")
    assert exc.value.reason == ("/etc/nodetune/profiles/evil.toml: a symlink to /etc/shadow, outside "
                                "/etc/nodetune/profiles; refused (copy the file there instead, or pass its path)")
    assert "secret" not in exc.value.reason
    with pytest.raises(ProfileError, match=r"^/etc/nodetune/profiles/climb\.toml: .* climbs above the root"):
        load_profile(h, "climb")
    # a link that stays in the profile directory is fine
    fn.write("/etc/nodetune/profiles/real.toml", 'description = "site profile"\n')
    os.symlink("real.toml", fn.p("/etc/nodetune/profiles/alias.toml"))
    assert load_profile(h, "alias").description == "site profile"


def test_profile_file_named_on_the_command_line(tmp_path: Path) -> None:
    good = tmp_path / "elsewhere" / "mine.toml"
    good.parent.mkdir()
    good.write_text('description = "mine"\n')
    link = tmp_path / "link.toml"
    link.symlink_to(good)
    h = Host(str(tmp_path))
    assert load_profile(h, str(link)).description == "mine"  # anywhere, through a link: the user chose it
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    big = tmp_path / "big.toml"
    big.write_text("# x\n" * 300_000)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"description = \"\xff\"\n")
    cases = {fifo: "not a regular file; a profile is a TOML file",
             big: "larger than 1024 KiB; not a profile (refused)",
             binary: "not UTF-8 text (byte 15); a profile is a TOML file",
             tmp_path: "not a regular file; a profile is a TOML file"}
    for f, why in cases.items():
        with pytest.raises(ProfileError) as exc:
            load_profile(h, str(f) + ("/" if f == tmp_path else ""))
        assert exc.value.reason.endswith(why), exc.value.reason


# -- --data-path with no block device behind it ------------------------------------------------

@pytest.mark.parametrize(("path", "why"), [
    ("/dev/shm/data", "no block device behind /dev/shm/data (fs type tmpfs, mounted at /dev/shm from tmpfs); "
                      "nothing to tune"),
    ("/mnt/nfs/imagenet", "no block device behind /mnt/nfs/imagenet (fs type nfs4, mounted at /mnt/nfs from "
                          "filer:/export); nothing to tune"),
    ("/proc", "no block device behind /proc (fs type proc, mounted at /proc from proc); nothing to tune"),
    ("/home/alcie/data", "no block device behind /home/alcie/data: no such file or directory on this node (a typo?)"),
    ("/../../etc", "no block device behind /../../etc: /../../etc: '..' climbs above the root"),
])
def test_data_path_without_a_block_device_changes_nothing(tmp_path: Path, path: str, why: str) -> None:
    root = tmp_path / "root"
    fn = laptop_with_job(root)
    fn.mountinfo([("253:0", "/", "ext4", "/dev/mapper/root"), ("0:25", "/dev/shm", "tmpfs", "tmpfs"),
                  ("0:51", "/mnt/nfs", "nfs4", "filer:/export")])
    for d in ("/dev/shm/data", "/mnt/nfs/imagenet", "/home/alice/data"):
        fn.p(d).mkdir(parents=True, exist_ok=True)
    before = tree(root)
    ctx = ctx_for(root)
    with pytest.raises(TargetError) as exc:
        make_plan(ctx, profile_from_data({"readahead": {"paths": [path], "read_ahead_kb": 4096}}, "t", "t"))
    assert exc.value.reason.startswith(why), exc.value.reason
    assert tree(root) == before
    # while a real directory on the root disk still resolves to it
    assert devices_for_path(Host(str(root)), "/home/alice/data") == ["dm-0", "sda"]


def test_data_path_through_a_symlink_follows_it_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    fn = laptop_with_job(root)
    fn.mountinfo([("253:0", "/", "ext4", "/dev/mapper/root"), ("0:25", "/dev/shm", "tmpfs", "tmpfs")])
    fn.p("/dev/shm/real").mkdir(parents=True)
    os.symlink("/dev/shm/real", fn.p("/data"))  # /data looks like a disk path but is tmpfs
    with pytest.raises(TargetError, match=r"^no block device behind /data \(fs type tmpfs, mounted at /dev/shm"):
        devices_for_path(Host(str(root)), "/data")


# -- the same attacks through the real command line: exit 2, one line, nothing changed ----------

def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodetune.cli", *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (("--cgroup", "/../../../../tmp/evil"),
     "command line: [pinning] cgroups: '/../../../../tmp/evil': '..' is not allowed in a cgroup path "
     "(it would leave /sys/fs/cgroup)"),
    (("--pin-cpus", "0-99999999", "--pid", "4242"),
     "command line: [pinning] cpus: cpus: cpu list '0-99999999' names CPU 99999999; more than 65536 CPUs is "
     "refused (the kernel's NR_CPUS is at most 8192)"),
    (("--data-path", "/proc"),
     "no block device behind /proc (fs type proc, mounted at /proc from proc); nothing to tune"),
    (("--data-path", "/home/alcie"),
     "no block device behind /home/alcie: no such file or directory on this node (a typo?)"),
    (("--profile", "evil"),
     "/etc/nodetune/profiles/evil.toml: a symlink to /etc/shadow, outside /etc/nodetune/profiles; refused "
     "(copy the file there instead, or pass its path)"),
])
def test_cli_refuses_with_one_line_and_changes_nothing(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    root = tmp_path / "root"
    fn = laptop_with_job(root)
    fn.write("/etc/shadow", "root:$6$secret:19000:0:99999:7:::\n")
    fn.p("/etc/nodetune/profiles").mkdir(parents=True)
    os.symlink("/etc/shadow", fn.p("/etc/nodetune/profiles/evil.toml"))
    before = tree(root)
    profile = () if "--profile" in args else ("--profile", "data-loading")
    r = _cli(root, "tune", "apply", *profile, *args)
    assert (r.returncode, r.stderr) == (2, f"nodetune: error: {message}\n")
    assert tree(root) == before
