"""Pinning: GPU-local CPUs, cgroup limits, threads and processes that come and go, PID reuse."""

from __future__ import annotations

import os
import shutil

import pytest

from nodetune.probes.host import Host, format_cpulist, parse_cpulist
from nodetune.tuners.affinity import LiveAffinity, TreeAffinity
from nodetune.tuners.contract import CHANGE, KEEP, SKIP
from nodetune.tuners.errors import KnobFailed, KnobGone, TargetError
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import profile_from_data
from tests.support.fakenvml import FakeNvml, hgx_gpus
from tests.support.faketree import FakeProc, vm_h200
from tests.support.tuners_support import ctx_for, dgx_copy, engine_for

NODE1 = list(range(56, 112)) + list(range(168, 224))


def job(pid=5000, threads=2, children=(), cgroup="/system.slice/train.service", start=777, cpus=None):
    tids = {pid + i: ("python" if i == 0 else f"pt_worker{i}", "S", 1, 1) for i in range(threads)}
    return FakeProc(pid=pid, comm="python", cmdline=["python", "train.py"], cpus=cpus or list(range(224)),
                    threads=tids, children=list(children), cgroup=cgroup, starttime=start)


def setup(tmp_path, on_gpu5=(5000,)):
    pre = dgx_copy(tmp_path)
    nv = FakeNvml(hgx_gpus(pre.gpu_addresses))
    nv.gpus[5].processes = [(pid, 1 << 30) for pid in on_gpu5]
    return pre.node, nv, ctx_for(pre.node.root, nv)


def plan(ctx, pin):
    return make_plan(ctx, profile_from_data({"pinning": pin}, "t", "t.toml"))


def affinity(root, pid, tid):
    return TreeAffinity(Host(str(root))).get(pid, tid)


def test_gpu_jobs_and_their_workers_go_to_the_gpus_local_cpus(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.process(job(children=[5010]))
    fn.process(job(pid=5010, threads=1, start=780))
    p = plan(ctx, {"gpu_jobs": True})
    assert [(c.knob.pid, c.knob.tid, c.action) for c in p.changes] == [
        (5000, 5000, CHANGE), (5000, 5001, CHANGE), (5010, 5010, CHANGE)]
    assert {c.target for c in p.changes} == {format_cpulist(NODE1)} and p.changes[0].reason == "local CPUs of GPU5"
    res = engine_for(ctx).apply(p.changes, "t")
    assert len(res.applied) == 3
    assert affinity(fn.root, 5000, 5001) == NODE1 and affinity(fn.root, 5010, 5010) == NODE1
    engine_for(ctx).rollback()
    assert affinity(fn.root, 5000, 5001) == list(range(224)) and affinity(fn.root, 5010, 5010) == list(range(224))


def test_cgroup_cpuset_limits_the_target(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.attr("/sys/fs/cgroup/system.slice/train.service/cpuset.cpus.effective", "0-3,60-63")
    fn.process(job())
    p = plan(ctx, {"gpu_jobs": True})
    assert {c.target for c in p.changes} == {"60-63"}


def test_cgroup_cpuset_of_a_parent_applies_when_the_leaf_has_none(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.process(job(cgroup="/kubepods.slice/pod1/ctr"))
    fn.remove("/sys/fs/cgroup/kubepods.slice/pod1/ctr/cpuset.cpus.effective")
    fn.attr("/sys/fs/cgroup/kubepods.slice/cpuset.cpus.effective", "100-120")
    assert {c.target for c in plan(ctx, {"gpu_jobs": True}).changes} == {"100-111"}


def test_no_allowed_local_cpu_is_a_skip_with_the_reason(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.attr("/sys/fs/cgroup/system.slice/train.service/cpuset.cpus.effective", "0-7")
    fn.process(job())
    p = plan(ctx, {"gpu_jobs": True})
    assert {c.action for c in p.changes} == {SKIP}
    assert "no CPU of local CPUs of GPU5" in p.changes[0].reason and "cgroup allows 0-7" in p.changes[0].reason


def test_a_narrower_pin_the_job_made_itself_is_respected(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.process(job())
    TreeAffinity(ctx.host).set(5000, 5001, [60, 61])
    rows = {c.knob.tid: c for c in plan(ctx, {"gpu_jobs": True}).changes}
    assert rows[5001].action == KEEP and rows[5000].action == CHANGE


def test_one_numa_node_vm_gains_nothing(tmp_path):
    pre = vm_h200(tmp_path)
    pre.node.process(job(cpus=list(range(16))))
    nv = FakeNvml(hgx_gpus(pre.gpu_addresses))
    nv.gpus[0].processes = [(5000, 1 << 30)]
    (c,) = plan(ctx_for(tmp_path, nv), {"gpu_jobs": True}).changes
    assert c.action == KEEP and "pinning gains nothing" in c.reason and "numa_node is -1" in c.reason


def test_explicit_cpus_override_gpu_locality(tmp_path):
    pre = vm_h200(tmp_path)
    pre.node.process(job(cpus=list(range(16))))
    p = plan(ctx_for(tmp_path), {"pids": [5000], "cpus": "0-3"})
    assert [(c.target, c.action) for c in p.changes] == [("0-3", CHANGE), ("0-3", CHANGE)]


def test_pid_without_a_known_gpu_asks_for_one(tmp_path):
    fn, nv, ctx = setup(tmp_path, on_gpu5=())
    fn.process(job())
    (c,) = plan(ctx, {"pids": [5000]}).changes
    assert c.action == SKIP and "pass --gpu N" in c.reason
    p = plan(ctx, {"pids": [5000], "gpus": [1]})
    assert {c.target for c in p.changes} == {"0-55,112-167"}


def test_unknown_pid_cgroup_and_gpu_are_target_errors(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.process(job())
    with pytest.raises(TargetError, match="pid 999999: no such process"):
        plan(ctx, {"pids": [999999]})
    with pytest.raises(TargetError, match="cgroup /nope.slice: no /sys/fs/cgroup/nope.slice/cgroup.procs"):
        plan(ctx, {"cgroups": ["/nope.slice"]})
    with pytest.raises(TargetError, match="GPU 12: no such GPU"):
        plan(ctx, {"pids": [5000], "gpus": [12]})


def test_cgroup_target_pins_its_processes(tmp_path):
    fn, nv, ctx = setup(tmp_path, on_gpu5=())
    fn.process(job())
    fn.process(job(pid=6000, threads=1, start=900))
    fn.write("/sys/fs/cgroup/system.slice/train.service/cgroup.procs", "5000\n6000\n")
    p = plan(ctx, {"cgroups": ["/sys/fs/cgroup/system.slice/train.service"], "gpus": [5], "include_children": False})
    assert [c.knob.tid for c in p.changes] == [5000, 5001, 6000]


def test_thread_that_exits_between_plan_and_apply_is_skipped_and_reported(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.process(job(threads=3))
    p = plan(ctx, {"gpu_jobs": True})
    shutil.rmtree(fn.p("/proc/5000/task/5002"))  # the thread exited
    res = engine_for(ctx).apply(p.changes, "t")
    assert [a.knob.tid for a in res.applied] == [5000, 5001]
    assert len(res.gone) == 1 and "thread 5002 of pid 5000 has exited" in res.gone[0]


def test_new_threads_are_pinned_on_re_apply(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.process(job())
    engine_for(ctx).apply(plan(ctx, {"gpu_jobs": True}).changes, "t")
    # a thread started by a library that reset its own affinity (as some OpenMP runtimes do)
    fn.write("/proc/5000/task/5005/stat", fn.p("/proc/5000/task/5001/stat").read_text().replace("5001", "5005", 1))
    fn.write("/proc/5000/task/5005/status", fn.p("/proc/5000/task/5001/status").read_text()
             .replace(f"Cpus_allowed_list:\t{format_cpulist(NODE1)}", "Cpus_allowed_list:\t0-223"))
    p = plan(ctx, {"gpu_jobs": True})
    assert [(c.knob.tid, c.action) for c in p.changes] == [(5000, KEEP), (5001, KEEP), (5005, CHANGE)]
    res = engine_for(ctx).apply(p.changes, "t")
    assert [a.knob.tid for a in res.applied] == [5005]
    engine_for(ctx).rollback()
    assert affinity(fn.root, 5000, 5005) == list(range(224)) and affinity(fn.root, 5000, 5000) == list(range(224))


def test_rollback_leaves_a_reused_pid_alone(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.process(job())
    engine_for(ctx).apply(plan(ctx, {"gpu_jobs": True}).changes, "t")
    shutil.rmtree(fn.p("/proc/5000"))
    fn.process(job(start=99999, cpus=[0, 1]))  # another program got pid 5000
    rb = engine_for(ctx).rollback()
    assert {r.outcome for r in rb.rows} == {"not_restored"}
    assert all("PID reused" in r.reason for r in rb.rows)
    assert affinity(fn.root, 5000, 5000) == [0, 1] and affinity(fn.root, 5000, 5001) == [0, 1]
    assert engine_for(ctx).status().active == []


def test_rollback_after_the_job_exited_is_clean(tmp_path):
    fn, nv, ctx = setup(tmp_path)
    fn.process(job())
    engine_for(ctx).apply(plan(ctx, {"gpu_jobs": True}).changes, "t")
    shutil.rmtree(fn.p("/proc/5000"))
    rb = engine_for(ctx).rollback()
    assert [r.outcome for r in rb.rows] == ["not_restored", "not_restored"] and rb.failed == []
    assert {r.status for r in engine_for(ctx).verify().rows} == {"gone"}


def test_live_affinity_reads_this_process_and_reports_gone_threads():
    live = LiveAffinity()
    me = os.getpid()
    assert live.get(me, me) == sorted(os.sched_getaffinity(0))
    live.set(me, me, live.get(me, me))  # setting what it already is changes nothing
    assert live.get(me, me) == sorted(os.sched_getaffinity(0))
    with pytest.raises(KnobGone):
        live.get(2**22 + 12345, 2**22 + 12345)


def test_tree_affinity_refuses_the_live_root_and_offline_cpus(tmp_path):
    with pytest.raises(ValueError):
        TreeAffinity(Host("/"))
    pre = vm_h200(tmp_path)
    pre.node.process(job(cpus=list(range(16))))
    with pytest.raises(KnobFailed, match="not allowed"):
        TreeAffinity(Host(str(tmp_path))).set(5000, 5000, parse_cpulist("14-17"))


def test_a_thread_id_names_its_process(tmp_path):
    fn, nv, ctx = setup(tmp_path, on_gpu5=())
    fn.process(job())
    # on Linux /proc/TID exists for every thread, with Tgid naming its process
    fn.write("/proc/5001/stat", fn.p("/proc/5000/task/5001/stat").read_text())
    fn.write("/proc/5001/status", fn.p("/proc/5000/task/5001/status").read_text())
    p = plan(ctx, {"pids": [5001], "gpus": [5]})
    assert [(c.knob.pid, c.knob.tid) for c in p.changes] == [(5000, 5000), (5000, 5001)]
