"""A workload launched in its own session: its READY line, offsets after launch or READY, its stop.

Every bench workload prints one line `READY` on stdout once warmed up (bench/workloads/_common.py).
A recording starts at an `Offset`: seconds after the launch, or after READY. Stopping sends SIGTERM
to the whole process group (DataLoader workers, torchrun children) and SIGKILL after a grace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.harness.console import say

try:
    import psutil
except ImportError:  # pragma: no cover - without psutil only the leader's pid is known
    psutil = None

READY_LINE = "READY"
ANCHORS = ("launch", "ready")


@dataclass(frozen=True)
class Offset:
    """A moment in a workload's life: `seconds` after its launch or after its READY line."""

    anchor: str
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Offset:
        """`launch+2`, `ready+3`, `ready` (= ready+0); ValueError on anything else."""
        anchor, _, rest = text.strip().partition("+")
        if anchor not in ANCHORS:
            raise ValueError(f"offset {text!r}: expected launch+S or ready+S")
        seconds = float(rest) if rest else 0.0
        if seconds < 0:
            raise ValueError(f"offset {text!r}: seconds must be >= 0")
        return cls(anchor, seconds)


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one workload; stdout is read for READY (and copied to `stdout_path` if set)."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    stderr_path: Path
    stdout_path: Path | None = None


@dataclass
class StopResult:
    """How a workload ended: the leader's exit code (None: not reaped) and whether it was SIGKILLed."""

    exit_code: int | None
    killed: bool


@dataclass
class Workload:
    """A running workload: started by `launch()`, stopped by `stop()`."""

    spec: LaunchSpec
    proc: subprocess.Popen[str]
    started: float
    ready: threading.Event = field(default_factory=threading.Event)
    ready_after: float | None = None
    _reader: threading.Thread | None = None

    @property
    def pgid(self) -> int:
        """The process group: the leader's pid (each workload starts a new session)."""
        return self.proc.pid

    def _read_stdout(self, copy: IO[str] | None) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                if line.strip() == READY_LINE and not self.ready.is_set():
                    self.ready_after = time.monotonic() - self.started
                    self.ready.set()
                if copy is not None:
                    copy.write(line)
                    copy.flush()
        finally:
            if copy is not None:
                copy.close()

    def wait_ready(self, deadline: float) -> bool:
        """True once READY came; False at `deadline` (monotonic) or when the leader exited without it."""
        while time.monotonic() < deadline:
            if self.ready.wait(0.2):
                return True
            if self.proc.poll() is not None:
                self.ready.wait(0.5)  # READY may still be in the pipe
                return self.ready.is_set()
        return self.ready.is_set()

    def wait_until(self, offset: Offset, ready_timeout: float) -> bool:
        """Sleep until `offset` is reached; False when it waits on READY that never came (it then
        returns at once after `ready_timeout`, so the caller can still record the window)."""
        base = self.started
        if offset.anchor == "ready":
            if not self.wait_ready(self.started + ready_timeout):
                return False
            assert self.ready_after is not None
            base = self.started + self.ready_after
        left = base + offset.seconds - time.monotonic()
        if left > 0:
            time.sleep(left)
        return True

    def pids(self) -> list[int]:
        """The leader and, with psutil, all its descendants."""
        pids = [self.proc.pid]
        if psutil is not None:
            try:
                pids += [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
            except psutil.Error as exc:
                say(f"{self.spec.name}: children of {self.proc.pid} unknown: {exc}")
        return pids

    def group_alive(self) -> bool:
        """Whether any process of the workload's group is left."""
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass  # the group ended between the check and the signal: nothing left to stop

    def stop(self, grace: float) -> StopResult:
        """SIGTERM to the process group, SIGKILL after `grace` s; the leader reaped."""
        killed = False
        if self.group_alive():
            self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not self.group_alive():
                break
            time.sleep(0.1)
        if self.group_alive():
            killed = True
            self._signal_group(signal.SIGKILL)
        try:
            code: int | None = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            say(f"{self.spec.name}: pid {self.proc.pid} not reaped 10 s after SIGKILL")
            code = None
        if self._reader is not None:
            self._reader.join(timeout=2)
        return StopResult(code, killed)

    def stderr_tail(self, n: int = 15) -> str:
        """The last `n` lines of the workload's stderr log."""
        try:
            lines = self.spec.stderr_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(stderr log unreadable: {exc})"
        return "\n".join(lines[-n:])


def launch(spec: LaunchSpec) -> Workload:
    """Start `spec` in a new session (stdin closed, stderr to its log, stdout read for READY)."""
    spec.stderr_path.parent.mkdir(parents=True, exist_ok=True)
    copy = None
    if spec.stdout_path is not None:
        spec.stdout_path.parent.mkdir(parents=True, exist_ok=True)
        copy = open(spec.stdout_path, "w")  # noqa: SIM115 - closed by the reader thread
    with open(spec.stderr_path, "wb") as err:
        proc = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            spec.argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, cwd=spec.cwd,
            env=spec.env, start_new_session=True, text=True, bufsize=1)
    w = Workload(spec, proc, time.monotonic())
    w._reader = threading.Thread(target=w._read_stdout, args=(copy,), daemon=True)
    w._reader.start()
    return w
