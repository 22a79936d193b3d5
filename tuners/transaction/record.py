"""The journal's record format: one checksummed JSON object per line, parsed and salvaged.

Every record carries `crc`, the CRC-32 of its canonical JSON without that key. A line that is
not a valid record (bad JSON, bad checksum, a field of the wrong type) is *damaged*; what it still
shows (transaction, sequence number, state, knob path) is salvaged to name what may be lost, never
to restore anything. What damage means for the knobs is decided by `fold`.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from nodetune.probes.serde import SchemaError, from_jsonable, to_jsonable

from ..contract import Knob

VERSION = 2  # 2: every record has `crc`; `applied` repeats its intent; commit/aborted carry `n`

BEGIN, COMMIT, ABORTED = "begin", "commit", "aborted"
INTENT, APPLIED, GONE, ROLLED_BACK = "intent", "applied", "gone", "rolled_back"
RESTORE_FAILED, ABANDONED = "restore_failed", "abandoned"
COMPACTED = "compacted"  # finished transactions folded into counts (see `compact`)
STATES = (BEGIN, COMMIT, ABORTED, INTENT, APPLIED, GONE, ROLLED_BACK, RESTORE_FAILED, ABANDONED, COMPACTED)
# An entry in one of these states may have changed its knob: rollback restores it.
ACTIVE = (INTENT, APPLIED)
# A damaged record of one of these states cannot hide a changed knob: losing it at worst makes a
# later rollback restore a knob again (idempotent) or show a transaction as interrupted.
HARMLESS_IF_LOST = (BEGIN, COMMIT, ABORTED, GONE, ROLLED_BACK, ABANDONED, COMPACTED)


@dataclass
class Record:
    """One line of the journal."""

    txn: str
    state: str
    t: float
    v: int = VERSION
    seq: int | None = None
    knob: Knob | None = None
    tuner: str | None = None
    original: str | None = None
    target: str | None = None
    actual: str | None = None  # what the kernel reports after the write (hugepages may fall short)
    profile: str | None = None
    note: str | None = None
    n: int | None = None  # commit/aborted: how many changes the transaction journaled
    ref: str | None = None  # abandoned: the Lost.ref given up on
    counts: dict[str, int] | None = None  # compacted: changes of the folded transactions by last state
    t_first: float | None = None  # compacted: when the first folded transaction began


@dataclass
class Damage:
    """A line that is not a valid record, with what could still be read from it (untrusted)."""

    line: int
    reason: str
    ref: str  # "line:N:CRC-of-the-raw-text": stable while the line stays as it is
    torn_tail: bool = False  # the unterminated last line: a write a crash cut short
    txn: str | None = None
    seq: int | None = None
    state: str | None = None
    path: str | None = None  # the knob path the text mentions


def canonical(data: dict[str, Any]) -> bytes:
    """The one byte form a checksum is taken over (sorted keys, no spaces, ASCII)."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False).encode()


def crc(data: dict[str, Any]) -> str:
    return f"{zlib.crc32(canonical(data)):08x}"


def sealed(data: dict[str, Any]) -> bytes:
    """`data` with its checksum, as one line."""
    return canonical({**data, "crc": crc(data)}) + b"\n"


def _sealed_as_written(line: str, got: str) -> bool:
    """Does the line, as nodetune wrote it (canonical, `crc` in its sorted place), match `got`?

    The fast path of a load: a CRC over the raw text instead of a re-encoding of the parsed record.
    A line that fails it may still be valid in another spelling; `unseal` then re-encodes."""
    token = f'"crc":"{got}"'
    if token + "," in line:
        body = line.replace(token + ",", "", 1)
    elif "," + token in line:
        body = line.replace("," + token, "", 1)
    else:
        return False
    return line.isascii() and f"{zlib.crc32(body.encode()):08x}" == got


def unseal(data: Any, line: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """(the fields without `crc`, None) or (None, what is wrong); `line`: the raw text, if known."""
    if not isinstance(data, dict):
        return None, f"not a journal record (a JSON {type(data).__name__})"
    body = {k: v for k, v in data.items() if k != "crc"}
    got = data.get("crc")
    if got is None:
        if body.get("v") == 1:
            return body, None  # written by nodetune before checksums; still typed below
        return None, "no checksum"
    if line is not None and isinstance(got, str) and _sealed_as_written(line, got):
        return body, None
    try:
        want = crc(body)
    except ValueError:
        return None, "not encodable"
    if got != want:
        return None, f"checksum mismatch (line says {str(got)[:12]}, content gives {want})"
    return body, None



def dump(rec: Record) -> bytes:
    """A record as its sealed line."""
    return sealed({k: v for k, v in to_jsonable(rec).items() if v is not None})


_HINTS = {
    "txn": re.compile(r'"txn":\s*"([0-9A-Za-z]{1,40})"'),
    "seq": re.compile(r'"seq":\s*(\d{1,9})\b'),
    "state": re.compile(r'"state":\s*"([a-z_]{1,20})"'),
    "path": re.compile(r'"path":\s*"((?:[^"\\]|\\.){1,400})"'),
    "id": re.compile(r'"id":\s*"sysfs:((?:[^"\\]|\\.){1,400})"'),
}


def _salvage(d: Damage, text: str, data: Any) -> None:
    """What a damaged line still says about itself, to name what may be lost (never to restore)."""
    if isinstance(data, dict):
        txn, seq, state, knob = data.get("txn"), data.get("seq"), data.get("state"), data.get("knob")
        d.txn = txn if isinstance(txn, str) else None
        d.seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        d.state = state if isinstance(state, str) else None
        path = knob.get("path") if isinstance(knob, dict) else None
        d.path = path if isinstance(path, str) else None
        return
    found = {k: m.group(1) for k, rx in _HINTS.items() if (m := rx.search(text))}
    d.txn, d.state = found.get("txn"), found.get("state")
    d.seq = int(found["seq"]) if "seq" in found else None
    raw = found.get("path") or found.get("id")  # a sysfs knob's id holds its path, earlier in the line
    if raw is not None:
        try:
            d.path = json.loads(f'"{raw}"')
        except ValueError:
            d.path = raw


def _record(data: dict[str, Any]) -> tuple[Record | None, str | None]:
    try:
        rec = from_jsonable(Record, data)
    except SchemaError as exc:
        return None, f"not a journal record ({exc})"
    if rec.state not in STATES:
        return None, f"unknown state {rec.state!r:.30}"
    if not rec.txn:
        return None, "no transaction id"
    if rec.seq is not None and rec.seq < 0:
        return None, f"negative sequence number {rec.seq}"
    return rec, None


def _split(text: str) -> Iterator[str]:
    """The lines of a text, each with its newline (the last one may have none); "\n" only."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end + 1]
        start = end + 1


def parse_stream(lines: Iterable[str], damaged: list[Damage]) -> Iterator[tuple[int, Record]]:
    """(line number, record) for every valid line of `lines` (each with its newline), as they come;
    every damaged line is appended to `damaged`. A line without a newline is the torn tail."""
    for n, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\n") else raw
        if not line.strip():
            continue
        data: Any = None
        try:
            data = json.loads(line)
            body, why = unseal(data, line)
            rec, why = _record(body) if body is not None else (None, why)
        except (json.JSONDecodeError, RecursionError):
            rec, why = None, "not a complete JSON record"
        if rec is not None:
            yield n, rec
            continue
        d = Damage(n, why or "damaged", f"line:{n}:{zlib.crc32(line.encode(errors='replace')):08x}",
                   torn_tail=not raw.endswith("\n"))
        _salvage(d, line, data)
        damaged.append(d)


def parse(text: str, path: str) -> tuple[list[tuple[int, Record]], list[Damage]]:
    """(line number, record) for every valid line, and every damaged line."""
    damaged: list[Damage] = []
    records = list(parse_stream(_split(text), damaged))
    return records, damaged


def parse_lines(text: str, path: str) -> tuple[list[Record], list[str]]:
    """Records of a journal's text, and a warning per damaged line."""
    records, damaged = parse(text, path)
    return [r for _, r in records], [f"{path}:{d.line}: {d.reason}" for d in damaged]
