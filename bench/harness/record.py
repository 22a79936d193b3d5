"""`nodetune diagnose` and `nodetune snapshot` runs, and the files a recording leaves.

A recording of TAG in DIR leaves, for `diagnose`: TAG.json (the JSON report), TAG.err (its stderr)
and TAG.json.gz (the window, `--save`, for replay tests); for `snapshot`: TAG.json.gz and
TAG.snap.err: the names the device scripts pack and the replay tests are built from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("diagnose", "snapshot")


def default_nodetune_cmd() -> list[str]:
    """`nodetune` on PATH, else this interpreter running the CLI's entry point."""
    if shutil.which("nodetune"):
        return ["nodetune"]
    return [sys.executable, "-c", "from nodetune.cli.app import main; main()"]


@dataclass(frozen=True)
class CommandResult:
    """One nodetune run: exit code (None: timed out or could not start), wall time, output."""

    rc: int | None
    wall_s: float
    stdout: str
    stderr: str


def run_nodetune(cmd: list[str], extra: list[str], timeout: float, env: dict[str, str],
                 cwd: Path) -> CommandResult:
    """Run `cmd + extra`, killed after `timeout` s; never raises for the command's own failure."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=timeout,  # noqa: S603
                           cwd=cwd, env=env, stdin=subprocess.DEVNULL)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = f"timed out after {timeout:.0f}s"
    except OSError as exc:
        rc, out, err = None, "", f"cannot run {cmd[0]}: {exc}"
    return CommandResult(rc, time.monotonic() - t0, out, err)


def parse_report(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """diagnose's JSON report (tolerating text before it), or None and why."""
    text = text.strip()
    if not text:
        return None, "no output"
    try:
        obj = json.loads(text)
    except ValueError:
        start = text.find("{")
        if start < 0:
            return None, "no JSON object in output"
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError as exc:
            return None, f"bad JSON: {exc}"
    if not isinstance(obj, dict):
        return None, "JSON is not an object"
    return obj, None


@dataclass(frozen=True)
class RecordSpec:
    """One recording: `kind` (diagnose or snapshot) of `seconds`, its files named TAG in `out_dir`."""

    kind: str
    tag: str
    seconds: float
    out_dir: Path
    interval: float | None = None
    save_window: bool = True
    note: str | None = None
    timeout: float = 120.0

    @property
    def window_path(self) -> Path:
        """The recorded window (snapshot format)."""
        return self.out_dir / f"{self.tag}.json.gz"

    @property
    def report_path(self) -> Path:
        """diagnose's JSON report."""
        return self.out_dir / f"{self.tag}.json"

    @property
    def stderr_path(self) -> Path:
        """The command's stderr."""
        return self.out_dir / f"{self.tag}.err" if self.kind == "diagnose" else \
            self.out_dir / f"{self.tag}.snap.err"

    def argv(self) -> list[str]:
        """nodetune's arguments for this recording."""
        interval = ["--interval", f"{self.interval:g}"] if self.interval is not None else []
        if self.kind == "diagnose":
            save = ["--save", str(self.window_path)] if self.save_window else []
            return ["diagnose", "--seconds", f"{self.seconds:g}", *interval, "--json", *save]
        note = ["--note", self.note] if self.note else []
        return ["snapshot", "-o", str(self.window_path), "--seconds", f"{self.seconds:g}", *interval, *note]


@dataclass(frozen=True)
class Recorded:
    """What a recording gave: the run, and diagnose's parsed report (None for a snapshot or a failure)."""

    spec: RecordSpec
    result: CommandResult
    report: dict[str, Any] | None
    error: str | None


def record(cmd: list[str], spec: RecordSpec, env: dict[str, str], cwd: Path) -> Recorded:
    """Run the recording and write its files; a failure is returned in `error`, not raised."""
    if spec.kind not in KINDS:
        raise ValueError(f"record kind {spec.kind!r}: expected one of {KINDS}")
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    res = run_nodetune(cmd, spec.argv(), spec.timeout, env, cwd)
    spec.stderr_path.write_text(res.stderr)
    report, error = None, None
    if spec.kind == "diagnose":
        spec.report_path.write_text(res.stdout)
        report, perr = parse_report(res.stdout)
        if report is None:
            error = f"rc={res.rc}: {perr}"
    if res.rc != 0 and error is None:
        error = f"rc={res.rc}"
    if error is not None:
        last = res.stderr.strip().splitlines()[-1:] or [""]
        error = f"{error} {last[0]}".strip()
    return Recorded(spec, res, report, error)


def verdict_line(report: dict[str, Any]) -> str:
    """Each GPU's verdict, confidence, flags and attribution on one line (the device logs' format)."""
    parts = []
    for g in report.get("gpus") or []:
        attribution = (g.get("attribution") or {}).get("text", "")
        conf = g.get("confidence")
        conf_s = f"{conf:.2f}" if isinstance(conf, (int, float)) else "?"
        parts.append(f"GPU{g.get('index')} {g.get('verdict')}/{g.get('cause')} conf {conf_s} "
                     f"healthy {g.get('healthy')} border {g.get('borderline')} | {attribution}")
    return "; ".join(parts) or "no GPU in the report"
