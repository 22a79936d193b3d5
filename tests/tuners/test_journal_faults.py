"""The journal and transaction under full disks, failing writes, races, signals and odd files.

Faults come in through the journal's JournalIO seam (write, fsync, free space), never by
patching `open` or `os`: every write of an apply is made to fail in turn, and after each the
node must be exactly as before (the apply rolled itself back) or a rollback must make it so.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodetune.probes.host import Host, parse_cpulist
from nodetune.probes.memory import parse_selected
from nodetune.tuners.context import TuneContext
from nodetune.tuners.errors import ConflictError, JournalError, TransactionFailed
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import profile_from_data
from nodetune.tuners.transaction.durable import JournalIO
from nodetune.tuners.transaction.engine import Engine
from nodetune.tuners.transaction.journal import DEFAULT_JOURNAL, Journal
from nodetune.tuners.transaction.nodelock import LOCK, MARKER, NodeLock
from tests.support.tuners_support import LAPTOP_PROFILE as LAPTOP
from tests.support.tuners_support import (
    KernelHost,
    StingyHost,
    changed,
    ctx_for,
    dgx_copy,
    knob_values,
    laptop_with_job,
)

# Every kind of record and knob (a selector, read-ahead through dm, governors, thread affinity) in
# few knobs: each of its writes fails in turn, four ways.
SMALL = {
    "hugepages": {"thp_enabled": "always"},
    "readahead": {"paths": ["/"], "read_ahead_kb": 2048},
    "power": {"governor": "performance"},
    "pinning": {"pids": [4242], "cpus": "0-3"},
}
DGX = {"hugepages": {"thp_enabled": "always"}, "power": {"governor": "performance", "epp": "performance", "epb": 0}}


@dataclass
class Fault:
    """Fail write number `at` (1-based, counting every journal and marker write) in one way."""

    at: int
    mode: str  # short+full: half written, then the disk is full for good | full-once | short | eio-fsync
    writes: int = 0
    fsyncs: int = 0
    full: bool = False

    def write(self, fd: int, data: bytes) -> int:
        self.writes += 1
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        if self.writes == self.at:
            if self.mode == "full-once":
                raise OSError(errno.ENOSPC, "No space left on device")
            if self.mode in ("short+full", "short"):
                self.full = self.mode == "short+full"
                return os.write(fd, data[: max(1, len(data) // 2)])
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        if self.mode == "eio-fsync" and self.fsyncs == self.at:
            raise OSError(errno.EIO, "Input/output error")  # no real fsync: keeps 1000s of runs fast

    def io(self) -> JournalIO:
        return JournalIO(write=self.write, fsync=self.fsync, free_bytes=lambda d: 1 << 40)


def fast_io() -> JournalIO:
    return JournalIO(fsync=lambda fd: None, free_bytes=lambda d: 1 << 40)


def engine(ctx: TuneContext, path: str | Path | None = None, io: JournalIO | None = None) -> Engine:
    j = str(path) if path is not None else Host(ctx.host.root).path(DEFAULT_JOURNAL)
    return Engine(ctx, Journal(j, io or fast_io()))


def plan(ctx: TuneContext, data: dict, name: str = "p"):
    return make_plan(ctx, profile_from_data(data, name, f"{name}.toml")).changes


def count_writes(ctx: TuneContext, changes, tmp: Path) -> tuple[int, int]:
    """How many writes and fsyncs one clean apply makes (then rolled back)."""
    f = Fault(at=0, mode="none")
    e = engine(ctx, tmp / "count.jsonl", f.io())
    e.apply(changes, "p")
    n = (f.writes, f.fsyncs)
    e.rollback()
    return n


def values_of(root: Path, keys: list[str]) -> dict[str, object]:
    """knob_values() for the files it found once: the same parsing, without walking the tree."""
    out: dict[str, object] = {}
    for k in keys:
        f = root / k.lstrip("/")
        name = f.name
        if name == "status":
            m = re.search(r"^Cpus_allowed_list:\s*(\S+)", f.read_text(), re.M)
            out[k] = parse_cpulist(m.group(1)) if m else None
        elif name in ("read_ahead_kb", "nr_hugepages", "energy_perf_bias"):
            out[k] = int(f.read_text())
        elif name in ("enabled", "defrag", "scheduler"):
            text = f.read_text().strip()
            out[k] = parse_selected(text, k) if "[" in text else text
        elif k == "/dev/cpu_dma_latency":
            out[k] = f.read_bytes()
        else:
            out[k] = f.read_text().strip()
    return out


def one_fault(ctx: TuneContext, changes, before: dict, root: Path, journal: Path, fault: Fault) -> str:
    """Apply with `fault`; then the node must be as before, after at most one rollback (with the disk
    still full when the fault left it full, then with space). Returns what happened, for the tally.

    `before` holds every value knob_values() found; they are compared after each step."""
    keys = list(before)

    def now_changed() -> dict:
        return changed(before, values_of(root, keys))

    e = engine(ctx, journal, fault.io())
    try:
        e.apply(changes, "p")
        outcome = "applied"
    except (TransactionFailed, JournalError) as exc:
        outcome = "refused" if isinstance(exc, JournalError) else "rolled back"
        assert "nothing changed" in exc.reason or "node unchanged" in exc.reason, exc.reason
        assert now_changed() == {}, (fault, exc.reason)
    if outcome == "applied":
        hit = fault.fsyncs >= fault.at if fault.mode == "eio-fsync" else fault.writes >= fault.at
        assert fault.mode == "short" or not hit, (fault, "a failed write went unnoticed")
    rb = e.rollback()  # the disk may still be full: restores must not depend on the journal
    assert rb.failed == [], [(r.knob.label, r.reason) for r in rb.failed]
    assert now_changed() == {}, fault
    clean = engine(ctx, journal)
    st = clean.status()
    if not rb.journal_error:
        assert st.active == [] and st.unknown == 0 and st.warnings == [], (fault, st.warnings)
    clean.rollback()  # with space: records what a full disk kept it from recording
    assert clean.status().active == [] and not os.path.exists(Host(str(root)).path(MARKER)), fault
    return outcome


MODES = ("short+full", "full-once", "short", "eio-fsync")


def test_a_failing_write_at_every_point_of_an_apply_leaves_the_node_exact(tmp_path):
    """Every write and every fsync of a 14-knob apply (THP, read-ahead through dm, governors, thread
    affinity) fails in turn: the node ends exactly as before each time."""
    laptop_with_job(tmp_path / "root")
    root = tmp_path / "root"
    ctx = ctx_for(root)
    before = knob_values(root)
    changes = plan(ctx, SMALL)
    n = sum(c.action == "change" for c in changes)
    count_writes(ctx, changes, tmp_path)  # the first creates the marker's directory: one more fsync
    writes, fsyncs = count_writes(ctx, changes, tmp_path)
    assert (n, writes) == (14, 3 + 2 * n)  # begin, the marker, an intent and an applied per knob, commit
    runs = [(m, at) for m in ("short+full", "full-once") for at in range(1, writes + 1)]
    runs += [("eio-fsync", at) for at in range(1, fsyncs + 1)]
    runs += [("short", at) for at in range(1, writes + 1, 5)]  # a short write that can continue
    tally: dict[str, int] = {}
    t0 = time.monotonic()
    for mode, at in runs:
        out = one_fault(ctx, changes, before, root, tmp_path / f"j-{mode}-{at}.jsonl", Fault(at, mode))
        tally[f"{mode}:{out}"] = tally.get(f"{mode}:{out}", 0) + 1
    print(f"\n{len(runs)} faulted applies of {n} knobs ({writes} writes, {fsyncs} fsyncs each) in "
          f"{time.monotonic() - t0:.1f}s: {tally}")
    assert knob_values(root) == before
    assert tally["short:applied"] == len(range(1, writes + 1, 5))  # continued, not a failure
    assert tally.get("short+full:applied", 0) == 0 and tally.get("full-once:applied", 0) == 0


def test_a_full_disk_during_a_673_knob_apply_leaves_the_node_exact(tmp_path):
    """The 2x56-core tree (224 governors, EPPs and EPBs, THP): the disk fills at a sample of writes
    (the first records, the middle, the last applied record, the commit) or an fsync fails."""
    pre = dgx_copy(tmp_path)
    root = pre.node.root
    ctx = ctx_for(root)
    before = knob_values(root)
    changes = plan(ctx, DGX)
    n = sum(c.action == "change" for c in changes)
    writes = 3 + 2 * n  # as counted on the laptop tree
    assert n == 673
    runs = [("short+full", at) for at in (3, 4, writes // 2, writes - 1, writes)]
    runs += [("eio-fsync", n // 2)]
    t0 = time.monotonic()
    for mode, at in runs:
        assert one_fault(ctx, changes, before, root, tmp_path / f"j-{mode}-{at}.jsonl", Fault(at, mode)) != "applied"
    print(f"\n{len(runs)} faulted applies of {n} knobs ({writes} writes each) in {time.monotonic() - t0:.1f}s")
    assert knob_values(root) == before


def test_a_short_intent_write_never_touches_its_knob_and_the_partial_record_is_cut_off(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    seen: list[tuple[int, str]] = []

    class Watch(Fault):
        def write(self, fd: int, data: bytes) -> int:
            seen.append((os.fstat(fd).st_size, knob_values(tmp_path)["/sys/kernel/mm/transparent_hugepage/enabled"]))
            return super().write(fd, data)

    f = Watch(at=3, mode="short+full")  # begin, marker, then the first intent
    j = tmp_path / "j.jsonl"
    with pytest.raises(TransactionFailed) as ei:
        engine(ctx, j, f.io()).apply(plan(ctx, {"hugepages": {"thp_enabled": "always"}}), "p")
    assert ei.value.reason == (f"apply failed at THP enabled: {j}: cannot write the journal: No space left on "
                               f"device; rolled back 0 change(s); node unchanged; the journal could not record the "
                               f"rollback and was cut back to before this apply")
    assert len(seen) == 4 and {v for _, v in seen} == {"madvise"}  # the 4th continues the short write
    assert knob_values(tmp_path) == before
    assert j.read_text() == ""  # the half record cut off, then the whole transaction (nothing happened)
    assert not os.path.exists(Host(str(tmp_path)).path(MARKER))


def test_rollback_on_a_full_disk_restores_every_knob_and_says_the_journal_is_stale(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    j = tmp_path / "j.jsonl"
    engine(ctx, j).apply(plan(ctx, LAPTOP), "p")
    full = Fault(at=1, mode="short+full")
    rb = engine(ctx, j, full.io()).rollback()
    assert knob_values(tmp_path) == before and rb.failed == []
    assert rb.journal_error and "No space left" in rb.journal_error
    assert any("the journal could not be updated" in w for w in rb.warnings)
    assert len(engine(ctx, j).status().active) == 31  # what the journal still says
    again = engine(ctx, j).rollback()
    assert {r.outcome for r in again.rows} == {"already"} and engine(ctx, j).status().active == []
    assert not os.path.exists(Host(str(tmp_path)).path(MARKER))


def test_apply_refuses_up_front_when_the_journal_filesystem_is_nearly_full(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    io = JournalIO(free_bytes=lambda d: 64 << 10)
    with pytest.raises(JournalError) as ei:
        engine(ctx, tmp_path / "j.jsonl", io).apply(plan(ctx, LAPTOP), "p")
    assert ei.value.reason == (f"{tmp_path}/j.jsonl: 64 KiB free on its filesystem, 190 KiB needed to journal 31 "
                               f"change(s) and their rollback; free some space (or pass --journal FILE elsewhere); "
                               f"nothing changed")
    assert knob_values(tmp_path) == before and not (tmp_path / "j.jsonl").exists()


# -- one lock per node, and the open-transaction marker -------------------------------------------

HOLD = """
import sys, time
from nodetune.probes.host import Host, parse_cpulist
from nodetune.probes.memory import parse_selected
from nodetune.tuners.transaction.nodelock import NodeLock
with NodeLock(Host(sys.argv[1])):
    print("held", flush=True)
    time.sleep(30)
"""


def test_a_second_apply_on_the_node_is_refused_naming_the_lock_holder(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        for e in (engine(ctx, tmp_path / "other.jsonl"), engine(ctx)):  # whatever journal it is given
            with pytest.raises(JournalError) as ei:
                e.apply(plan(ctx, LAPTOP), "p")
            assert ei.value.reason == (f"another nodetune apply or rollback (pid {holder.pid}) holds this node's "
                                       f"tuning lock {tmp_path}{LOCK}; wait for it to finish")
        assert knob_values(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()
    engine(ctx).apply(plan(ctx, LAPTOP), "p")  # the kernel dropped the dead holder's lock
    assert engine(ctx).rollback().failed == [] and knob_values(tmp_path) == before


def test_two_journals_on_one_node_need_force_and_roll_back_exactly(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    engine(ctx, a).apply(plan(ctx, LAPTOP, "first"), "first")
    mid = knob_values(tmp_path)
    second = {"power": {"governor": "powersave", "epp": "power"}, "hugepages": {"thp_enabled": "never"}}
    with pytest.raises(ConflictError) as ei:
        engine(ctx, b).apply(plan(ctx, second, "second"), "second")
    assert ei.value.reason.startswith("transaction ") and f"in {a} still holds 31 knob(s)" in ei.value.reason
    assert ei.value.reason.endswith("or apply with --force to stack on it; nothing changed")
    assert knob_values(tmp_path) == mid and not b.exists()
    res = engine(ctx, b).apply(plan(ctx, second, "second"), "second", force=True)
    assert any(w.startswith("--force: transaction") for w in res.warnings)
    # Rolling back the older journal first: each knob the newer one changed again is named and left
    # (the governors too, though they read powersave again: b's rollback will put performance back).
    wrong = engine(ctx, a).rollback()
    held = {r.knob.label for r in wrong.failed}
    assert {r.outcome for r in wrong.failed} == {"held"} and len(held) == 17  # THP + 8 governors + 8 EPPs
    assert "governor cpu3" in held and all(f"changed again later by transaction {res.txn} in {b}" in r.reason
                                           for r in wrong.failed)
    assert any("is open too; roll it back with --journal" in w for w in wrong.warnings)
    assert engine(ctx, b).rollback().failed == []
    assert engine(ctx, a).rollback().failed == []
    assert knob_values(tmp_path) == before and not os.path.exists(Host(str(tmp_path)).path(MARKER))


def test_a_deleted_journal_is_a_loud_error_not_nothing_to_roll_back(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    j = Host(str(tmp_path)).path(DEFAULT_JOURNAL)
    res = engine(ctx).apply(plan(ctx, LAPTOP), "p")
    os.unlink(j)
    want = (f"a transaction is open in {j} but its journal is missing; up to 31 knob(s) may still be changed "
            f"(transaction {res.txn} (profile p, up to 31 knob(s)) in {j}, pid {os.getpid()}); restore them by "
            f"hand (or put the journal back), then `nodetune tune rollback --journal {j} --force` forgets it")
    for op in (lambda e: e.status(), lambda e: e.verify(), lambda e: e.rollback()):
        with pytest.raises(JournalError) as ei:
            op(engine(ctx))
        assert ei.value.reason == want
    with pytest.raises(ConflictError, match="its journal is missing; up to 31 knob"):
        engine(ctx).apply(plan(ctx, {"power": {"governor": "powersave"}}, "other"), "other")
    assert not os.path.exists(j)
    rb = engine(ctx).rollback(force=True)
    assert rb.rows == [] and rb.warnings[-1].startswith("--force: forgot transaction")
    assert engine(ctx).status().txns == []


def test_the_same_profile_again_extends_but_another_profile_needs_force(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    engine(ctx).apply(plan(ctx, {"hugepages": {"thp_enabled": "always"}}, "a"), "a")
    engine(ctx).apply(plan(ctx, {"hugepages": {"thp_defrag": "never"}}, "a"), "a")  # re-apply: no force
    with pytest.raises(ConflictError) as ei:
        engine(ctx).apply(plan(ctx, {"power": {"governor": "performance"}}, "b"), "b")
    assert ei.value.reason.startswith("profile a (transaction ") and "is still applied (2 knob(s))" in ei.value.reason
    engine(ctx).apply(plan(ctx, {"power": {"governor": "performance"}}, "b"), "b", force=True)
    assert engine(ctx).rollback().failed == [] and knob_values(tmp_path) == before


# -- someone changed a knob after apply ------------------------------------------------------------

def test_rollback_leaves_a_knob_changed_after_apply_and_names_it_force_restores(tmp_path):
    fn = laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    engine(ctx).apply(plan(ctx, LAPTOP), "p")
    gov3 = "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"
    fn.attr(gov3, "schedutil")  # an operator, after our apply
    rb = engine(ctx).rollback()
    assert [(r.knob.label, r.outcome) for r in rb.failed] == [("governor cpu3", "drifted")]
    assert rb.failed[0].reason == ("changed after apply: live schedutil, nodetune set performance; left as it is "
                                   "(rollback --force restores powersave)")
    after = knob_values(tmp_path)
    assert changed(before, after) == {gov3: ("powersave", "schedutil")}
    st = engine(ctx).status()
    assert [a.knob.label for a in st.active] == ["governor cpu3"]  # still held, still listed
    rb = engine(ctx).rollback(force=True)
    assert [(r.knob.label, r.outcome) for r in rb.rows] == [("governor cpu3", "restored")]
    assert knob_values(tmp_path) == before


# -- signals -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignallingHost(KernelHost):
    """A node whose `at`-th knob write is followed by a signal to this process (a Ctrl-C mid-apply)."""

    at: int = 0
    sig: int = signal.SIGINT
    count: list[int] | None = None

    def write(self, p: str, value: str) -> None:
        super().write(p, value)
        assert self.count is not None
        self.count.append(1)
        if len(self.count) == self.at:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_apply_stops_between_knobs_and_rolls_back(tmp_path, sig, code):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    host = SignallingHost(str(tmp_path), at=10, sig=sig, count=[])
    ctx = ctx_for(host)
    with pytest.raises(TransactionFailed) as ei:
        engine(ctx).apply(plan(ctx, LAPTOP), "p")
    assert ei.value.signum == sig and ei.value.exit_code == code
    name = signal.Signals(sig).name
    assert ei.value.reason == (f"apply interrupted by {name} before governor cpu6: rolled back 10 change(s); "
                               f"node unchanged")
    assert knob_values(tmp_path) == before
    assert signal.getsignal(sig) is not None and signal.getsignal(sig) != signal.SIG_IGN  # handlers put back
    assert engine(ctx_for(tmp_path)).status().active == []


# -- read-only commands, odd files -------------------------------------------------------------------

def tree_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_read_only_commands_create_no_files(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    files = tree_files(tmp_path)
    e = engine(ctx)
    assert e.status().txns == [] and e.verify().rows == [] and e.rollback().rows == []
    assert e.apply(plan(ctx, {"hugepages": {"thp_enabled": "madvise"}}), "p").txn == ""  # nothing to change
    assert tree_files(tmp_path) == files


@pytest.mark.parametrize("what", ["journal", "marker", "lock"])
def test_a_fifo_in_place_of_our_files_is_refused_at_once(tmp_path, what):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    host = Host(str(tmp_path))
    path = {"journal": host.path(DEFAULT_JOURNAL), "marker": host.path(MARKER), "lock": host.path(LOCK)}[what]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkfifo(path)
    signal.alarm(20)  # a hang fails the test instead of the run
    try:
        t0 = time.monotonic()
        if what == "journal":
            for op in (lambda e: e.status(), lambda e: e.verify(), lambda e: e.rollback(),
                       lambda e: e.apply(plan(ctx, LAPTOP), "p")):
                with pytest.raises(JournalError, match="a FIFO, not a regular file; refused"):
                    op(engine(ctx))
        elif what == "marker":
            rep = engine(ctx).status()
            assert any("a FIFO, not a regular file; refused" in w for w in rep.warnings)
            with pytest.raises(JournalError, match="a FIFO, not a regular file; refused"):
                engine(ctx).apply(plan(ctx, LAPTOP), "p")
        else:
            with pytest.raises(JournalError, match="a FIFO, not a regular file; refused"):
                NodeLock(host).acquire()
        assert time.monotonic() - t0 < 5
    finally:
        signal.alarm(0)


def test_a_damaged_marker_is_reported_and_rewritten_the_journals_still_count(tmp_path):
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    engine(ctx).apply(plan(ctx, LAPTOP), "p")
    marker = Path(Host(str(tmp_path)).path(MARKER))
    marker.write_text(marker.read_text().replace('"p"', '"q"'))  # checksum no longer matches
    st = engine(ctx).status()
    assert len(st.active) == 31 and any("open-transaction marker is damaged (checksum mismatch" in w
                                        for w in st.warnings)
    assert engine(ctx).rollback().failed == [] and knob_values(tmp_path) == before
    assert not marker.exists()


def test_a_failing_write_at_every_point_of_a_rollback_still_restores_every_knob(tmp_path):
    """The disk fills at each write of a rollback: every knob is restored anyway and the result says
    the journal is stale; a later rollback with space records it and clears the marker."""
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    keys = list(before)
    changes = plan(ctx, SMALL)
    count = Fault(at=0, mode="none")
    engine(ctx, tmp_path / "count.jsonl").apply(changes, "p")
    engine(ctx, tmp_path / "count.jsonl", count.io()).rollback()
    assert count.writes == 14  # one rolled_back record per knob; the marker goes by unlink
    for at in range(1, count.writes + 1):
        j = tmp_path / f"rb-{at}.jsonl"
        engine(ctx, j).apply(changes, "p")
        rb = engine(ctx, j, Fault(at, "short+full").io()).rollback()
        assert rb.failed == [] and rb.journal_error and "No space left" in rb.journal_error
        assert changed(before, values_of(tmp_path, keys)) == {}, at
        assert len(engine(ctx, j).status().active) == 14 - (at - 1)  # what the journal could record
        again = engine(ctx, j).rollback()
        assert {r.outcome for r in again.rows} == {"already"} and engine(ctx, j).status().active == []
        assert not os.path.exists(Host(str(tmp_path)).path(MARKER)), at
    assert knob_values(tmp_path) == before


RACER = """
import json, sys
sys.path.insert(0, sys.argv[2])
from tests.support.tuners_support import ctx_for
from nodetune.tuners.errors import TuneError
from nodetune.tuners.transaction.journal import Journal
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import profile_from_data
from nodetune.tuners.transaction.engine import Engine
ctx = ctx_for(sys.argv[1])
changes = make_plan(ctx, profile_from_data(json.loads(sys.argv[4]), sys.argv[5], "p.toml")).changes
sys.stdin.readline()  # both start together
try:
    Engine(ctx, Journal(sys.argv[3])).apply(changes, sys.argv[5])
    print("applied")
except TuneError as exc:
    print("refused:", exc.reason)
"""


def test_two_applies_racing_with_different_journals_never_interleave(tmp_path):
    """A race: two processes, two journals, one node. One applies; the other is refused
    (the node lock, or the first one's open transaction); rolling back restores every knob."""
    laptop_with_job(tmp_path / "root")
    root = tmp_path / "root"
    before = knob_values(root)
    other = {"power": {"governor": "powersave", "epp": "power", "epb": 15}, "hugepages": {"thp_enabled": "never"}}
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(root), str(Path(__file__).parents[2]),
                               str(tmp_path / f"{name}.jsonl"), json.dumps(prof), name],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for name, prof in (("first", LAPTOP), ("second", other))]
    time.sleep(1.5)  # both have planned and wait on stdin
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(o.split(":")[0] for o in outs) == ["applied", "refused"], outs
    refusal = next(o for o in outs if o.startswith("refused"))
    assert "holds this node's tuning lock" in refusal or "or apply with --force to stack on it" in refusal
    winner = ("first", "second")[outs.index("applied")]
    ctx = ctx_for(root)
    assert engine(ctx, tmp_path / f"{winner}.jsonl").rollback().failed == []
    assert knob_values(root) == before and not (
        tmp_path / f"{('second', 'first')[outs.index('applied')]}.jsonl").exists()


def test_an_unconfirmed_intent_is_restored_even_where_the_kernel_granted_less(tmp_path):
    """A crash between the write of a hugetlb pool and its applied record, on a kernel that granted
    32 of 64 pages: no one else changed the knob, so rollback restores it (no drift refusal)."""
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    ctx = ctx_for(StingyHost(str(tmp_path), cap=32))
    j = tmp_path / "j.jsonl"
    engine(ctx, j).apply(plan(ctx, {"hugepages": {"hugetlb_pages_per_node": 64}}), "p")
    lines = j.read_text().splitlines()
    j.write_text("".join(ln + "\n" for ln in lines if '"state":"intent"' in ln or '"state":"begin"' in ln))
    rb = engine(ctx_for(tmp_path), j).rollback()
    assert [(r.outcome, r.reason) for r in rb.rows] == [("restored", "")]
    assert knob_values(tmp_path) == before
