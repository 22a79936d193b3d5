"""Run each bench workload on a GPU node, diagnose it with `nodetune diagnose`, print the verdicts.

For every workload in bench/workloads/ (or --only a,b): start it, wait for its READY line, let it
settle, run `nodetune diagnose --json --seconds W` on the node while it runs, stop it (SIGTERM to
its process group, SIGKILL after 10 s) and wait until the GPUs are idle again. Then print

  * a confusion table (rows: expected verdict[/cause], columns: what diagnose said),
  * a per-workload table (workload, GPU, expected, got, correct, expected finding present,
    NVML GPU util mean over the window, time diagnose took beyond its window, top evidence),
  * the goals: every workload correct; no job whose GPU was idle >= 50% of the window
    came out healthy; diagnose never took >= 1 s beyond its window,

and write everything to --out as JSON (raw diagnose reports under --save-raw, workload stderr logs
under logs/ beside --out, the printed tables to diagnosis_table.txt beside --out). It always exits
0 when it ran: the table is the result.

A workload's expectation is the module-level `EXPECTED = (verdict, cause-or-None)` in its file
(read with ast; nothing is imported). It counts as correct when diagnose's primary verdict for the
workload's GPU (`gpus[i].verdict`, and `gpus[i].cause` where the expectation names a cause; the
job's cause when the GPU entry has no "cause" key) matches. Whether a finding of the expected kind
(and cause) exists for that GPU is reported beside it.

Modes:
  sequential (default)  one workload at a time on --gpu (default 0); allreduce, when there are >= 2
                        GPUs, over all of them.
  --concurrent          one different workload per GPU at once (workload k of a group on cuda:k),
                        one diagnose for the group; then allreduce alone over all GPUs.
  --dry-run             no GPU, no nodetune: fake workloads that only print READY and sleep, and a
                        fake diagnose (bench/workloads/_fake_diagnose.py) that answers after W s.

Run from the repository root on the GPU machine:

    python3 bench/run_diagnosis.py --seconds 5
    python3 bench/run_diagnosis.py --seconds 5 --concurrent             # >= 2 GPUs
    python3 bench/run_diagnosis.py --seconds 5 --only compute_bound,io_starved \
        --snapshot-during compute_bound:examples/h200-compute-bound.json
    python3 bench/run_diagnosis.py --dry-run --seconds 2               # anywhere

Uses the standard library and psutil only (psutil optional: without it only the workload's own
pid is known). Reads the GPUs only through read-only `nvidia-smi --query-gpu` queries.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is on the GPU machine
    psutil = None

REPO = Path(__file__).resolve().parent.parent
WORKLOAD_DIR = REPO / "bench" / "workloads"
ORDER = ["compute_bound", "memory_bound", "cpu_starved", "io_starved", "pageable_h2d",
         "launch_bound", "idle_allocated", "healthy_training", "startup", "checkpoint", "cpu_eval", "half_host",
         "allreduce", "straggler_2gpu"]
# --concurrent on 2 GPUs pairs these: io_starved's node-wide I/O pressure (PSI io, a busy disk) is
# kept away from cpu_starved's GPU, whose cause it would otherwise blur; raise the pairing on purpose
# with --only in the order you want.
CONCURRENT_ORDER = ["compute_bound", "io_starved", "memory_bound", "cpu_starved", "pageable_h2d",
                    "launch_bound", "idle_allocated", "healthy_training"]
ALL_GPU_WORKLOADS = {"allreduce", "straggler_2gpu"}  # run alone, over every GPU
# Where nvidia-smi cannot say, the GPU of these is idle most of the time by construction.
IDLE_BY_CONSTRUCTION = {"cpu_starved", "io_starved", "pageable_h2d", "idle_allocated"}
HEALTHY_VERDICTS = {"compute_bound", "healthy"}
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                "NVSHMEM_DISABLE_NVLS": "1"}
BEYOND_GOAL_S = 1.0
IDLE_GOAL = 0.5
FAKE_WORKLOAD = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "a = sys.argv\n"
    "s = float(a[a.index('--seconds') + 1]) if '--seconds' in a else 60.0\n"
    "time.sleep(0.2)\n"
    "print('READY', flush=True)\n"
    "time.sleep(s)\n"
)


def say(msg: str) -> None:
    print(f"[run_diagnosis {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Workloads


def read_expected(path: Path) -> tuple[str, str | None] | None:
    """The module-level EXPECTED = (verdict, cause) of a workload file, without importing it."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "EXPECTED" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
                return value[0], value[1]
    return None


def discover() -> dict[str, tuple[Path, tuple[str, str | None]]]:
    found: dict[str, tuple[Path, tuple[str, str | None]]] = {}
    names = [n for n in ORDER if (WORKLOAD_DIR / f"{n}.py").exists()]
    names += sorted(p.stem for p in WORKLOAD_DIR.glob("*.py")
                    if not p.name.startswith("_") and p.stem not in ORDER)
    for name in names:
        path = WORKLOAD_DIR / f"{name}.py"
        exp = read_expected(path)
        if exp is not None:
            found[name] = (path, exp)
    return found


def label(verdict: Any, cause: Any) -> str:
    return f"{verdict}/{cause}" if cause not in (None, "") and verdict != "?" else str(verdict)


class Workload:
    """One workload process (its own session, so SIGTERM reaches its whole process group)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 device: str, gpus: list[int], expected: tuple[str, str | None]) -> None:
        self.name, self.argv, self.device, self.gpus, self.expected = name, argv, device, gpus, expected
        log_dir.mkdir(parents=True, exist_ok=True)
        suffix = device.replace(":", "") if name not in ALL_GPU_WORKLOADS else "all"
        self.stderr_path = log_dir / f"{name}.{suffix}.stderr.log"
        self.ready = threading.Event()
        self.stdout_tail: list[str] = []
        self.started = time.monotonic()
        self.ready_after: float | None = None
        self.exit_code: int | None = None
        self.killed = False
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO,
                env=env, start_new_session=True, text=True, bufsize=1)
        self.pgid = self.proc.pid
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == "READY" and not self.ready.is_set():
                self.ready_after = time.monotonic() - self.started
                self.ready.set()
            self.stdout_tail = (self.stdout_tail + [line.rstrip("\n")])[-20:]

    def wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.ready.wait(0.2):
                return True
            if self.proc.poll() is not None:
                self.ready.wait(0.5)  # READY may still be in the pipe
                return self.ready.is_set()
        return self.ready.is_set()

    def pids(self) -> list[int]:
        pids = [self.proc.pid]
        if psutil is not None:
            try:
                pids += [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
            except psutil.Error:
                pass
        return pids

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, grace: float) -> int | None:
        """SIGTERM to the process group, SIGKILL after `grace` s; returns the leader's exit code."""
        if self._group_alive():
            try:
                os.killpg(self.pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not self._group_alive():
                break
            time.sleep(0.1)
        if self._group_alive():
            self.killed = True
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.exit_code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.exit_code = None
        self._reader.join(timeout=2)
        return self.exit_code

    def stderr_tail(self, n: int = 15) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------------------------
# GPUs, read-only, through nvidia-smi


def nvsmi_query(nvsmi: str | None) -> dict[int, tuple[float, float]] | None:
    """{gpu index: (utilization.gpu %, memory.used MiB)}, or None when nvidia-smi cannot say."""
    if not nvsmi:
        return None
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, read-only query
            [nvsmi, "--query-gpu=index,utilization.gpu,memory.used",
             "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    result: dict[int, tuple[float, float]] = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            result[int(parts[0])] = (float(parts[1]), float(parts[2]))
        except (ValueError, IndexError):
            continue
    return result or None


class UtilMonitor:
    """`nvidia-smi --query-gpu ... -lms 500` while diagnose samples: the ground truth for idleness."""

    def __init__(self, nvsmi: str | None, interval_ms: int = 500) -> None:
        self.nvsmi, self.interval_ms = nvsmi, interval_ms
        self.samples: dict[int, list[float]] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.nvsmi:
            return
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, read-only query
                [self.nvsmi, "--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits",
                 f"-lms={self.interval_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        except OSError:
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
        s = self.samples.get(gpu)
        return sum(s) / len(s) if s else None


def wait_gpus_idle(nvsmi: str | None, baseline: dict[int, tuple[float, float]] | None,
                   quiet: float, timeout: float) -> float:
    """Wait until every GPU shows 0% util and its start-up memory for `quiet` s; returns waited s."""
    t0 = time.monotonic()
    if not nvsmi or baseline is None:
        time.sleep(min(quiet, 0.5) if nvsmi is None else quiet)
        return time.monotonic() - t0
    calm_since: float | None = None
    while time.monotonic() - t0 < timeout:
        q = nvsmi_query(nvsmi) or {}
        calm = bool(q) and all(util == 0 and mem <= baseline.get(i, (0, 0))[1] + 512
                               for i, (util, mem) in q.items())
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


# ---------------------------------------------------------------------------------------------
# nodetune


def default_nodetune_cmd() -> list[str]:
    if shutil.which("nodetune"):
        return ["nodetune"]
    return [sys.executable, "-c", "from nodetune.cli.app import main; main()"]


def run_nodetune(cmd: list[str], extra: list[str], timeout: float,
                 env: dict[str, str]) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=timeout,  # noqa: S603
                           cwd=REPO, env=env, stdin=subprocess.DEVNULL)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = f"timed out after {timeout:.0f}s"
    except OSError as exc:
        rc, out, err = None, "", f"cannot run {cmd[0]}: {exc}"
    return {"rc": rc, "wall_s": time.monotonic() - t0, "stdout": out, "stderr": err}


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


def _as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (dict, list)):
        s = json.dumps(v, separators=(",", ":"))
        return s if len(s) <= 24 else s[:21] + "..."
    return str(v)


def _fmt_evidence(ev: Any, n: int = 3) -> str:
    if not isinstance(ev, dict) or not ev:
        return ""
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in list(ev.items())[:n])


UTIL_KEYS = ("util_mean", "nvml_util_pct", "util_gpu_pct", "gpu_util_pct", "nvml_util", "util_gpu", "gpu_util",
             "utilization_gpu", "utilization.gpu", "util_pct", "util")


def evaluate(report: dict[str, Any] | None, gpu: int, expected: tuple[str, str | None],
             pids: list[int]) -> dict[str, Any]:
    """What diagnose said about `gpu` (and the workload's job), against the expectation."""
    exp_v, exp_c = expected
    out: dict[str, Any] = {"verdict": "?", "cause": "?", "healthy": "?", "job": None,
                           "finding_present": False, "top_evidence": "", "metrics_util": None,
                           "metrics_idle_share": None}
    if report is None:
        return out
    entry = None
    for e in _as_list(report.get("gpus")):
        if isinstance(e, dict) and e.get("index") == gpu:
            entry = e
            break
    job = None
    jobs = [j for j in _as_list(report.get("jobs")) if isinstance(j, dict)]
    pidset = set(pids)
    for j in jobs:
        if pidset & {p for p in _as_list(j.get("pids")) if isinstance(p, int)}:
            job = j
            break
    if job is None:
        for j in jobs:
            if gpu in _as_list(j.get("gpus")):
                job = j
                break
    if job is not None:
        out["job"] = {"id": job.get("id", "?"), "verdict": job.get("verdict", "?"),
                      "cause": job.get("cause", "?"), "pids": job.get("pids", "?")}
    if entry is not None:
        out["verdict"] = entry.get("verdict", "?")
        if "cause" in entry:
            out["cause"] = entry.get("cause")
        elif job is not None and job.get("verdict") == out["verdict"]:
            out["cause"] = job.get("cause", "?")
        out["healthy"] = entry.get("healthy", "?")
        metrics = entry.get("metrics")
        if isinstance(metrics, dict):
            for k in UTIL_KEYS:
                if isinstance(metrics.get(k), (int, float)):
                    out["metrics_util"] = float(metrics[k])
                    break
            if isinstance(metrics.get("idle_share"), (int, float)):
                out["metrics_idle_share"] = float(metrics["idle_share"])
    findings = [f for f in _as_list(report.get("findings")) if isinstance(f, dict)]
    if job is not None:
        findings += [f for f in _as_list(job.get("findings")) if isinstance(f, dict)]

    def on_this_gpu(f: dict[str, Any]) -> bool:
        fg = _as_list(f.get("gpus"))
        fp = {p for p in _as_list(f.get("pids")) if isinstance(p, int)}
        return gpu in fg or bool(fp & pidset) or (not fg and not fp)

    mine = [f for f in findings if on_this_gpu(f)]
    out["finding_present"] = any(
        f.get("kind") == exp_v and (exp_c is None or f.get("cause") == exp_c) for f in mine)

    def conf(f: dict[str, Any]) -> float:
        c = f.get("confidence")
        return float(c) if isinstance(c, (int, float)) else 0.0

    for kind in (out["verdict"], exp_v):
        best = sorted((f for f in mine if f.get("kind") == kind), key=conf, reverse=True)
        if best:
            out["top_evidence"] = _fmt_evidence(best[0].get("evidence"))
            break
    if not out["top_evidence"] and entry is not None:
        out["top_evidence"] = _fmt_evidence(entry.get("metrics"))
    return out


# ---------------------------------------------------------------------------------------------
# Plain-text tables


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join("{:<" + str(w) + "}" for w in widths)
    return "\n".join([fmt.format(*headers), line] + [fmt.format(*r) for r in rows])


def confusion(rows: list[dict[str, Any]]) -> tuple[str, dict[str, dict[str, int]]]:
    counts: dict[str, dict[str, int]] = {}
    cols: list[str] = []
    for r in rows:
        if r["status"] == "skipped":
            continue
        exp = label(*r["expected"])
        got = "ERROR" if r["status"] == "error" else label(r["got"]["verdict"], r["got"]["cause"])
        counts.setdefault(exp, {})
        counts[exp][got] = counts[exp].get(got, 0) + 1
        if got not in cols:
            cols.append(got)
    exps = list(counts)
    cols = [c for c in exps if c in cols] + [c for c in cols if c not in exps]
    body = [[e] + [str(counts[e].get(c, 0) or ".") for c in cols] for e in exps]
    return table(["expected \\ got"] + cols, body), counts


def fmt_num(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "?"


# ---------------------------------------------------------------------------------------------
# The run


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.fake = args.dry_run or args.fake_workloads
        self.window = args.seconds
        if args.nodetune_cmd:
            self.nodetune = shlex.split(args.nodetune_cmd)
        elif args.dry_run:
            self.nodetune = [sys.executable, str(WORKLOAD_DIR / "_fake_diagnose.py")]
        else:
            self.nodetune = default_nodetune_cmd()
        self.nvsmi = None if args.dry_run else shutil.which("nvidia-smi")
        out = args.out or (os.path.join(os.environ["OUT"], "diagnosis_results.json")
                           if os.environ.get("OUT") else str(REPO / "bench" / "results" /
                                                             "diagnosis_results.json"))
        self.out = Path(out).resolve()
        self.out_dir = self.out.parent
        self.raw_dir = Path(args.save_raw).resolve() if args.save_raw else self.out_dir / "diagnose_raw"
        self.log_dir = self.out_dir / "logs"
        self.snapshots: dict[str, str] = {}
        for spec in args.snapshot_during or []:
            name, sep, path = spec.partition(":")
            if not sep or not name or not path:
                raise SystemExit(f"--snapshot-during {spec!r}: expected WORKLOAD:PATH")
            self.snapshots[name] = os.path.abspath(path)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **NO_MULTICAST)
        self.rows: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        self.baseline: dict[int, tuple[float, float]] | None = None
        self.ngpus = 0
        self.round_no = 0

    # -- set-up --------------------------------------------------------------------------------

    def count_gpus(self) -> int:
        if self.args.dry_run:
            return self.args.fake_gpus
        q = nvsmi_query(self.nvsmi)
        if q is None:
            say("warning: nvidia-smi gave no GPUs; assuming 1 (pass --dry-run to test without one)")
            return 1
        return len(q)

    def workload_argv(self, name: str, path: Path, device: str) -> list[str]:
        a = self.args
        seconds = a.workload_seconds or (self.window + a.settle + 60 +
                                         (self.window if name in self.snapshots else 0))
        extra: list[str] = []
        if name == "io_starved" and a.io_data_dir:
            extra += ["--data-dir", a.io_data_dir]
        if name in ALL_GPU_WORKLOADS:
            extra += ["--nproc", str(self.ngpus)]
        if a.workload_cmd_template:
            return shlex.split(a.workload_cmd_template.format(
                python=shlex.quote(a.python), path=shlex.quote(str(path)), name=name,
                seconds=seconds, device=device, extra=shlex.join(extra)))
        if self.fake:
            return [a.python, "-c", FAKE_WORKLOAD, "--seconds", str(seconds), "--device", device]
        return [a.python, str(path), "--seconds", str(seconds), "--device", device] + extra

    def prepare_io(self) -> float | None:
        """Create io_starved's dataset before the clock starts (it is reused afterwards)."""
        argv = [self.args.python, str(WORKLOAD_DIR / "io_starved.py"), "--prepare-only"]
        if self.args.io_data_dir:
            argv += ["--data-dir", self.args.io_data_dir]
        say("io_starved: preparing its dataset (once; reused on later runs)")
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=REPO, env=self.env, timeout=1200,  # noqa: S603
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            say("io_starved: dataset preparation timed out")
            return None
        dt = time.monotonic() - t0
        for line in p.stderr.splitlines()[-4:]:
            say(f"  {line}")
        say(f"io_starved: dataset ready in {dt:.1f}s (rc={p.returncode})")
        return dt

    # -- one round: some workloads at once, one diagnose ----------------------------------------

    def run_round(self, items: list[tuple[str, Path, tuple[str, str | None], str, list[int]]]) -> None:
        self.round_no += 1
        a = self.args
        names = ", ".join(f"{n}@{d if n not in ALL_GPU_WORKLOADS else 'all'}" for n, _, _, d, _ in items)
        say(f"round {self.round_no}: starting {names}")
        procs: list[Workload] = []
        for name, path, expected, device, gpus in items:
            argv = self.workload_argv(name, path, device)
            procs.append(Workload(name, argv, self.env, self.log_dir, device, gpus, expected))
        deadline = time.monotonic() + a.ready_timeout
        ready = [w for w in procs if w.wait_ready(deadline)]
        for w in procs:
            if w not in ready:
                why = "exited before READY" if w.proc.poll() is not None else \
                    f"no READY within {a.ready_timeout:.0f}s"
                say(f"{w.name}: {why} (rc={w.proc.poll()}); stderr tail:\n{w.stderr_tail()}")
                for g in w.gpus:
                    self.rows.append(self._row(w, g, status="error", error=why,
                                               stderr_tail=w.stderr_tail()))
        rnd: dict[str, Any] = {"round": self.round_no, "workloads": [
            {"name": w.name, "device": w.device, "gpus": w.gpus, "argv": w.argv,
             "ready_after_s": w.ready_after, "stderr_log": str(w.stderr_path)} for w in procs]}
        if ready:
            say("ready: " + ", ".join(f"{w.name} after {w.ready_after:.1f}s" for w in ready))
            time.sleep(a.settle)
            for w in ready:
                if w.name in self.snapshots:
                    rnd["snapshot"] = self._snapshot(w)
            pids = {w.name + w.device: w.pids() for w in ready}
            env = dict(self.env)
            if a.dry_run:
                expect = {str(g): {"verdict": w.expected[0], "cause": w.expected[1],
                                   "pids": pids[w.name + w.device]} for w in ready for g in w.gpus}
                wrong = {str(g) for w in ready for g in w.gpus if w.name in a.fake_wrong}
                env.update(NODETUNE_FAKE_EXPECT=json.dumps(expect),
                           NODETUNE_FAKE_WRONG=",".join(sorted(wrong)))
            monitor = UtilMonitor(None if a.no_util_monitor else self.nvsmi)
            monitor.start()
            say(f"diagnose: {shlex.join(self.nodetune)} diagnose --json --seconds {self.window:g}")
            extra: list[str] = []
            if a.save_windows and not a.dry_run:
                # The diagnosed window itself, for replay tests of the rules on real data.
                Path(a.save_windows).mkdir(parents=True, exist_ok=True)
                name = "+".join(w.name for w in ready)
                extra = ["--save", str(Path(a.save_windows) / f"{self.round_no:02d}-{name}.json.gz")]
            res = run_nodetune(self.nodetune, ["diagnose", "--json", "--seconds", f"{self.window:g}", *extra],
                               self.window + a.diagnose_timeout, env)
            monitor.stop()
            beyond = res["wall_s"] - self.window
            report, perr = parse_report(res["stdout"])
            raw_path = self._save_raw(res, report)
            internal = None
            if report is not None and isinstance(report.get("elapsed_s"), (int, float)) and \
                    isinstance(report.get("window_s"), (int, float)):
                internal = float(report["elapsed_s"]) - float(report["window_s"])
            error = None
            if res["rc"] != 0 or report is None:
                error = f"diagnose rc={res['rc']}: {perr or ''} {res['stderr'].strip()[-400:]}".strip()
                say(error)
            say(f"diagnose took {res['wall_s']:.2f}s = window + {beyond:.2f}s"
                + (f" (its own count: +{internal:.2f}s)" if internal is not None else ""))
            rnd["diagnose"] = {"rc": res["rc"], "wall_s": res["wall_s"], "beyond_s": beyond,
                               "beyond_internal_s": internal, "raw": raw_path, "error": error,
                               "stderr_tail": res["stderr"][-2000:]}
            for w in ready:
                for g in w.gpus:
                    got = evaluate(report, g, w.expected, pids[w.name + w.device])
                    util = monitor.mean(g)
                    src = "nvidia-smi"
                    if util is None and got["metrics_util"] is not None:
                        util, src = got["metrics_util"], "diagnose metrics"
                    if util is None:
                        src = "none"
                    self.rows.append(self._row(
                        w, g, status="ok" if report is not None else "error", got=got, error=error,
                        util=util, util_source=src, beyond=beyond, internal=internal,
                        raw=raw_path, pids=pids[w.name + w.device]))
                    r = self.rows[-1]
                    say(f"{w.name} gpu{g}: expected {label(*w.expected)}, got "
                        f"{label(got['verdict'], got['cause'])} -> "
                        f"{'correct' if r['correct'] else 'WRONG'}")
        for w in procs:
            rc = w.stop(a.stop_grace)
            if rc != 0 or w.killed:
                say(f"{w.name}: exit code {rc}{' (SIGKILLed)' if w.killed else ''} after SIGTERM")
            for r in self.rows:
                if r["workload"] == w.name and r["device"] == w.device and r["round"] == self.round_no:
                    r["workload_exit"] = rc
                    r["workload_killed"] = w.killed
        waited = wait_gpus_idle(self.nvsmi, self.baseline, a.idle_quiet, a.idle_timeout)
        rnd["idle_wait_s"] = waited
        self.rounds.append(rnd)

    def _row(self, w: Workload, gpu: int, status: str, got: dict[str, Any] | None = None,
             error: str | None = None, util: float | None = None, util_source: str = "none",
             beyond: float | None = None, internal: float | None = None, raw: str | None = None,
             pids: list[int] | None = None, stderr_tail: str | None = None) -> dict[str, Any]:
        got = got or {"verdict": "?", "cause": "?", "healthy": "?", "job": None,
                      "finding_present": False, "top_evidence": ""}
        exp_v, exp_c = w.expected
        correct = status == "ok" and got["verdict"] == exp_v and (exp_c is None or got["cause"] == exp_c)
        idle_share = (1.0 - util / 100.0) if isinstance(util, (int, float)) else None
        if util_source == "diagnose metrics" and got.get("metrics_idle_share") is not None:
            idle_share = got["metrics_idle_share"]
        return {"round": self.round_no, "workload": w.name, "device": w.device, "gpu": gpu,
                "status": status, "expected": [exp_v, exp_c], "got": got, "correct": correct,
                "util_mean": util, "util_source": util_source, "idle_share": idle_share,
                "beyond_s": beyond, "beyond_internal_s": internal, "raw": raw, "pids": pids,
                "error": error, "stderr_tail": stderr_tail, "ready_after_s": w.ready_after,
                "stderr_log": str(w.stderr_path)}

    def _snapshot(self, w: Workload) -> dict[str, Any]:
        path = self.snapshots[w.name]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        note = (f"bench workload {w.name} on {w.device} (expected {label(*w.expected)}), "
                f"recorded by bench/run_diagnosis.py")
        say(f"snapshot of {w.name} -> {path}")
        res = run_nodetune(self.nodetune, ["snapshot", "-o", path, "--seconds", f"{self.window:g}",
                                           "--note", note],
                           self.window + self.args.diagnose_timeout, self.env)
        if res["rc"] != 0:
            say(f"snapshot failed rc={res['rc']}: {res['stderr'].strip()[-400:]}")
        return {"workload": w.name, "path": path, "rc": res["rc"], "wall_s": res["wall_s"],
                "stderr_tail": res["stderr"][-1000:]}

    def _save_raw(self, res: dict[str, Any], report: dict[str, Any] | None) -> str:
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        stem = f"round{self.round_no:02d}"
        if report is not None:
            path = self.raw_dir / f"{stem}.diagnose.json"
            path.write_text(json.dumps(report, indent=1) + "\n")
        else:
            path = self.raw_dir / f"{stem}.diagnose.txt"
            path.write_text(f"rc={res['rc']}\n--- stdout\n{res['stdout']}\n--- stderr\n{res['stderr']}\n")
        return str(path)

    # -- the plan ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        found = discover()
        names = list(found)
        if a.only:
            wanted = [n.strip() for n in a.only.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in found]
            if unknown:
                raise SystemExit(f"--only: unknown workload(s) {unknown}; known: {', '.join(found)}")
            names = wanted
        if a.skip:
            names = [n for n in names if n not in {s.strip() for s in a.skip.split(",")}]
        self.ngpus = self.count_gpus()
        self.baseline = nvsmi_query(self.nvsmi)
        if self.baseline and any(u > 0 or m > 1024 for u, m in self.baseline.values()):
            say(f"warning: GPUs not idle at start (util %, MiB used): {self.baseline}")
        t_start = time.monotonic()
        say(f"{len(names)} workload(s), {self.ngpus} GPU(s), window {self.window:g}s, "
            f"nodetune: {shlex.join(self.nodetune)}{' [DRY RUN]' if a.dry_run else ''}")
        io_prep = None
        if "io_starved" in names and not self.fake and not a.workload_cmd_template:
            io_prep = self.prepare_io()
        if self.nvsmi:
            wait_gpus_idle(self.nvsmi, self.baseline, a.idle_quiet, a.idle_timeout)
        single = [n for n in names if n not in ALL_GPU_WORKLOADS]
        multi = [n for n in names if n in ALL_GPU_WORKLOADS]
        concurrent = a.concurrent
        if concurrent and self.ngpus < 2:
            say("--concurrent needs >= 2 GPUs: running one workload at a time")
            concurrent = False
        if concurrent:
            if not a.only:
                rank = {n: i for i, n in enumerate(CONCURRENT_ORDER)}
                single.sort(key=lambda n: rank.get(n, len(rank)))
            for i in range(0, len(single), self.ngpus):
                group = single[i:i + self.ngpus]
                self.run_round([(n, found[n][0], found[n][1], f"cuda:{k}", [k])
                                for k, n in enumerate(group)])
        else:
            for n in single:
                self.run_round([(n, found[n][0], found[n][1], f"cuda:{a.gpu}", [a.gpu])])
        for n in multi:
            if self.ngpus < 2:
                say(f"{n}: skipped, needs >= 2 GPUs (this machine has {self.ngpus})")
                exp_v, exp_c = found[n][1]
                self.rows.append({"round": None, "workload": n, "device": "all", "gpu": None,
                                  "status": "skipped", "expected": [exp_v, exp_c], "got": None,
                                  "correct": None, "error": "needs >= 2 GPUs"})
                continue
            self.run_round([(n, found[n][0], found[n][1], "cuda:0", list(range(self.ngpus)))])
        return self.summarize(time.monotonic() - t_start, io_prep)

    # -- the result ----------------------------------------------------------------------------

    def summarize(self, total_s: float, io_prep: float | None) -> dict[str, Any]:
        rows = self.rows
        conf_text, conf = confusion(rows)
        body = []
        for r in rows:
            if r["status"] == "skipped":
                body.append([r["workload"], "-", label(*r["expected"]), "skipped", "-", "-", "-",
                             "-", r.get("error") or ""])
                continue
            got = r["got"]
            gotl = "ERROR" if r["status"] == "error" and got["verdict"] == "?" else \
                label(got["verdict"], got["cause"])
            ev = got.get("top_evidence") or (r.get("error") or "")[:60]
            body.append([r["workload"], str(r["gpu"]), label(*r["expected"]), gotl,
                         "yes" if r["correct"] else "NO",
                         "yes" if got.get("finding_present") else "no",
                         fmt_num(r.get("util_mean"), ".0f"), fmt_num(r.get("beyond_s"), ".2f"),
                         ev[:90]])
        per = table(["workload", "gpu", "expected", "got", "correct", "finding", "util%",
                     "beyond s", "top evidence"], body)

        counted = [r for r in rows if r["status"] != "skipped"]
        wrong = [f"{r['workload']}@gpu{r['gpu']}" for r in counted if not r["correct"]]
        idle_bad = []
        for r in counted:
            idle = r.get("idle_share")
            is_idle = idle >= IDLE_GOAL if isinstance(idle, float) else r["workload"] in IDLE_BY_CONSTRUCTION
            got = r["got"] or {}
            healthy = got.get("healthy") is True or got.get("verdict") in HEALTHY_VERDICTS
            if is_idle and healthy:
                idle_bad.append(f"{r['workload']}@gpu{r['gpu']}")
        diags = [rd["diagnose"] for rd in self.rounds if "diagnose" in rd]
        beyonds = [d["beyond_s"] for d in diags if d["error"] is None]
        failed_diags = len(diags) - len(beyonds)
        max_beyond = max(beyonds) if beyonds else None
        goals = {
            "all_correct": {"pass": bool(counted) and not wrong, "wrong": wrong,
                            "correct": len(counted) - len(wrong), "total": len(counted)},
            "idle_never_healthy": {"pass": not idle_bad, "violations": idle_bad},
            "beyond_window_under_1s": {"pass": max_beyond is not None and max_beyond < BEYOND_GOAL_S
                                       and not failed_diags, "max_beyond_s": max_beyond,
                                       "failed_diagnose_runs": failed_diags},
        }
        goal_lines = [
            f"[{'PASS' if goals['all_correct']['pass'] else 'FAIL'}] every workload diagnosed "
            f"correctly: {len(counted) - len(wrong)}/{len(counted)}"
            + (f" (wrong: {', '.join(wrong)})" if wrong else ""),
            f"[{'PASS' if not idle_bad else 'FAIL'}] no job whose GPU was idle >= 50% of the window "
            f"came out healthy" + (f" (violations: {', '.join(idle_bad)})" if idle_bad else ""),
            f"[{'PASS' if goals['beyond_window_under_1s']['pass'] else 'FAIL'}] diagnose work beyond "
            f"its window < {BEYOND_GOAL_S:g}s: max {fmt_num(max_beyond, '.2f')}s"
            + (f" (per diagnose run: {', '.join(f'{b:.2f}' for b in beyonds)})" if beyonds else "")
            + (f"; {failed_diags} diagnose run(s) failed" if failed_diags else ""),
        ]
        host = platform.node()
        header = (f"nodetune diagnosis bench: {len(counted)} row(s), {self.ngpus} GPU(s), "
                  f"window {self.window:g}s, mode {'concurrent' if self.args.concurrent else 'sequential'}"
                  f"{', DRY RUN (fake workloads and diagnose)' if self.args.dry_run else ''}, "
                  f"total {total_s:.0f}s")
        text = "\n".join([header, "", "Confusion (rows: expected, columns: diagnose's verdict)",
                          conf_text, "", "Per workload", per, "", "Goals"] + goal_lines) + "\n"
        print("\n" + text, flush=True)
        results = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - total_s)),
            "host": host, "dry_run": self.args.dry_run, "mode":
                "concurrent" if self.args.concurrent else "sequential",
            "window_s": self.window, "gpus": self.ngpus, "nodetune_cmd": self.nodetune,
            "total_s": total_s, "io_prepare_s": io_prep, "gpu_baseline": self.baseline,
            "rows": rows, "rounds": self.rounds, "confusion": conf, "goals": goals,
            "table": text,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        (self.out_dir / "diagnosis_table.txt").write_text(text)
        say(f"wrote {self.out}, {self.out_dir / 'diagnosis_table.txt'}, raw reports in {self.raw_dir}")
        return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Diagnose each bench workload with nodetune and print "
                                "a confusion table.", formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=(__doc__ or "").split("Run from the repository root", 1)[-1])
    p.add_argument("--seconds", type=float, default=10.0, help="diagnose's sampling window W (default 10)")
    p.add_argument("--only", help="comma-separated workload names")
    p.add_argument("--skip", help="comma-separated workload names to leave out")
    p.add_argument("--concurrent", action="store_true",
                   help="one different workload per GPU at once, one diagnose per group")
    p.add_argument("--gpu", type=int, default=0, help="GPU for sequential mode (default 0)")
    p.add_argument("--nodetune-cmd", help="how to run nodetune, shlex-split (default: `nodetune` on "
                   "PATH, else python -c 'from nodetune.cli.app import main; main()')")
    p.add_argument("--python", default=sys.executable, help="interpreter for the workloads")
    p.add_argument("--workload-seconds", type=float, default=0.0,
                   help="--seconds passed to workloads (default: W + settle + 60; they are stopped anyway)")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for READY")
    p.add_argument("--settle", type=float, default=1.0, help="seconds between READY and diagnose")
    p.add_argument("--stop-grace", type=float, default=10.0, help="SIGTERM -> SIGKILL delay")
    p.add_argument("--idle-quiet", type=float, default=2.0,
                   help="seconds the GPUs must read idle before the next workload")
    p.add_argument("--idle-timeout", type=float, default=60.0)
    p.add_argument("--diagnose-timeout", type=float, default=120.0,
                   help="seconds diagnose may run beyond W before it is killed")
    p.add_argument("--out", help="results JSON (default $OUT/diagnosis_results.json, else "
                   "bench/results/diagnosis_results.json)")
    p.add_argument("--save-raw", metavar="DIR", help="where to keep each raw diagnose report "
                   "(default: diagnose_raw/ beside --out)")
    p.add_argument("--save-windows", metavar="DIR", help="pass `--save DIR/NN-workload.json.gz` to each diagnose")
    p.add_argument("--snapshot-during", action="append", metavar="WORKLOAD:PATH",
                   help="while WORKLOAD runs, `nodetune snapshot -o PATH --seconds W` first")
    p.add_argument("--io-data-dir", help="--data-dir for io_starved")
    p.add_argument("--no-util-monitor", action="store_true",
                   help="do not run `nvidia-smi --query-gpu ... -lms 500` during diagnose (GPU util "
                   "then comes from diagnose's own metrics)")
    p.add_argument("--dry-run", action="store_true",
                   help="fake workloads and a fake diagnose: tests this runner without a GPU")
    p.add_argument("--fake-workloads", action="store_true",
                   help="fake workloads (print READY, sleep) with the real or given nodetune")
    p.add_argument("--fake-gpus", type=int, default=1, help="GPU count in a dry run (default 1)")
    p.add_argument("--fake-wrong", default="", help="dry run: workloads the fake diagnose gets wrong")
    p.add_argument("--workload-cmd-template",
                   help="command for each workload, formatted with {python} {path} {name} {seconds} "
                   "{device} {extra} and shlex-split")
    args = p.parse_args(argv)
    args.fake_wrong = {s.strip() for s in args.fake_wrong.split(",") if s.strip()}
    if args.seconds <= 0:
        p.error("--seconds must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Runner(args).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
