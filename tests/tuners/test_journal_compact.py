"""A journal that only grows is compacted (finished transactions folded, atomically, under the lock),
and the agent's read of it never runs on the sampling thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from nodetune.probes.host import Host
from nodetune.tuners.affinity import TreeAffinity
from nodetune.tuners.context import TuneContext
from nodetune.tuners.contract import Knob
from nodetune.tuners.gpu_control import GpuControl
from nodetune.tuners.transaction.compact import compact
from nodetune.tuners.transaction.engine import Engine
from nodetune.tuners.transaction.journal import DEFAULT_JOURNAL, Journal
from nodetune.tuners.transaction.record import (
    APPLIED,
    BEGIN,
    COMMIT,
    INTENT,
    ROLLED_BACK,
    Record,
    dump,
)
from nodetune.tuners.transaction.watch import JournalCounts, JournalWatch, journal_counts
from tests.support.faketree import laptop

THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def _knob(path: str = THP) -> Knob:
    return Knob(id=f"sysfs:{path}", kind="sysfs", group="thp", label="THP enabled", path=path, selector=True)


def _txn(txn: str, t: float, rolled_back: bool, original: str = "madvise", target: str = "always") -> list[bytes]:
    change = {"seq": 0, "knob": _knob(), "tuner": "hugepages", "original": original, "target": target}
    out = [dump(Record(txn, BEGIN, t, profile="p")), dump(Record(txn, INTENT, t, **change)),
           dump(Record(txn, APPLIED, t, actual=target, **change)), dump(Record(txn, COMMIT, t, n=1))]
    if rolled_back:
        out.append(dump(Record(txn, ROLLED_BACK, t + 1, seq=0)))
    return out


def _node(tmp_path: Path, finished: int) -> tuple[Host, Engine, str]:
    laptop(tmp_path)
    host = Host(str(tmp_path))
    path = host.path(DEFAULT_JOURNAL)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lines = [line for i in range(finished) for line in _txn(f"old{i:05d}", 1000.0 + i, True)]
    lines += _txn("held", 9000.0, False)  # still applied: THP reads "always"
    Path(path).write_bytes(b"".join(lines))
    Path(host.path(THP)).write_text("[always] madvise never\n")
    ctx = TuneContext(host, TreeAffinity(host), GpuControl.disabled("test"))
    return host, Engine(ctx, Journal(path)), path


def test_compaction_folds_finished_transactions_and_changes_nothing_else(tmp_path):
    host, eng, path = _node(tmp_path, 200)
    before_counts = journal_counts(path)
    before_status = eng.status()
    res = compact(host, path)
    assert res.folded == 200 and res.skipped is None
    assert res.lines_before == 1004 and res.lines_after == 5  # the summary and the held transaction
    assert journal_counts(path) == before_counts  # the agent's gauges do not move
    after = eng.status()
    assert [(a.txn, a.knob.id, a.original, a.set_value) for a in after.active] == \
        [(a.txn, a.knob.id, a.original, a.set_value) for a in before_status.active]
    assert after.txns[0].txn == "compacted" and after.txns[0].changes == 200
    assert [r.status for r in eng.verify().rows] == ["ok"]
    assert compact(host, path).skipped == "no finished transaction to fold"  # idempotent
    rb = eng.rollback()
    assert [r.outcome for r in rb.rows] == ["restored"]
    assert Path(host.path(THP)).read_text().strip() == "madvise"


def test_a_damaged_journal_is_not_compacted(tmp_path):
    host, eng, path = _node(tmp_path, 5)
    text = Path(path).read_bytes().split(b"\n")
    text[6] = text[6][:40]  # an intent line of a finished transaction, cut short
    Path(path).write_bytes(b"\n".join(text))
    res = compact(host, path)
    assert res.folded == 0 and "damaged" in (res.skipped or "")
    assert Path(path).read_bytes() == b"\n".join(text)


def test_rollback_compacts_a_journal_grown_past_the_threshold(tmp_path):
    host, eng, path = _node(tmp_path, 50)
    eng.compact_at_bytes = 1024
    rb = eng.rollback()
    assert [r.outcome for r in rb.rows] == ["restored"] and rb.warnings == []
    st = Journal(path).load()
    assert st.compacted is not None and st.compacted.txns == 50
    assert [t.txn for t in st.txns] == ["held"]  # the last transaction that changed a knob
    assert eng.status().exit_code == 0 and not st.active()


def test_apply_compacts_before_it_begins(tmp_path):
    host, eng, path = _node(tmp_path, 30)
    eng.rollback()
    eng.compact_at_bytes = 1024
    Path(path).write_bytes(Path(path).read_bytes() + b"".join(_txn("more", 9500.0, True)))
    from nodetune.tuners.contract import Change

    res = eng.apply([Change("hugepages", _knob(), "madvise", "never")], "p")
    assert res.applied and Journal(path).load().compacted is not None
    assert [r.outcome for r in eng.rollback().rows] == ["restored"]


def test_the_watch_never_waits_for_a_load(tmp_path):
    laptop(tmp_path)
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"".join(_txn("a", 1.0, False)))
    release = threading.Event()

    def slow(p: str) -> JournalCounts:
        release.wait(10)
        return journal_counts(p)

    watch = JournalWatch(str(path), load=slow, sync_below=0)
    t = time.perf_counter()
    first = watch.poll()
    assert first.pending and time.perf_counter() - t < 0.5  # the load runs on a helper thread
    assert watch.poll().pending  # still loading: the previous (empty) counts, at once
    release.set()
    done = watch.wait(10)
    assert not done.pending and done.by_state == {"applied": 1} and done.active_by_group == {"thp": 1}
    assert watch.poll() is done and watch.loads == 1  # unchanged file: cached, no reload
    path.write_bytes(path.read_bytes() + dump(Record("a", ROLLED_BACK, 2.0, seq=0)))
    assert watch.wait(10).by_state == {"rolled_back": 1} and watch.loads == 2


def test_the_watch_reads_small_journals_at_once_and_reports_errors(tmp_path):
    path = tmp_path / "journal.jsonl"
    watch = JournalWatch(str(path))
    assert watch.poll() == JournalCounts(str(path), False)
    path.write_bytes(b"".join(_txn("a", 1.0, True)))
    c = watch.poll()
    assert not c.pending and c.by_state == {"rolled_back": 1}
    path.unlink()
    path.mkdir()  # a directory where the journal should be: a value, not a crash
    assert JournalWatch(str(path)).poll().error


def test_tune_compact_command(tmp_path):
    import json
    import subprocess
    import sys

    host, eng, path = _node(tmp_path, 20)
    r = subprocess.run([sys.executable, "-m", "nodetune.cli", "tune", "compact", "--root", str(tmp_path), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["folded"] == 20 and out["lines_before"] == 104 and out["lines_after"] == 5
    r = subprocess.run([sys.executable, "-m", "nodetune.cli", "tune", "compact", "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("nothing compacted: no finished transaction to fold")


def test_sigkill_mid_compaction_leaves_the_old_journal_whole(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from nodetune.probes.crashpoints import ENV

    host, eng, path = _node(tmp_path, 20)
    before = Path(path).read_bytes()
    env = {**os.environ, ENV: "replace_tmp_written:1"}
    r = subprocess.run([sys.executable, "-m", "nodetune.cli", "tune", "compact", "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert Path(path).read_bytes() == before  # the new journal was still a temp file
    assert any(n.endswith(".tmp") for n in os.listdir(Path(path).parent))
    assert compact(host, path).folded == 20  # the next compaction finishes and clears the leftover
    assert not any(n.endswith(".tmp") for n in os.listdir(Path(path).parent))
    assert [r.outcome for r in eng.rollback().rows] == ["restored"]
