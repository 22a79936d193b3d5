"""Snapshots a hostile or damaged file could hold: a large inflated document refused early and
cheaply, and numbers no sampler can produce (negative counters, time running backwards, a zero
interval) refused with one line naming the field and the sample."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from nodetune.probes.snapshot import SnapshotError, load_snapshot

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "h200-dataloader-starved.json.gz"


@pytest.fixture()
def doc() -> dict[str, Any]:
    d: dict[str, Any] = json.loads(gzip.decompress(EXAMPLE.read_bytes()))
    return d


def _error(path: Path) -> str:
    with pytest.raises(SnapshotError) as exc:
        load_snapshot(str(path))
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg[len(f"{path}: "):]


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    f = tmp_path / "s.json"
    f.write_text(json.dumps(doc))
    return f


def test_480_mib_inflated_json_is_refused_in_seconds_with_bounded_memory(tmp_path: Path) -> None:
    """A valid-looking 480 MiB document (under the old 512 MiB cap) took 73 s and 2.9 GB to refuse."""
    f = tmp_path / "big.json.gz"
    co = zlib.compressobj(1, zlib.DEFLATED, 31)
    row = b'{"pid": 1, "utime": 5, "stime": 6},' * 29127  # ~1 MiB of process-shaped JSON
    with open(f, "wb") as fh:
        fh.write(co.compress(b'{"version": 1, "taken_at": "x", "note": "", "junk": ['))
        for _ in range(480):
            fh.write(co.compress(row))
        fh.write(co.compress(b"0]}") + co.flush())
    code = ("import resource, sys, time\n"
            "from nodetune.probes.snapshot import SnapshotError, load_snapshot\n"
            "t = time.perf_counter()\n"
            "try:\n    load_snapshot(sys.argv[1])\nexcept SnapshotError as e:\n    print(e)\n"
            "print(time.perf_counter() - t)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True, check=True).stdout
    msg, secs, rss_mib = out.strip().split("\n")
    assert msg.endswith("inflates to more than 256 MiB; refused (the limit on a snapshot's size)"), msg
    assert float(secs) < 20, secs  # inflating 256 MiB, nothing parsed (was 73 s)
    assert int(rss_mib) < 256 + 200, f"peak RSS {rss_mib} MiB"
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize(("field", "message"), [
    (("processes", 0, "utime"), "$.window.samples[3].processes[0].utime: -5 is negative"),
    (("cpu", "total", "user"), "$.window.samples[3].cpu.total.user: -5 is negative"),
])
def test_negative_counters_are_refused_naming_field_and_sample(tmp_path: Path, doc: dict[str, Any],
                                                              field: tuple[Any, ...], message: str) -> None:
    d: Any = doc["window"]["samples"][3]
    for k in field[:-1]:
        d = d[k]
    assert field[-1] in d, sorted(d)
    d[field[-1]] = -5
    assert _error(_write(tmp_path, doc)).startswith(message)


def test_aggregate_cpu_line_keeps_its_minus_one(doc: dict[str, Any], tmp_path: Path) -> None:
    assert doc["window"]["samples"][0]["cpu"]["total"]["cpu"] == -1
    assert load_snapshot(str(_write(tmp_path, doc))).window is not None


def test_time_running_backwards_is_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    s = doc["window"]["samples"]
    s[4]["t"] = s[2]["t"]
    assert _error(_write(tmp_path, doc)) == (
        f"$.window.samples[4].t: {s[2]['t']!r} is earlier than samples[3].t ({s[3]['t']!r}): time running backwards")


def test_zero_interval_between_samples_is_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    s = doc["window"]["samples"]
    s[5]["t"] = s[4]["t"]
    assert _error(_write(tmp_path, doc)) == (
        f"$.window.samples[5].t: {s[4]['t']!r} is the same time as samples[4].t ({s[4]['t']!r}): a zero interval")


def test_zero_window_interval_is_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["window"]["interval_s"] = 0
    assert _error(_write(tmp_path, doc)) == "$.window.interval_s: 0.0 is not a positive interval"
