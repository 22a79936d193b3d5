"""The transaction engine on fake trees: apply, verify, rollback, idempotency, failures, journal."""

from __future__ import annotations

import json
import os

import pytest

from nodetune.probes.serde import from_jsonable, to_jsonable
from nodetune.tuners.contract import CHANGE, KEEP
from nodetune.tuners.errors import ConflictError, JournalError, KnobFailed, TransactionFailed
from nodetune.tuners.plan import Plan, make_plan
from nodetune.tuners.profiles import profile_from_data
from nodetune.tuners.transaction.journal import Journal
from nodetune.tuners.transaction.record import Record, parse_lines
from tests.support.tuners_support import LAPTOP_PROFILE as PROFILE
from tests.support.tuners_support import (
    RejectingHost,
    changed,
    ctx_for,
    engine_for,
    journal_for,
    knob_values,
    laptop_with_job,
)


def plan_for(ctx, data=None, **kw) -> Plan:
    prof = profile_from_data(data or PROFILE, "test", "test.toml")
    return make_plan(ctx, prof, journal_for(ctx.host.root).load(), **kw)


def test_apply_verify_rollback_restores_every_value(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    plan = plan_for(ctx)
    res = engine_for(ctx).apply(plan.changes, "test")
    # 2 THP + 2 readahead (dm-0 and sda under it) + 8 governor + 8 EPP + 8 EPB + 3 threads
    assert len(res.applied) == 31
    diff = changed(before, knob_values(tmp_path))
    assert diff["/sys/kernel/mm/transparent_hugepage/enabled"] == ("madvise", "always")
    assert diff["/proc/4242/task/4243/status"] == (list(range(8)), [0, 1, 2, 3])
    assert diff["/sys/devices/virtual/block/dm-0/queue/read_ahead_kb"] == (128, 2048)
    assert len(diff) == 31

    rep = engine_for(ctx).verify()
    assert {r.status for r in rep.rows} == {"ok"} and len(rep.rows) == 31

    rb = engine_for(ctx).rollback()
    assert {r.outcome for r in rb.rows} == {"restored"}
    assert knob_values(tmp_path) == before
    assert {r.status for r in engine_for(ctx).verify().rows} == {"restored"}
    st = engine_for(ctx).status()
    assert [t.state for t in st.txns] == ["rolled back"] and st.active == []


def test_apply_is_idempotent_and_journals_nothing_the_second_time(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    engine_for(ctx).apply(plan_for(ctx).changes, "test")
    lines = open(journal_for(tmp_path).path).read().splitlines()
    again = plan_for(ctx)
    assert {c.action for c in again.changes} == {KEEP}
    res = engine_for(ctx).apply(again.changes, "test")
    assert res.txn == "" and res.applied == []
    assert open(journal_for(tmp_path).path).read().splitlines() == lines


def test_stale_plan_skips_knobs_already_at_target_without_journal_entry(tmp_path):
    fn = laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    plan = plan_for(ctx, {"hugepages": {"thp_enabled": "always", "thp_defrag": "never"}})
    fn.thp("always", "madvise")  # someone set it between plan and apply
    res = engine_for(ctx).apply(plan.changes, "test")
    assert res.unchanged == ["THP enabled"]
    assert [a.knob.label for a in res.applied] == ["THP defrag"]
    state = journal_for(tmp_path).load()
    assert [e.knob.label for e in state.entries()] == ["THP defrag"]


def test_greater_than_semantics_keep_a_higher_value_unless_allowed(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.attr("/sys/devices/virtual/block/dm-0/queue/read_ahead_kb", 8192)
    ctx = ctx_for(tmp_path)
    data = {"readahead": {"paths": ["/"], "read_ahead_kb": 4096}}
    rows = {c.knob.label: c for c in plan_for(ctx, data).changes}
    assert rows["read_ahead_kb dm-0"].action == KEEP
    assert "8192 > 4096" in rows["read_ahead_kb dm-0"].reason
    assert rows["read_ahead_kb sda"].action == CHANGE  # 128 < 4096: raised
    lowered = {c.knob.label: c for c in plan_for(ctx, data, allow_lower=True).changes}
    assert lowered["read_ahead_kb dm-0"].action == CHANGE
    in_profile = {c.knob.label: c
                  for c in plan_for(ctx, {"readahead": {**data["readahead"], "allow_lower": True}}).changes}
    assert in_profile["read_ahead_kb dm-0"].action == CHANGE


def test_failure_part_way_rolls_back_in_reverse_and_names_the_knob(tmp_path):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    host = RejectingHost(str(tmp_path), reject="cpu5/cpufreq/energy_performance_preference")
    ctx = ctx_for(host)
    plan = plan_for(ctx)
    with pytest.raises(TransactionFailed) as ei:
        engine_for(ctx).apply(plan.changes, "test")
    msg = str(ei.value)
    assert "apply failed at epp cpu5" in msg and "the kernel rejected" in msg and "node unchanged" in msg
    assert ei.value.knob == "epp cpu5"
    # 2 THP + 2 readahead + 8 governors + EPP cpu0-4 were applied before it, undone newest first
    assert ei.value.rolled_back[0] == "epp cpu4" and ei.value.rolled_back[-1] == "THP enabled"
    assert len(ei.value.rolled_back) == 17
    assert knob_values(tmp_path) == before
    st = engine_for(ctx_for(tmp_path)).status()
    assert st.txns[0].state == "failed, rolled back" and st.active == []


def test_a_knob_replaced_by_a_directory_fails_the_apply_and_nothing_stays_changed(tmp_path):
    """A write that fails with a real OSError (EISDIR) from the real Host, root or not."""
    fn = laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    ctx = ctx_for(tmp_path)
    plan = plan_for(ctx, {"hugepages": {"thp_enabled": "always"}, "power": {"governor": "performance"}})
    gov = fn.p("/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor")
    gov.unlink()
    gov.mkdir()
    with pytest.raises(TransactionFailed) as ei:
        engine_for(ctx).apply(plan.changes, "test")
    assert "governor cpu3" in str(ei.value)
    after = knob_values(tmp_path)
    assert after["/sys/kernel/mm/transparent_hugepage/enabled"] == "madvise"
    assert all(after[k] == v for k, v in before.items() if k in after)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes; RejectingHost covers this as root")
def test_read_only_knob_is_refused_before_anything_changes(tmp_path):
    fn = laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    plan = plan_for(ctx, {"hugepages": {"thp_enabled": "always", "thp_defrag": "never"}})
    os.chmod(fn.p("/sys/kernel/mm/transparent_hugepage/defrag"), 0o444)
    with pytest.raises(KnobFailed, match="permission denied \\(needs root\\); nothing changed"):
        engine_for(ctx).apply(plan.changes, "test")
    assert not os.path.exists(journal_for(tmp_path).path)


def test_permission_denied_names_root(tmp_path):
    laptop_with_job(tmp_path)
    host = RejectingHost(str(tmp_path), reject="transparent_hugepage/defrag", why="permission denied (needs root)")
    ctx = ctx_for(host)
    plan = plan_for(ctx, {"hugepages": {"thp_enabled": "always", "thp_defrag": "never"}})
    with pytest.raises(TransactionFailed, match="defrag: permission denied \\(needs root\\)"):
        engine_for(ctx).apply(plan.changes, "test")
    assert knob_values(tmp_path)["/sys/kernel/mm/transparent_hugepage/enabled"] == "madvise"


def test_rollback_undoes_stacked_transactions_newest_first(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    engine_for(ctx).apply(plan_for(ctx, {"hugepages": {"thp_enabled": "always"}}).changes, "a")
    p2 = plan_for(ctx, {"hugepages": {"thp_enabled": "never"}})
    assert any("already set this knob to always" in w for w in p2.changes[0].warnings)
    with pytest.raises(ConflictError, match="profile a .* is still applied .* apply with --force"):
        engine_for(ctx).apply(p2.changes, "b")  # a second profile over an open one needs --force
    engine_for(ctx).apply(p2.changes, "b", force=True)
    st = engine_for(ctx).status()
    first = st.txns[0].txn
    with pytest.raises(Exception, match="changed again by transaction"):
        engine_for(ctx).rollback(first)
    rb = engine_for(ctx).rollback()
    assert [(r.original, r.outcome) for r in rb.rows] == [("always", "restored"), ("madvise", "restored")]
    assert knob_values(tmp_path) == before


def test_rollback_is_idempotent(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    engine_for(ctx).apply(plan_for(ctx).changes, "test")
    assert engine_for(ctx).rollback().rows
    assert engine_for(ctx).rollback().rows == []


def test_verify_reports_drift_and_restored(tmp_path):
    fn = laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    engine_for(ctx).apply(plan_for(ctx, {"hugepages": {"thp_enabled": "always", "thp_defrag": "never"}}).changes, "t")
    fn.attr("/sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]")  # someone else
    fn.attr("/sys/kernel/mm/transparent_hugepage/defrag", "always defer defer+madvise [madvise] never")
    rows = {r.knob.label: r for r in engine_for(ctx).verify().rows}
    assert (rows["THP enabled"].status, rows["THP enabled"].live) == ("drifted", "never")
    assert rows["THP defrag"].status == "restored"


def test_journal_records_round_trip_and_carry_the_transaction(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    res = engine_for(ctx).apply(plan_for(ctx, {"hugepages": {"thp_enabled": "always"}}).changes, "t")
    recs, warns = parse_lines(open(journal_for(tmp_path).path).read(), "j")
    assert warns == []
    assert [r.state for r in recs] == ["begin", "intent", "applied", "commit"]
    intent = recs[1]
    assert (intent.txn, intent.seq, intent.original, intent.target) == (res.txn, 0, "madvise", "always")
    assert intent.knob is not None and intent.knob.id == "sysfs:/sys/kernel/mm/transparent_hugepage/enabled"
    assert all(r.t > 0 for r in recs)
    assert from_jsonable(Record, json.loads(json.dumps(to_jsonable(intent)))) == intent


def test_garbage_journal_lines_are_named_and_never_pass_for_a_clean_rollback(tmp_path):
    """A torn tail is cut off (its knob was never written); garbage lines are reported as changes
    that may be lost: the rest restores, the rollback fails naming them, --force gives up on them."""
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    engine_for(ctx).apply(plan_for(ctx, {"hugepages": {"thp_enabled": "always"}}).changes, "a")
    path = journal_for(tmp_path).path
    with open(path, "a") as fh:
        fh.write('{"txn": "x", "state": "intent", "se')  # torn by a crash, no newline
    assert "torn write" in journal_for(tmp_path).load().warnings[0]
    res = engine_for(ctx).apply(
        plan_for(ctx, {"hugepages": {"thp_enabled": "always", "thp_defrag": "never"}}).changes, "a")
    assert any("cut off a torn write" in w for w in res.warnings)
    with open(path, "a") as fh:
        fh.write("\x00\x00garbage\n[1, 2]\n")
    state = journal_for(tmp_path).load()
    assert len(state.active()) == 2 and [x.line for x in state.lost] == [9, 10]
    rb = engine_for(ctx).rollback()
    assert [(r.knob.label, r.outcome) for r in rb.rows] == [
        ("THP defrag", "restored"), ("THP enabled", "restored"),
        ("journal line 9", "lost"), ("journal line 10", "lost")]
    assert knob_values(tmp_path) == before
    assert len(engine_for(ctx).rollback().failed) == 2  # still loud on the next run
    assert {r.outcome for r in engine_for(ctx).rollback(force=True).rows} == {"abandoned"}
    assert engine_for(ctx).rollback().rows == [] and engine_for(ctx).status().unknown == 0


def test_journal_is_locked_against_a_second_writer(tmp_path):
    j1, j2 = Journal(str(tmp_path / "j.jsonl")), Journal(str(tmp_path / "j.jsonl"))
    with j1:
        with pytest.raises(JournalError, match="another nodetune apply or rollback holds the journal"):
            j2.open()
    j2.open()
    j2.close()


def test_journal_directory_is_created(tmp_path):
    j = Journal(str(tmp_path / "var/lib/nodetune/journal.jsonl"))
    j.append(Record(txn="t", state="begin", t=1.0))
    j.close()
    assert (tmp_path / "var/lib/nodetune/journal.jsonl").read_text().startswith('{"profile"') is False
    assert json.loads((tmp_path / "var/lib/nodetune/journal.jsonl").read_text())["state"] == "begin"


def test_unwritable_journal_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    j = Journal(str(tmp_path / "file" / "journal.jsonl"))  # parent is a file
    with pytest.raises(JournalError, match="cannot open the journal"):
        j.open()


def test_results_cross_module_boundaries_as_json(tmp_path):
    """Plan, ApplyResult, VerifyReport, StatusReport and RollbackResult round-trip through serde."""
    from nodetune.tuners.transaction.results import (
        ApplyResult,
        RollbackResult,
        StatusReport,
        VerifyReport,
    )

    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    plan = plan_for(ctx)
    res = engine_for(ctx).apply(plan.changes, "test")
    for cls, obj in ((Plan, plan), (ApplyResult, res), (VerifyReport, engine_for(ctx).verify()),
                     (StatusReport, engine_for(ctx).status()), (RollbackResult, engine_for(ctx).rollback())):
        data = json.loads(json.dumps(to_jsonable(obj)))
        assert from_jsonable(cls, data) == obj


def test_read_only_sysfs_is_named(tmp_path):
    laptop_with_job(tmp_path)
    why = "read-only file system (is /sys mounted ro, e.g. in a container?)"
    ctx = ctx_for(RejectingHost(str(tmp_path), reject="transparent_hugepage/enabled", why=why))
    with pytest.raises(TransactionFailed, match="read-only file system"):
        engine_for(ctx).apply(plan_for(ctx, {"hugepages": {"thp_enabled": "always"}}).changes, "t")
