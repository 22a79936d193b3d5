"""Python stack samples of a running process through py-spy.

py-spy runs as a child process (`record --format raw`: folded stacks with counts), in parallel with
the sampling window so that its second of sampling adds no time after the window. A process py-spy
cannot read (no permission, ptrace blocked, not Python) gives a `StackSample` with `ok=False` and
the reason, never an exception.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

MAX_STACKS = 40  # distinct stacks kept per process: enough for the top ones, small snapshots


@dataclass
class FoldedStack:
    pid: int
    tid: int | None
    thread: str
    frames: list[str]  # outermost first, "func (file)"
    count: int


@dataclass
class StackSample:
    pid: int
    ok: bool
    reason: str | None = None
    duration_s: float = 0.0
    rate_hz: int = 0
    samples: int = 0
    stacks: list[FoldedStack] = field(default_factory=list)


def find_pyspy() -> str | None:
    """py-spy next to this interpreter (pip installs it there), else on PATH."""
    cand = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.access(cand, os.X_OK):
        return cand
    return shutil.which("py-spy")


_PROC = re.compile(r'^process (\d+):".*?"$')
_THREAD = re.compile(r"^thread \((\d+|0x[0-9a-fA-F]+)\): ?(.*)$")


def parse_raw(text: str, default_pid: int) -> list[FoldedStack]:
    """Parse py-spy's raw (folded) output: `[process P:"cmd";]*thread (T): name;f1;f2 N`."""
    out: list[FoldedStack] = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        pid, tid, thread = default_pid, None, ""
        frames: list[str] = []
        for part in parts:
            m = _PROC.match(part)
            if m and not frames and tid is None:
                pid = int(m.group(1))
                continue
            t = _THREAD.match(part)
            if t and not frames and tid is None:
                tid = int(t.group(1), 0)
                thread = t.group(2)
                continue
            frames.append(part)
        out.append(FoldedStack(pid, tid, thread, frames, int(count)))
    out.sort(key=lambda s: -s.count)
    return out


class PySpyRun:
    """One py-spy `record` child, started now and collected later."""

    def __init__(self, pid: int, duration_s: float = 1.0, rate_hz: int = 100, subprocesses: bool = True) -> None:
        self.pid = pid
        self.duration_s = duration_s
        self.rate_hz = rate_hz
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None
        exe = find_pyspy()
        if exe is None:
            self.error = "py-spy is not installed (pip install py-spy)"
            return
        fd, self.out = tempfile.mkstemp(prefix="nodetune-pyspy-", suffix=".txt")
        os.close(fd)
        cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s))),
               "--rate", str(rate_hz), "--format", "raw", "--output", self.out, "--idle", "--threads",
               "--nolineno"]
        if subprocesses:
            cmd.append("--subprocesses")
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            self.error = f"py-spy could not start: {exc}"

    def collect(self, timeout_s: float = 5.0) -> StackSample:
        res = StackSample(pid=self.pid, ok=False, duration_s=self.duration_s, rate_hz=self.rate_hz)
        if self.proc is None:
            res.reason = self.error
            return res
        try:
            _, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            res.reason = f"py-spy did not finish within {timeout_s:.0f} s"
            self._cleanup()
            return res
        text = ""
        try:
            with open(self.out, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            text = ""
        self._cleanup()
        if self.proc.returncode != 0 or not text.strip():
            res.reason = explain_failure(err.decode(errors="replace"), self.proc.returncode)
            return res
        stacks = parse_raw(text, self.pid)
        res.ok = True
        res.samples = sum(s.count for s in stacks)
        res.stacks = stacks[:MAX_STACKS]
        return res

    def _cleanup(self) -> None:
        try:
            os.unlink(self.out)
        except OSError:
            pass  # already gone: nothing to clean


def explain_failure(stderr: str, code: int | None) -> str:
    """Turn py-spy's error text into the reason a person can act on."""
    low = stderr.lower()
    if "permission denied" in low or "operation not permitted" in low:
        return ("py-spy could not attach: permission denied (run as root, or grant CAP_SYS_PTRACE; "
                "check kernel.yama.ptrace_scope)")
    if "failed to find python version" in low or "not a python" in low or "failed to get process executable" in low:
        return "not a Python process (py-spy found no interpreter)"
    if "no such process" in low or "failed to open process" in low:
        return "process exited before py-spy attached"
    line = next((ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith(" ")), "")
    return f"py-spy failed (exit {code}): {line[:160] or 'no samples'}"
