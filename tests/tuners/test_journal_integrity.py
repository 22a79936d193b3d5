"""A damaged journal never loses a restore silently.

Each test damages the journal of a real apply on a fake tree the way a crash, a bad disk or a
hostile editor would, then checks the exact outcome: every knob back to the value it had before
apply, or the knobs that cannot be restored named one by one, with rollback, status and verify
all failing (never "0 still set", never a clean exit) while one is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

from nodetune.probes.crashpoints import ENV
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import profile_from_data
from nodetune.tuners.transaction.record import canonical, crc, parse
from tests.support.tuners_support import LAPTOP_PROFILE as PROFILE
from tests.support.tuners_support import (
    changed,
    ctx_for,
    engine_for,
    journal_for,
    knob_values,
    laptop_with_job,
)

GOV3 = "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"


def applied_node(tmp_path: Path) -> tuple[object, dict, str]:
    """A laptop tree with PROFILE applied (31 knobs); its context, the values before, the journal."""
    laptop_with_job(tmp_path)
    ctx = ctx_for(tmp_path)
    before = knob_values(tmp_path)
    prof = profile_from_data(PROFILE, "p", "p.toml")
    engine_for(ctx).apply(make_plan(ctx, prof).changes, "p")
    return ctx, before, journal_for(tmp_path).path


def lines_of(path: str) -> list[str]:
    return Path(path).read_text().splitlines()


def line_no(lines: list[str], state: str, path: str) -> int:
    """The 0-based index of the `state` record of the knob at `path`."""
    hits = [i for i, ln in enumerate(lines) if f'"state":"{state}"' in ln and f'"path":"{path}"' in ln]
    assert len(hits) == 1, hits
    return hits[0]


def rewrite(path: str, lines: list[str]) -> None:
    Path(path).write_text("".join(ln + "\n" for ln in lines))


def reseal(line: str, **changes: object) -> str:
    """A crafted record: fields changed and the checksum made valid again."""
    data = json.loads(line)
    data.pop("crc")
    data.update(changes)
    return canonical({**data, "crc": crc(data)}).decode()


def assert_loud(ctx, labels: list[str]) -> None:
    """Rollback, status and verify all report exactly these unrestorable knobs and fail."""
    rb = engine_for(ctx).rollback()
    assert [r.knob.label for r in rb.failed] == labels and {r.outcome for r in rb.failed} == {"lost"}
    st = engine_for(ctx).status()
    assert st.unknown == len(labels) and st.exit_code == 1
    assert [a.knob.label for a in st.active if a.state == "unknown"] == labels
    assert sum(t.active for t in st.txns) == len(labels)  # "still set", not 0
    rep = engine_for(ctx).verify()
    assert [r.knob.label for r in rep.rows if r.status == "unknown"] == labels and rep.exit_code == 1


def test_every_record_carries_a_checksum_of_its_canonical_json(tmp_path):
    _, _, path = applied_node(tmp_path)
    lines = lines_of(path)
    assert len(lines) == 2 + 2 * 31
    for ln in lines:
        data = json.loads(ln)
        got = data.pop("crc")
        assert got == f"{zlib.crc32(canonical(data)):08x}" and data["v"] == 2
    flipped = lines[5].replace('"t":', '"t": ', 1)  # same JSON, different bytes: still valid
    assert parse(flipped + "\n", "j")[1] == []
    data = json.loads(lines[5])
    data["original"] = "tampered"  # the old checksum kept
    assert "checksum mismatch" in parse(json.dumps(data) + "\n", "j")[1][0].reason


def test_the_intent_of_cpu3s_governor_replaced_with_garbage_still_restores_exactly(tmp_path):
    """A damaged intent line: its applied record repeats the original, so nothing is lost."""
    ctx, before, path = applied_node(tmp_path)
    lines = lines_of(path)
    lines[line_no(lines, "intent", GOV3)] = "\x00\x17garbage{{{"
    rewrite(path, lines)
    rb = engine_for(ctx).rollback()
    assert rb.failed == [] and len(rb.rows) == 31
    assert any("governor cpu3: its intent record is missing or damaged; restoring from the copy" in w
               for w in rb.warnings)
    assert knob_values(tmp_path) == before


def test_both_records_of_a_change_damaged_name_the_knob_and_nothing_passes_for_success(tmp_path):
    """Intent and applied line of cpu3's governor cut in half (a sealed torn write, a bad sector):
    one knob named by its path; the other 30 restored; rollback, status and verify fail."""
    ctx, before, path = applied_node(tmp_path)
    lines = lines_of(path)
    i, a = line_no(lines, "intent", GOV3), line_no(lines, "applied", GOV3)
    lines[i], lines[a] = lines[i][: len(lines[i]) // 2], lines[a][: len(lines[a]) // 2]
    rewrite(path, lines)
    label = f"{GOV3} (journal line {i + 1})"
    assert_loud(ctx, [label])
    assert changed(before, knob_values(tmp_path)) == {GOV3: ("powersave", "performance")}  # exactly that one
    rb = engine_for(ctx).rollback()
    assert rb.failed[0].reason.startswith("journal line damaged (not a complete JSON record)")


def test_an_original_of_the_wrong_type_with_a_valid_checksum_is_refused_and_named(tmp_path):
    ctx, before, path = applied_node(tmp_path)
    lines = lines_of(path)
    i, a = line_no(lines, "intent", GOV3), line_no(lines, "applied", GOV3)
    lines[i], lines[a] = reseal(lines[i], original=5), reseal(lines[a], original=["x"])
    rewrite(path, lines)
    txn, seq = json.loads(lines[i])["txn"], json.loads(lines[i])["seq"]
    assert_loud(ctx, [f"{GOV3} (journal line {i + 1})"])
    rb = engine_for(ctx).rollback()
    assert "not a journal record ($.original: expected str, found 5)" in rb.failed[0].reason
    assert (rb.failed[0].txn, rb.failed[0].seq) == (txn, seq)
    assert changed(before, knob_values(tmp_path)) == {GOV3: ("powersave", "performance")}
    # One crafted line alone: the other record still restores it.
    lines[a] = reseal(lines[a], original="powersave")
    rewrite(path, lines)
    assert engine_for(ctx).rollback().failed == [] and knob_values(tmp_path) == before


def test_a_change_whose_lines_were_cut_out_is_named_by_its_sequence_number(tmp_path):
    ctx, before, path = applied_node(tmp_path)
    lines = lines_of(path)
    i, a = line_no(lines, "intent", GOV3), line_no(lines, "applied", GOV3)
    txn, seq = json.loads(lines[i])["txn"], json.loads(lines[i])["seq"]
    rewrite(path, [ln for n, ln in enumerate(lines) if n not in (i, a)])
    assert_loud(ctx, [f"change {txn}/{seq}"])
    assert changed(before, knob_values(tmp_path)) == {GOV3: ("powersave", "performance")}
    assert "no record of this change survives" in engine_for(ctx).rollback().failed[0].reason


def test_the_last_change_of_a_committed_apply_cut_out_is_caught_by_the_commit_count(tmp_path):
    ctx, before, path = applied_node(tmp_path)
    lines = lines_of(path)
    last = [n for n, ln in enumerate(lines) if '"seq":30,' in ln]
    txn = json.loads(lines[last[0]])["txn"]
    rewrite(path, [ln for n, ln in enumerate(lines) if n not in last])
    rb = engine_for(ctx).rollback()
    assert [r.knob.label for r in rb.failed] == [f"change {txn}/30"]
    assert len(changed(before, knob_values(tmp_path))) == 1


def test_force_gives_up_on_a_lost_change_once_and_records_it(tmp_path):
    ctx, before, path = applied_node(tmp_path)
    lines = lines_of(path)
    lines[line_no(lines, "intent", GOV3)] = "garbage"
    lines[line_no(lines, "applied", GOV3)] = "more garbage"
    rewrite(path, lines)
    rb = engine_for(ctx).rollback(force=True)
    assert [r.outcome for r in rb.rows if r.outcome not in ("restored",)] == ["abandoned"]
    assert rb.failed == []
    st = engine_for(ctx).status()
    assert st.unknown == 0 and st.exit_code == 0 and st.active == []
    assert any("given up by `rollback --force` earlier" in w for w in st.warnings)
    assert changed(before, knob_values(tmp_path)) == {GOV3: ("powersave", "performance")}  # named, by hand now


DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[2])
from tests.support.tuners_support import ctx_for, engine_for
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import profile_from_data
ctx = ctx_for(sys.argv[1])
engine_for(ctx).apply(make_plan(ctx, profile_from_data(json.loads(sys.argv[3]), "p", "p.toml")).changes, "p")
"""


def crash_apply(root: Path, point: str) -> None:
    env = {**os.environ, ENV: point}
    r = subprocess.run([sys.executable, "-c", DRIVER, str(root), str(Path(__file__).parents[2]), json.dumps(PROFILE)],
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr


def test_the_intent_of_a_knob_written_just_before_a_crash_damaged_is_named(tmp_path):
    """SIGKILL right after the 7th knob write (its applied record never written), then its intent
    damaged: the one record of that change is gone; the 6 others restore, the 7th is named."""
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    crash_apply(tmp_path, "after_write:7")
    ctx = ctx_for(tmp_path)
    path = journal_for(tmp_path).path
    lines = lines_of(path)
    gov2 = GOV3.replace("cpu3", "cpu2")
    i = line_no(lines, "intent", gov2)
    assert i == len(lines) - 1  # the last line, complete: not a torn tail
    lines[i] = lines[i][: len(lines[i]) // 2]
    rewrite(path, lines)
    assert_loud(ctx, [f"{gov2} (journal line {i + 1})"])
    assert changed(before, knob_values(tmp_path)) == {gov2: ("powersave", "performance")}


def test_a_torn_tail_from_a_crash_mid_write_is_harmless(tmp_path):
    """SIGKILL half-way through the 12th intent: that knob was never touched; rollback is clean."""
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    crash_apply(tmp_path, "torn_intent:12")
    ctx = ctx_for(tmp_path)
    assert not Path(journal_for(tmp_path).path).read_text().endswith("\n")
    st = engine_for(ctx).status()
    assert st.unknown == 0 and st.exit_code == 0 and len(st.active) == 11
    assert any("torn write from a crash" in w for w in st.warnings)
    rb = engine_for(ctx).rollback()
    assert rb.failed == [] and any("cut off a torn write" in w for w in rb.warnings)
    assert knob_values(tmp_path) == before
    assert engine_for(ctx).status().warnings == []


def test_a_journal_written_before_checksums_still_restores(tmp_path):
    """v1 records (no crc, applied without the intent's copy) are read; a damaged v1 intent is named."""
    ctx, before, path = applied_node(tmp_path)
    old = []
    for ln in lines_of(path):
        data = json.loads(ln)
        data.pop("crc")
        data["v"] = 1
        if data["state"] == "applied":
            data = {k: v for k, v in data.items() if k not in ("knob", "tuner", "original", "target")}
        old.append(json.dumps(data, separators=(",", ":")))
    rewrite(path, old)
    assert engine_for(ctx).status().unknown == 0
    i = line_no(lines_of(path), "intent", GOV3)
    old[i] = old[i][: len(old[i]) // 2]
    rewrite(path, old)
    rb = engine_for(ctx).rollback()
    assert [r.outcome for r in rb.failed] == ["lost"] and GOV3 in rb.failed[0].knob.label
    assert "its intent record is missing or damaged" in rb.failed[0].reason
    assert changed(before, knob_values(tmp_path)) == {GOV3: ("powersave", "performance")}
