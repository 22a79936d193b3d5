"""Readahead: data path -> mount -> devices (partitions, dm, md), NVMe scheduler, io_uring status."""

from __future__ import annotations

import pytest

from nodetune.probes.host import Host
from nodetune.tuners.contract import CHANGE, KEEP, SKIP
from nodetune.tuners.errors import TargetError
from nodetune.tuners.knobs.readahead import devices_for_path, io_uring_status
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import profile_from_data
from tests.support.tuners_support import (
    changed,
    ctx_for,
    dgx_copy,
    engine_for,
    knob_values,
    laptop_with_job,
)


def plan(ctx, ra):
    return make_plan(ctx, profile_from_data({"readahead": ra}, "t", "t.toml"))


def test_partition_resolves_to_its_nvme_disk_and_gets_scheduler_none(tmp_path):
    dgx = dgx_copy(tmp_path)
    tmp_path = dgx.node.root
    fn = dgx.node
    fn.attr("/sys/devices/pci0000:84/0000:84:03.0/0000:85:00.0/nvme/nvme1/nvme1n1/queue/scheduler",
            "none [mq-deadline] kyber")
    fn.p("/data/imagenet/train").mkdir(parents=True)
    ctx = ctx_for(tmp_path)
    p = plan(ctx, {"paths": ["/data/imagenet/train"], "read_ahead_kb": 4096, "nvme_scheduler": "none"})
    assert [(c.knob.label, c.current, c.target, c.action) for c in p.changes] == [
        ("read_ahead_kb nvme1n1", "128", "4096", CHANGE), ("scheduler nvme1n1", "mq-deadline", "none", CHANGE)]
    assert any(n.startswith("io_uring: enabled") for n in p.notes)
    assert any("POSIX_FADV_SEQUENTIAL" in n and "WILLNEED" in n for n in p.notes)
    before = knob_values(tmp_path)
    engine_for(ctx).apply(p.changes, "t")
    diff = changed(before, knob_values(tmp_path))
    assert set(diff.values()) == {(128, 4096), ("mq-deadline", "none")}
    engine_for(ctx).rollback()
    assert changed(before, knob_values(tmp_path)) == {}


def test_dm_sets_the_top_device_and_the_disk_beneath(tmp_path):
    laptop_with_job(tmp_path).p("/home/alice/data").mkdir()
    assert devices_for_path(Host(str(tmp_path)), "/home/alice/data") == ["dm-0", "sda"]
    p = plan(ctx_for(tmp_path), {"paths": ["/home/alice/data"], "read_ahead_kb": 1024, "nvme_scheduler": "none"})
    assert [c.knob.label for c in p.changes] == ["read_ahead_kb dm-0", "read_ahead_kb sda"]  # sda is not NVMe


def test_md_raid_over_two_nvme_disks(tmp_path):
    dgx = dgx_copy(tmp_path)
    tmp_path = dgx.node.root
    fn = dgx.node
    fn.block("/sys/devices/virtual/block/md0", "md0", "9:0", 128, "none", slaves=["nvme0n1", "nvme1n1"])
    fn.mountinfo([("259:1", "/", "ext4", "/dev/nvme0n1p1"), ("9:0", "/scratch", "xfs", "/dev/md0")])
    fn.p("/scratch/shards").mkdir()
    assert devices_for_path(Host(str(tmp_path)), "/scratch/shards") == ["md0", "nvme0n1", "nvme1n1"]
    p = plan(ctx_for(tmp_path), {"paths": ["/scratch", "/scratch/shards"], "read_ahead_kb": 8192})
    assert [c.knob.label for c in p.changes] == ["read_ahead_kb md0", "read_ahead_kb nvme0n1", "read_ahead_kb nvme1n1"]


def test_readahead_already_higher_is_kept(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.attr("/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda/queue/read_ahead_kb", 16384)
    rows = {c.knob.label: c for c in plan(ctx_for(tmp_path), {"paths": ["/"], "read_ahead_kb": 4096}).changes}
    assert rows["read_ahead_kb sda"].action == KEEP and rows["read_ahead_kb dm-0"].action == CHANGE


def test_scheduler_the_kernel_does_not_offer_is_skipped(tmp_path):
    dgx = dgx_copy(tmp_path)
    tmp_path = dgx.node.root
    rows = {c.knob.label: c for c in plan(ctx_for(tmp_path), {"paths": ["/data"], "nvme_scheduler": "bfq"}).changes}
    assert rows["scheduler nvme1n1"].action == SKIP and "offers: none, mq-deadline" in rows["scheduler nvme1n1"].reason


def test_path_without_a_block_device_is_a_target_error(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.mountinfo([])  # only proc and sysfs
    fn.p("/data").mkdir()
    with pytest.raises(TargetError, match=r"^no block device behind /data \(no mount in /proc/self/mountinfo"):
        plan(ctx_for(tmp_path), {"paths": ["/data"], "read_ahead_kb": 4096})


def test_no_paths_gives_a_note_not_a_change(tmp_path):
    laptop_with_job(tmp_path)
    p = plan(ctx_for(tmp_path), {"read_ahead_kb": 4096})
    assert p.changes == [] and any("--data-path" in n for n in p.notes)


@pytest.mark.parametrize(("value", "words"), [("0", "enabled"), ("1", "disabled for unprivileged"),
                                              ("2", "disabled for every process"), (None, "older than 6.6")])
def test_io_uring_status(tmp_path, value, words):
    fn = laptop_with_job(tmp_path)
    if value is None:
        fn.remove("/proc/sys/kernel/io_uring_disabled")
    else:
        fn.attr("/proc/sys/kernel/io_uring_disabled", value)
    assert words in io_uring_status(Host(str(tmp_path)))
