"""Python stack samples of a running process through py-spy.

py-spy runs as a child process (`record --format raw --nonblocking`: folded stacks with counts;
the job is never paused), in parallel with the sampling. A `StackRecorder` keeps one such child per
GPU process in consecutive slices of a few seconds, each stamped with the sampler's clock, so a
window holds stacks across its whole length and each idle second can be matched with what the
job's main thread did in that second. A process py-spy cannot read (no permission, ptrace blocked,
not Python, gone) gives a `StackSample` with `ok=False` and the reason, never an exception.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
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
    # The slice of the sampler's clock (time.monotonic) py-spy covered; None in files written before
    # stacks were sliced (then they cover the window's last `duration_s`).
    t_start: float | None = None
    t_end: float | None = None


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

    def __init__(self, pid: int, duration_s: float = 1.0, rate_hz: int = 100, subprocesses: bool = False,
                 exe: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.pid = pid
        self.duration_s = duration_s
        self.rate_hz = rate_hz
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None
        self.t_start = clock()
        self._clock = clock
        exe = exe or find_pyspy()
        if exe is None:
            self.error = "py-spy is not installed (pip install py-spy)"
            return
        fd, self.out = tempfile.mkstemp(prefix="nodetune-pyspy-", suffix=".txt")
        os.close(fd)
        cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s))),
               "--rate", str(rate_hz), "--format", "raw", "--output", self.out, "--idle", "--threads",
               "--nolineno", "--nonblocking"]
        if subprocesses:
            cmd.append("--subprocesses")
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            self.error = f"py-spy could not start: {exc}"

    def done(self) -> bool:
        """Whether py-spy has exited (collect() will not wait)."""
        return self.proc is None or self.proc.poll() is not None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self._cleanup()

    def collect(self, timeout_s: float = 5.0) -> StackSample:
        res = StackSample(pid=self.pid, ok=False, duration_s=self.duration_s, rate_hz=self.rate_hz,
                          t_start=round(self.t_start, 3))
        res.t_end = round(min(self._clock(), self.t_start + self.duration_s + 1.0), 3)
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
        # py-spy takes a moment to attach before its first sample: its samples are the last
        # samples/rate seconds before it exited (each thread is sampled every tick with --idle).
        threads = max(1, len({s.tid for s in stacks}))
        covered = res.samples / threads / max(self.rate_hz, 1)
        res.t_end = round(self._clock(), 3)  # py-spy has exited: its samples end about now
        res.t_start = round(max(self.t_start, res.t_end - covered), 3)
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
    if "wasn't expected" in low or "unexpected argument" in low or "unsupported version" in low \
            or "unsupported python" in low:
        return ("py-spy is too old for this interpreter or its options (nodetune needs py-spy 0.3.14 or later: "
                "pip install -U py-spy)")
    if "no such process" in low or "failed to open process" in low:
        return "process exited before py-spy attached"
    line = next((ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith(" ")), "")
    return f"py-spy failed (exit {code}): {line[:160] or 'no samples'}"


class StackRecorder:
    """py-spy over a set of processes in consecutive slices, bounded in what it keeps.

    `tick()` is called from a sampling loop: it collects slices whose py-spy has exited (never
    waits) and starts the next slice for each target with none running. Finished slices are kept
    for `keep_s`, so a window of that length finds stacks over all of it. A target py-spy cannot
    read keeps its failure reason (one failed slice kept, retried after `retry_s`).
    """

    def __init__(self, slice_s: float = 5.0, rate_hz: int = 10, max_processes: int = 8, keep_s: float = 120.0,
                 retry_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 exe: str | None = None) -> None:
        self.slice_s = slice_s
        self.rate_hz = rate_hz
        self.max_processes = max_processes
        self.keep_s = keep_s
        self.retry_s = retry_s
        self.clock = clock
        self.exe = exe or find_pyspy()
        self.running: dict[int, PySpyRun] = {}
        self.done: deque[StackSample] = deque()
        self.failed_at: dict[int, float] = {}
        self.started_total = 0

    @property
    def available(self) -> bool:
        return self.exe is not None

    def tick(self, pids: list[int], start: set[int] | None = None) -> None:
        """Collect finished slices, start the next for each of `pids` (at most max_processes).

        With `start`, only those of `pids` get a new slice; the others keep the slice they have
        (a target left out of `pids` altogether has its slice stopped)."""
        now = self.clock()
        for pid, run in list(self.running.items()):
            if run.done():
                del self.running[pid]
                res = run.collect(timeout_s=1.0)
                self.done.append(res)
                if not res.ok:
                    self.failed_at[pid] = now
        while self.done and (self.done[0].t_end or 0.0) < now - self.keep_s:
            self.done.popleft()
        want = pids[: self.max_processes]
        for pid in list(self.running):
            if pid not in want:  # no longer a GPU process of interest (exited, or over the cap)
                self.running.pop(pid).kill()
        for pid in [p for p, t in self.failed_at.items() if t < now - self.retry_s or p not in want]:
            del self.failed_at[pid]
        for pid in want:
            if pid in self.running or pid in self.failed_at or (start is not None and pid not in start):
                continue
            if self.exe is None:
                self.failed_at[pid] = now
                self.done.append(StackSample(pid=pid, ok=False, reason="py-spy is not installed (pip install py-spy)",
                                             t_start=round(now, 3), t_end=round(now, 3)))
                continue
            self.running[pid] = PySpyRun(pid, duration_s=self.slice_s, rate_hz=self.rate_hz, exe=self.exe,
                                         clock=self.clock)
            self.started_total += 1

    def slices(self, t0: float, t1: float, finish: bool = False) -> list[StackSample]:
        """Slices overlapping [t0, t1]; with `finish`, slices still running are stopped early and
        collected too (the end of a one-off window)."""
        if finish:
            for pid, run in list(self.running.items()):
                if run.proc is not None and run.proc.poll() is None:
                    run.proc.send_signal(2)  # SIGINT: py-spy writes what it has and exits
                res = run.collect(timeout_s=3.0)
                self.done.append(res)
                del self.running[pid]
        return [s for s in self.done if (s.t_end or 0.0) >= t0 and (s.t_start or 0.0) <= t1]

    def stop(self) -> None:
        for run in self.running.values():
            run.kill()
        self.running.clear()
