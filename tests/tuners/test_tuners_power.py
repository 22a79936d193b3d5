"""Power: CPU governor/EPP/EPB (present and absent), the latency hold, GPU power and clocks via FakeNvml."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest

from nodetune.probes.host import Host
from nodetune.tuners.contract import CHANGE, HOLD, KEEP, SKIP
from nodetune.tuners.errors import KnobAbsent, TargetError, TransactionFailed
from nodetune.tuners.knobs.power import LatencyHold
from nodetune.tuners.plan import NOT_ALLOWED, make_plan
from nodetune.tuners.profiles import profile_from_data
from tests.support.fakenvml import FakeNvml, hgx_gpus
from tests.support.faketree import vm_h200
from tests.support.tuners_support import (
    changed,
    ctx_for,
    dgx_copy,
    engine_for,
    knob_values,
    laptop_with_job,
)


def plan(ctx, data, **kw):
    return make_plan(ctx, profile_from_data(data, "t", "t.toml"), **kw)


def test_cpu_knobs_on_a_vm_are_not_present_not_errors(tmp_path):
    vm_h200(tmp_path)
    p = plan(ctx_for(tmp_path), {"power": {"governor": "performance", "epp": "performance", "epb": 0}})
    assert [(c.knob.group, c.action) for c in p.changes] == [("governor", SKIP), ("epp", SKIP), ("epb", SKIP)]
    assert all(c.reason.startswith("not present") for c in p.changes)
    res = engine_for(ctx_for(tmp_path)).apply(p.changes, "t")
    assert res.txn == "" and res.applied == []


def test_governor_epp_epb_apply_and_roll_back(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    p = plan(ctx, {"power": {"governor": "performance", "epp": "balance_power", "epb": 8}})
    assert p.count(CHANGE) == 24
    order = [c.knob.group for c in p.changes]
    assert order == ["governor"] * 8 + ["epp"] * 8 + ["epb"] * 8  # governor before EPP
    engine_for(ctx).apply(p.changes, "t")
    after = knob_values(tmp_path)
    assert after["/sys/devices/system/cpu/cpu7/cpufreq/scaling_governor"] == "performance"
    assert after["/sys/devices/system/cpu/cpu7/cpufreq/energy_performance_preference"] == "balance_power"
    assert after["/sys/devices/system/cpu/cpu7/power/energy_perf_bias"] == 8
    engine_for(ctx).rollback()
    assert changed(before, knob_values(tmp_path)) == {}


def test_cpus_sharing_a_cpufreq_policy_get_one_knob(tmp_path):
    fn = laptop_with_job(tmp_path)
    # cpu1's cpufreq is a link to cpu0's policy directory, as on acpi-cpufreq with shared policies
    shutil.rmtree(fn.p("/sys/devices/system/cpu/cpu1/cpufreq"))
    fn.link("/sys/devices/system/cpu/cpu1/cpufreq", "/sys/devices/system/cpu/cpu0/cpufreq")
    p = plan(ctx_for(tmp_path), {"power": {"governor": "performance"}})
    assert [c.knob.label for c in p.changes][:2] == ["governor cpu0-1", "governor cpu2"]
    assert len(p.changes) == 7


def test_governor_not_offered_is_skipped(tmp_path):
    laptop_with_job(tmp_path)
    p = plan(ctx_for(tmp_path), {"power": {"governor": "schedutil"}})
    assert {c.action for c in p.changes} == {SKIP}
    assert "offers: performance, powersave" in p.changes[0].reason


def test_latency_cap_is_a_hold_not_an_applied_knob(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.write("/dev/cpu_dma_latency", "")
    (fn.p("/dev/cpu_dma_latency")).write_bytes(struct.pack("=i", 2000000000))
    ctx = ctx_for(tmp_path)
    (c,) = plan(ctx, {"power": {"cpu_dma_latency_us": 0}}).changes
    assert (c.action, c.current, c.target) == (HOLD, "2000000000", "0")
    assert "nodetune tune hold-latency --us 0" in c.reason
    assert engine_for(ctx).apply([c], "t").applied == []


def test_latency_hold_writes_a_32bit_value_and_keeps_the_fd(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.p("/dev").mkdir(exist_ok=True)
    fn.p("/dev/cpu_dma_latency").write_bytes(struct.pack("=i", 2000000000))
    with LatencyHold(Host(str(tmp_path)), 10) as h:
        assert h._fd is not None and os.fstat(h._fd)
        assert fn.p("/dev/cpu_dma_latency").read_bytes() == struct.pack("=i", 10)
    assert h._fd is None
    with pytest.raises(KnobAbsent, match="not present"):
        LatencyHold(Host(str(tmp_path / "nowhere")), 0).__enter__()


def test_hold_latency_command_holds_until_sigterm(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.p("/dev").mkdir(exist_ok=True)
    dev = fn.p("/dev/cpu_dma_latency")
    dev.write_bytes(struct.pack("=i", 2000000000))
    proc = subprocess.Popen([sys.executable, "-m", "nodetune.cli", "tune", "hold-latency", "--us", "5",
                             "--root", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while dev.read_bytes() != struct.pack("=i", 5) and time.time() < deadline:
        time.sleep(0.05)
    assert dev.read_bytes() == struct.pack("=i", 5)
    time.sleep(0.2)
    assert proc.poll() is None  # still holding
    holder = [f for f in os.listdir(f"/proc/{proc.pid}/fd") if os.path.realpath(f"/proc/{proc.pid}/fd/{f}") == str(dev)]
    assert holder, "the fd must stay open while the cap is held"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "holding C-state latency cap 5 us" in err and "released the latency cap" in err


# -- GPU power and clocks -------------------------------------------------------------------------

def gpu_setup(tmp_path):
    pre = dgx_copy(tmp_path)
    nv = FakeNvml(hgx_gpus(pre.gpu_addresses))
    return pre.node.root, nv


def test_gpu_power_is_skipped_unless_the_config_allows(tmp_path):
    root, nv = gpu_setup(tmp_path)
    ctx = ctx_for(root, nv)
    p = plan(ctx, {"gpu": {"gpus": [0, 1], "power_limit_w": 500, "locked_clocks_mhz": [1400, 1700],
                           "allow_lower": True}})
    assert {c.action for c in p.changes} == {SKIP}
    assert all(c.reason == NOT_ALLOWED for c in p.changes)
    assert [c.current for c in p.changes if c.knob.group == "gpu_power"] == ["700000", "700000"]
    engine_for(ctx).apply(p.changes, "t")
    assert nv.gpus[0].power_limit_set_mw is None and nv.gpus[0].locked_clocks is None


def test_gpu_power_applied_when_allowed_and_rolled_back(tmp_path):
    root, nv = gpu_setup(tmp_path)
    ctx = ctx_for(root, nv)
    p = plan(ctx, {"gpu": {"gpus": [1], "power_limit_w": 500, "locked_clocks_mhz": [1400, 1700], "allow_lower": True}},
             allow_gpu_power=True)
    assert [(c.knob.label, c.current, c.target, c.action) for c in p.changes] == [
        ("GPU1 power limit", "700000", "500000", CHANGE), ("GPU1 locked SM clocks", "unreadable", "1400-1700", CHANGE)]
    res = engine_for(ctx).apply(p.changes, "t")
    assert len(res.applied) == 2
    assert nv.gpus[1].power_limit_set_mw == 500000 and nv.gpus[1].locked_clocks == (1400, 1700)
    assert nv.gpus[0].power_limit_set_mw is None
    rows = {r.knob.label: r.status for r in engine_for(ctx).verify().rows}
    assert rows == {"GPU1 power limit": "ok", "GPU1 locked SM clocks": "unreadable"}
    engine_for(ctx).rollback()
    assert nv.gpus[1].power_limit_set_mw == 700000 and nv.gpus[1].locked_clocks is None


def test_gpu_power_limit_lowering_needs_allow_lower(tmp_path):
    root, nv = gpu_setup(tmp_path)
    (c,) = plan(ctx_for(root, nv), {"gpu": {"gpus": [0], "power_limit_w": 500}}, allow_gpu_power=True).changes
    assert c.action == KEEP and "700000 > 500000" in c.reason


def test_gpu_power_pct_of_default_and_out_of_range(tmp_path):
    root, nv = gpu_setup(tmp_path)
    ctx = ctx_for(root, nv)
    (c,) = plan(ctx, {"gpu": {"gpus": [2], "power_limit_pct": 75, "allow_lower": True}}, allow_gpu_power=True).changes
    assert (c.target, c.action) == ("525000", CHANGE)
    (c,) = plan(ctx, {"gpu": {"gpus": [2], "power_limit_w": 150, "allow_lower": True}}, allow_gpu_power=True).changes
    assert c.action == SKIP and "outside this GPU's range 200-700 W" in c.reason
    with pytest.raises(TargetError, match="GPU 9: no such GPU"):
        plan(ctx, {"gpu": {"gpus": [9], "power_limit_w": 500}})


def test_gpu_permission_error_fails_the_transaction_and_restores(tmp_path):
    root, nv = gpu_setup(tmp_path)
    nv.gpus[1].fail["nvmlDeviceSetGpuLockedClocks"] = 4  # NVML_ERROR_NO_PERMISSION
    ctx = ctx_for(root, nv)
    p = plan(ctx, {"gpu": {"gpus": [1], "power_limit_w": 600, "locked_clocks_mhz": [1400, 1700], "allow_lower": True}},
             allow_gpu_power=True)
    with pytest.raises(TransactionFailed,
                       match="GPU1 locked SM clocks: GPU 1 locked clocks: permission denied \\(needs root\\)"):
        engine_for(ctx).apply(p.changes, "t")
    assert nv.gpus[1].power_limit_set_mw == 700000  # the power limit it had set was restored


def test_no_nvml_is_a_skip_with_the_reason(tmp_path):
    laptop_with_job(tmp_path)
    (c,) = plan(ctx_for(tmp_path), {"gpu": {"power_limit_w": 300}}, allow_gpu_power=True).changes
    assert c.action == SKIP and "no NVML" in c.reason
