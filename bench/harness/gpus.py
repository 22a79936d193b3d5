"""The GPUs, read-only, through nvidia-smi: their count, utilization while recording, idle waits.

nvidia-smi is the ground truth the benchmark judges idleness against, apart from what nodetune
reads through NVML. Only `--query-gpu` queries: no setting is changed.
"""

from __future__ import annotations

import subprocess
import threading
import time

from bench.harness.console import say

# {gpu index: (utilization.gpu %, memory.used MiB)}
GpuState = dict[int, tuple[float, float]]


def parse_query(out: str) -> GpuState | None:
    """`index, util, mem` CSV lines (noheader, nounits) as a dict; None when there are none."""
    result: GpuState = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            result[int(parts[0])] = (float(parts[1]), float(parts[2]))
        except (ValueError, IndexError):
            continue  # "[N/A]" and blank lines: that GPU cannot say
    return result or None


def nvsmi_query(nvsmi: str | None) -> GpuState | None:
    """{gpu index: (utilization.gpu %, memory.used MiB)}, or None when nvidia-smi cannot say."""
    if not nvsmi:
        return None
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, read-only query
            [nvsmi, "--query-gpu=index,utilization.gpu,memory.used",
             "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"nvidia-smi query failed: {exc}")
        return None
    return parse_query(out)


class UtilMonitor:
    """`nvidia-smi --query-gpu ... -lms 500` while diagnose samples: the ground truth for idleness."""

    def __init__(self, nvsmi: str | None, interval_ms: int = 500) -> None:
        self.nvsmi, self.interval_ms = nvsmi, interval_ms
        self.samples: dict[int, list[float]] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the query loop (nothing without nvidia-smi)."""
        if not self.nvsmi:
            return
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, read-only query
                [self.nvsmi, "--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits",
                 f"-lms={self.interval_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        except OSError as exc:
            say(f"nvidia-smi monitor not started: {exc}")
            self.proc = None
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.setdefault(int(parts[0]), []).append(float(parts[1]))
            except (ValueError, IndexError):
                continue

    def stop(self) -> None:
        """End the query loop and its reader."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.thread is not None:
            self.thread.join(timeout=2)

    def mean(self, gpu: int) -> float | None:
        """Mean utilization % of `gpu` over the monitored span (None: no samples)."""
        s = self.samples.get(gpu)
        return sum(s) / len(s) if s else None


def is_calm(state: GpuState, baseline: GpuState, slack_mib: float = 512) -> bool:
    """Every GPU at 0% and within `slack_mib` of its start-up memory."""
    return bool(state) and all(util == 0 and mem <= baseline.get(i, (0, 0))[1] + slack_mib
                               for i, (util, mem) in state.items())


def wait_gpus_idle(nvsmi: str | None, baseline: GpuState | None, quiet: float, timeout: float) -> float:
    """Wait until every GPU shows 0% util and its start-up memory for `quiet` s; returns waited s."""
    t0 = time.monotonic()
    if not nvsmi or baseline is None:
        time.sleep(min(quiet, 0.5) if nvsmi is None else quiet)
        return time.monotonic() - t0
    calm_since: float | None = None
    while time.monotonic() - t0 < timeout:
        calm = is_calm(nvsmi_query(nvsmi) or {}, baseline)
        now = time.monotonic()
        if calm:
            calm_since = calm_since or now
            if now - calm_since >= quiet:
                return now - t0
        else:
            calm_since = None
        time.sleep(0.25)
    say(f"warning: GPUs not idle after {timeout:.0f}s: {nvsmi_query(nvsmi)}")
    return time.monotonic() - t0
