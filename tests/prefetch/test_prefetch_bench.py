"""The follow bench's loader: the warm ceiling must not drop what it reads (it did: a flag shared its dest)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench/bench_prefetch_follow.py"


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_prefetch_follow", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _load(d: Path, *extra: str) -> dict[str, float]:
    p = subprocess.run([sys.executable, str(BENCH), "--loader", "--dir", str(d), "--seconds", "0.3", "--step-ms", "0",
                        *extra], input="go\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0] == "ready"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def test_the_warm_loader_keeps_its_files_cached_and_the_cold_one_drops_them(tmp_path):
    b = _bench()
    for i in range(4):
        (tmp_path / f"{i:03d}.bin").write_bytes(bytes([i]) * (256 << 10))
    for f in tmp_path.iterdir():
        f.read_bytes()
    if b.dataset_resident(str(tmp_path)) < 1.0:
        import pytest

        pytest.skip("this filesystem keeps no page cache for fresh files (tmpfs-like or mincore unsupported)")
    warm = _load(tmp_path)
    assert warm["hit_share"] == 1.0 and warm["files"] > 4
    assert b.dataset_resident(str(tmp_path)) == 1.0  # nothing dropped
    _load(tmp_path, "--drop-after-read")
    assert b.dataset_resident(str(tmp_path)) < 1.0


def test_the_table_divides_by_the_lower_ceiling():
    b = _bench()
    runs = [{"mode": "ceiling", "files_per_s": 500.0}, {"mode": "warm", "files_per_s": 1000.0, "hit_share": 1.0},
            {"mode": "naive", "files_per_s": 400.0}, {"mode": "follower", "files_per_s": 480.0, "hit_share": 0.9}]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in b.table(runs).splitlines()[2:]}
    assert rows["follower"][4:7] == ["0.48", "1.20", "0.96"]  # of warm, of naive, of ceiling (the device's 500)
