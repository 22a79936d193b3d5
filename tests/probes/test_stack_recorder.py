"""The StackRecorder's bad cases are notes, never exceptions: py-spy missing, a process that is gone,
a slice kept only as long as a window needs it."""

from __future__ import annotations

import sys
import time

from nodetune.probes.pystacks import StackRecorder, StackSample


def test_missing_pyspy_is_a_reason_per_process() -> None:
    r = StackRecorder(slice_s=1, rate_hz=5)
    r.exe = None  # as on a node where py-spy is not installed
    r.tick([4242])
    got = r.slices(0, time.monotonic() + 1)
    assert len(got) == 1 and not got[0].ok and "py-spy is not installed" in (got[0].reason or "")
    r.tick([4242])  # not retried at once: one note, not one per sample
    assert len(r.slices(0, time.monotonic() + 1)) == 1


def test_process_gone_is_a_reason_not_a_crash() -> None:
    r = StackRecorder(slice_s=1, rate_hz=5, retry_s=60)
    if r.exe is None:
        return  # covered by the test above
    r.tick([2**22 + 17])  # above pid_max's default: no such process
    deadline = time.monotonic() + 10
    while r.running and time.monotonic() < deadline:
        time.sleep(0.1)
        r.tick([2**22 + 17])
    got = r.slices(0, time.monotonic() + 1, finish=True)
    assert got and not got[0].ok and got[0].reason


def test_old_slices_are_dropped() -> None:
    now = [1000.0]
    r = StackRecorder(slice_s=1, keep_s=30, clock=lambda: now[0])
    r.exe = None
    r.done.append(StackSample(pid=1, ok=True, t_start=900.0, t_end=901.0))
    r.tick([])
    assert list(r.done) == []


def _fake_pyspy(tmp_path, stderr: str, code: int) -> str:
    """A py-spy stand-in that fails the way a real one does."""
    exe = tmp_path / "py-spy"
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write({stderr!r})\nsys.exit({code})\n")
    exe.chmod(0o755)
    return str(exe)


def _one_slice(exe: str) -> StackSample:
    r = StackRecorder(slice_s=1, rate_hz=5, exe=exe)
    r.tick([4242])
    deadline = time.monotonic() + 10
    while r.running and time.monotonic() < deadline:
        time.sleep(0.05)
        r.tick([4242])
    got = r.slices(0, time.monotonic() + 1, finish=True)
    assert len(got) == 1 and not got[0].ok
    return got[0]


def test_ptrace_refused_says_how_to_allow_it(tmp_path) -> None:
    s = _one_slice(_fake_pyspy(tmp_path, "Error: Permission Denied (os error 13)", 1))
    assert "permission denied" in (s.reason or "") and "CAP_SYS_PTRACE" in (s.reason or "")


def test_a_gpu_process_that_is_not_python_is_named_so(tmp_path) -> None:
    s = _one_slice(_fake_pyspy(tmp_path, "Error: Failed to find python version from target process", 1))
    assert s.reason == "not a Python process (py-spy found no interpreter)"


def test_py_spy_too_old_says_which_version_to_install(tmp_path) -> None:
    s = _one_slice(_fake_pyspy(tmp_path, "error: Found argument '--nonblocking' which wasn't expected", 2))
    assert "too old" in (s.reason or "") and "pip install -U py-spy" in (s.reason or "")


def test_refused_stacks_are_a_report_note_and_counters_decide() -> None:
    from nodetune.config.diagnosis import Thresholds
    from nodetune.diagnosis.engine import diagnose
    from tests.support.windows import ProcLoad, ThreadLoad, WindowBuilder

    b = WindowBuilder(seconds=10).gpu(0, util=25, sm=8).proc(
        ProcLoad(pid=100, gpus=[0], threads=[ThreadLoad(100, "python", 100)], age_s=300))
    b.stack(100, [], ok=False, reason="py-spy could not attach: permission denied", at=(0, 10))
    topo, win = b.build()
    r = diagnose(topo, win, Thresholds())
    assert any(n.startswith("no stacks for pid 100: py-spy could not attach") for n in r.notes)
    assert r.gpus[0].verdict == "launch_bound" and r.gpus[0].confidence <= 0.6
