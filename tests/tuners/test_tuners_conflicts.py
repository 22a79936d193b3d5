"""Other owners of the knobs: TuneD, power-profiles-daemon, irqbalance (no conflict), earlier nodetune runs."""

from __future__ import annotations

from nodetune.probes.host import Host
from nodetune.tuners.conflicts import detect_owners
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import profile_from_data
from tests.support.faketree import FakeProc
from tests.support.tuners_support import ctx_for, engine_for, journal_for, laptop_with_job

PROFILE = {"hugepages": {"thp_enabled": "always"}, "power": {"governor": "performance"},
           "pinning": {"pids": [4242], "cpus": "0-3"}}


def daemon(fn, pid, comm):
    fn.process(FakeProc(pid=pid, comm=comm, cmdline=[f"/usr/sbin/{comm}"], uid=0, cpus=list(range(8)), cgroup=""))
    fn.write(f"/proc/{pid}/comm", comm[:15] + "\n")  # the kernel truncates comm to 15 characters


def plan(ctx):
    return make_plan(ctx, profile_from_data(PROFILE, "t", "t.toml"), journal_for(ctx.host.root).load())


def test_tuned_by_pid_file_and_process_is_a_conflict_for_its_knobs_only(tmp_path):
    fn = laptop_with_job(tmp_path)
    daemon(fn, 812, "tuned")
    fn.attr("/run/tuned/tuned.pid", 812)
    fn.attr("/etc/tuned/active_profile", "throughput-performance")
    owners, notes = detect_owners(Host(str(tmp_path)))
    assert [(o.name, o.pid) for o in owners] == [("TuneD", 812)]
    assert "active profile 'throughput-performance'" in owners[0].evidence
    p = plan(ctx_for(tmp_path))
    by_group = {c.knob.group: c for c in p.changes}
    assert by_group["thp"].warnings == ["TuneD (pid 812) also manages thp"]
    assert by_group["governor"].warnings == ["TuneD (pid 812) also manages governor"]
    assert by_group["affinity"].warnings == []  # TuneD does not own thread affinity here
    assert [o.name for o in p.conflicting()] == ["TuneD"]
    assert "stop it or apply with --force" in p.warnings[0] and "governor, thp" in p.warnings[0]


def test_stale_tuned_pid_file_is_a_note_not_a_conflict(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.attr("/run/tuned/tuned.pid", 31337)
    owners, notes = detect_owners(Host(str(tmp_path)))
    assert owners == [] and any("stale" in n for n in notes)


def test_power_profiles_daemon_found_by_its_truncated_comm(tmp_path):
    fn = laptop_with_job(tmp_path)
    daemon(fn, 900, "power-profiles-daemon")
    owners, _ = detect_owners(Host(str(tmp_path)))
    assert [(o.name, o.groups) for o in owners] == [("power-profiles-daemon", ["governor", "epp", "epb"])]
    p = plan(ctx_for(tmp_path))
    assert {c.knob.group for c in p.changes if c.warnings} == {"governor"}


def test_irqbalance_is_not_a_conflict(tmp_path):
    fn = laptop_with_job(tmp_path)
    daemon(fn, 700, "irqbalance")
    owners, notes = detect_owners(Host(str(tmp_path)))
    assert owners == [] and any("irqbalance" in n and "no conflict" in n for n in notes)
    assert plan(ctx_for(tmp_path)).conflicting() == []


def test_a_knob_another_nodetune_transaction_holds_is_flagged(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    engine_for(ctx).apply(
        make_plan(ctx, profile_from_data({"hugepages": {"thp_enabled": "never"}}, "a", "a")).changes, "a")
    rows = {c.knob.group: c for c in plan(ctx).changes}
    assert any("already set this knob to never" in w for w in rows["thp"].warnings)
    assert rows["governor"].warnings == []


def test_a_damaged_tuned_pid_file_is_a_note(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.attr("/run/tuned/tuned.pid", "garbage")
    owners, notes = detect_owners(Host(str(tmp_path)))
    assert owners == [] and any("not a pid" in n for n in notes)
