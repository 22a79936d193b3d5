"""The agent's loop: sample the node on a fixed cadence into the ring, hand the last window to the
diagnosis worker every N seconds, publish what both saw in the State's View.

Only the sampling thread (the caller of `run`) touches the Sampler and the ring; the diagnosis
worker gets a `DiagnosisWork` (a copy of the window) and writes the View and the sinks. Every wait
is an Event wait, so a stop ends the loop within a fraction of a second.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from nodetune.agent.journal_reader import JournalReader
from nodetune.agent.lost_hours import GpuBook
from nodetune.agent.notify import Notifier
from nodetune.agent.probe_ledger import Ledger, missing_counts
from nodetune.agent.sinks import Sinks
from nodetune.agent.state import JobBook, State, lateness_bucket
from nodetune.agent.wakeup import StopEvent
from nodetune.config.agent import AgentConfig
from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.findings import Report
from nodetune.probes.gpu import GpuSample
from nodetune.probes.node import Topology, probe_topology
from nodetune.probes.processes import ProcessInfo
from nodetune.probes.pystacks import StackRecorder
from nodetune.probes.sampler import MAX_STACK_PROCESSES, MIN_INTERVAL_S, Sampler
from nodetune.probes.snapshot import Sample, Window
from nodetune.probes.source import Source

log = logging.getLogger("nodetune.agent")


@dataclass
class DiagnosisWork:
    """One window handed from the sampling thread to the diagnosis worker."""

    topo: Topology
    window: Window
    th: Thresholds


def probe_of(exc: BaseException) -> str:
    """The probe module a sampling error came from (innermost nodetune.probes frame), for the label."""
    name = "sampler"
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        mod = frame.f_globals.get("__name__", "")
        if mod.startswith("nodetune.probes."):
            name = mod.rsplit(".", 1)[1]
    return name


def ring_size(cfg: AgentConfig) -> int:
    """Samples the ring keeps: one window and two spare."""
    return math.ceil(cfg.window_s / cfg.sample_interval_s) + 2


class Controller:
    """The cadence loop (`run`), the diagnosis worker, and the topology they share."""

    def __init__(self, src: Source, acfg: AgentConfig, th: Thresholds, state: State, notifier: Notifier,
                 sinks: Sinks, journal: JournalReader, stop_event: StopEvent, topo: Topology | None = None) -> None:
        self.src = src
        self.acfg = acfg
        self.th = th
        self.state = state
        self.notifier = notifier
        self.sinks = sinks
        self.journal = journal
        self.stop_event = stop_event
        self.wake = threading.Event()  # cuts the loop's wait short (SIGHUP, a stop) without stopping it
        self.reprobe = threading.Event()  # hot-plug or a lost GPU: probe the topology again
        self.jobs = JobBook(acfg.job_retention_s, acfg.max_jobs)
        self.gpu_book = GpuBook()
        self.ledger = Ledger()
        self._errors_logged: set[tuple[str, str]] = set()  # (probe, exception type): one line each
        self._queue: queue.Queue[DiagnosisWork | None] = queue.Queue(maxsize=1)
        self._last_diag_mono: float | None = None
        self._prev_procs: dict[int, ProcessInfo] = {}
        self.bus_to_gpu: dict[str, str] = {}
        self.topo = self._probe_topology() if topo is None else self._take_topology(topo)  # given: a replay
        self.sampler = self._new_sampler()
        stop_event.on_set(self.wake.set)
        stop_event.on_set(self._wake_worker)

    def configure(self, acfg: AgentConfig, th: Thresholds) -> None:
        """Take a reloaded config: the loop reads it from its next wait on."""
        self.acfg, self.th = acfg, th
        self.sampler.worker_scan_every = max(1, round(acfg.worker_scan_every_s / acfg.sample_interval_s))

    # -- topology and sampler -------------------------------------------------------------------------
    def _probe_topology(self) -> Topology:
        return self._take_topology(probe_topology(self.src.host, self.src.backend, self.src.status))

    def _take_topology(self, topo: Topology) -> Topology:
        self.bus_to_gpu = {g.address.rsplit(".", 1)[0].lower(): str(g.index) for g in topo.gpus if g.address}
        self.state.update(topo=topo)
        return topo

    def _new_sampler(self) -> Sampler:
        cfg = self.acfg
        every = max(1, round(cfg.worker_scan_every_s / cfg.sample_interval_s))
        sampler = Sampler(self.src.host, self.src.backend, self.topo, worker_scan_every=every)
        if cfg.stacks and self.src.host.live:
            # keep what the next diagnosis window can use: its length and one slice before it
            sampler.stacks = StackRecorder(slice_s=cfg.stacks_slice_s, rate_hz=cfg.stacks_rate_hz,
                                           max_processes=MAX_STACK_PROCESSES, keep_s=cfg.window_s + cfg.stacks_slice_s)
            sampler.stacks_busy_s = cfg.stacks_slice_s  # a GPU busy throughout has no idle time to explain
        return sampler

    def _do_reprobe(self) -> None:
        old = [g.address for g in self.topo.gpus]
        try:
            topo = self._probe_topology()
        except Exception as exc:  # keep sampling the old topology; the next event tries again
            log.error("topology re-probe failed: %s: %s", type(exc).__name__, exc)
            return
        self.topo = topo
        if [g.address for g in topo.gpus] != old:
            log.warning("topology changed: GPUs %s -> %s", old, [g.address for g in topo.gpus])
            if self.sampler.stacks is not None:
                self.sampler.stacks.stop()
            self.sampler = self._new_sampler()
            self.sampler.prime()
            self.state.ring.clear()  # samples of another GPU set would mislead the next window
        self.state.update(topology_reprobes_total=self.state.view.topology_reprobes_total + 1)

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, max_samples: int | None = None, reload: threading.Event | None = None,
            on_reload: Callable[[], None] | None = None) -> None:
        """Sample until stopped (or `max_samples`, for --once and tests); `on_reload` runs between
        samples when `reload` is set, so the cadence keeps its grid."""
        self.sampler.prime()
        self.stop_event.wait(MIN_INTERVAL_S)  # GPM needs two samples >= 100 ms apart
        cfg = self.acfg
        start = time.monotonic()
        slot = next_detail = next_journal = start
        next_diag = start + min(cfg.diagnose_every_s, cfg.window_s)
        n = 0
        while not self.stop_event.is_set():
            if self.reprobe.is_set():
                self.reprobe.clear()
                self._do_reprobe()
            now = time.monotonic()
            late = max(0.0, now - slot)
            detail = now >= next_detail
            if detail:
                next_detail = now + cfg.detail_every_s
            self._sample_once(detail, late)
            n += 1
            if n == 1:
                self.notifier.ready(self.status_line())
            self.notifier.watchdog()
            now = time.monotonic()
            if now >= next_diag:
                self._hand_over()
                next_diag = now + cfg.diagnose_every_s
            if now >= next_journal:
                self._poll_journal()
                next_journal = now + cfg.journal_every_s
            if max_samples is not None and n >= max_samples:
                break
            slot += cfg.sample_interval_s
            now = time.monotonic()
            if slot <= now:  # the sample ran into the next slot(s): skip them, keep the grid
                skipped = math.floor((now - slot) / cfg.sample_interval_s) + 1
                slot += skipped * cfg.sample_interval_s
                self.state.update(overruns_total=self.state.view.overruns_total + skipped)
            while not self.stop_event.is_set():
                if reload is not None and on_reload is not None and reload.is_set():
                    reload.clear()
                    on_reload()
                    cfg = self.acfg
                left = slot - time.monotonic()
                if left <= 0:
                    break
                self.wake.clear()
                if not self.stop_event.is_set():  # a stop that came before the clear would be lost
                    self.wake.wait(left)  # until the slot; a stop or SIGHUP sets wake

    def _poll_journal(self) -> None:
        tuning = self.journal.read()
        if tuning is not None:
            self.state.update(tuning=tuning)

    def _sample_once(self, detail: bool, late: float) -> None:
        t0, c0 = time.monotonic(), time.thread_time()  # the sampling thread alone, not diagnosis or HTTP
        v = self.state.view
        try:
            s = self.sampler.sample(detail=detail)
        except Exception as exc:  # a probe bug or a node state no probe expected: counted, logged once
            probe = probe_of(exc)
            key = (probe, type(exc).__name__)
            if key not in self._errors_logged:
                self._errors_logged.add(key)
                log.error("sample failed in probe %s: %s: %s (counted in nodetune_agent_sample_errors_total)",
                          probe, type(exc).__name__, exc)
            self.state.count("sample_errors", probe)
            return
        self.state.ring.append(s)
        counts = list(v.lateness_counts)
        counts[lateness_bucket(late)] += 1
        detail_map = v.gpu_detail
        states = {g.index: g.state for g in s.gpus}
        if any(g.energy_j is not None or g.ecc_corrected is not None for g in s.gpus):
            d: dict[int, GpuSample] = dict(detail_map)
            d.update({g.index: g for g in s.gpus if g.energy_j is not None or g.ecc_corrected is not None})
            detail_map = MappingProxyType(d)
        self._log_gpu_states(s, v.gpu_states)
        missing = self.ledger.observe(s, first=v.samples_total == 0)  # what a node lacks from the start is no fault
        self.state.update(
            sample=s, sample_wall=time.time(), sample_duration_s=time.monotonic() - t0,
            sample_cpu_s=time.thread_time() - c0, samples_total=v.samples_total + 1,
            lateness_counts=tuple(counts), lateness_sum_s=v.lateness_sum_s + late,
            missing_fields=MappingProxyType(missing), gpu_detail=detail_map,
            gpu_states=MappingProxyType(states), ring_len=len(self.state.ring), followed=len(self.sampler.infos),
            workers_capped=self.sampler.capped())

    def _log_gpu_states(self, s: Sample, before: MappingProxyType[int, str] | dict[int, str]) -> None:
        """One log line per GPU that leaves the ok state, never one per sample."""
        for g in s.gpus:
            if g.state != "ok" and before.get(g.index) != g.state:
                log.error("GPU %d: %s: %s (nodetune_gpu_state)", g.index, g.state, g.missing.get("*", ""))
                if g.state == "lost":
                    self.reprobe.set()  # the topology shows it gone (and gpu_lost at the next diagnosis)

    def replay(self, window: Window) -> Report | None:
        """Publish a recorded window as if it had been sampled here (its last sample, its missing
        values, the GPUs' slow counters) and diagnose it once: `nodetune agent --once --replay`."""
        if not window.samples:
            return None
        detail: dict[int, GpuSample] = {}
        for s in window.samples:
            self.state.ring.append(s)
            detail.update({g.index: g for g in s.gpus if g.energy_j is not None or g.ecc_corrected is not None})
        last = window.samples[-1]
        self.state.update(sample=last, sample_wall=time.time(), samples_total=len(window.samples),
                          missing_fields=MappingProxyType(missing_counts(last)), gpu_detail=MappingProxyType(detail),
                          gpu_states=MappingProxyType({g.index: g.state for g in last.gpus}),
                          ring_len=len(self.state.ring), interval_s=window.interval_s)
        return self.diagnose_now(DiagnosisWork(self.topo, window, self.th))

    # -- diagnosis ------------------------------------------------------------------------------------
    def _hand_over(self) -> None:
        try:
            self._queue.put_nowait(self.window_work())
        except queue.Full:
            self.state.update(diagnoses_skipped_total=self.state.view.diagnoses_skipped_total + 1)

    def window_work(self) -> DiagnosisWork:
        """The last window_s of the ring as a Window, the Sampler's window bookkeeping rolled."""
        cfg = self.acfg
        need = math.ceil(cfg.window_s / cfg.sample_interval_s) + 1
        ring = self.state.ring
        samples = list(ring)[-need:] if len(ring) > need else list(ring)
        win = Window(seconds=cfg.window_s, interval_s=cfg.sample_interval_s, samples=samples)
        self.sampler.roll(win)
        # A process that exited during the previous roll period is still in the window's samples.
        mine = {p.pid for p in win.processes}
        win.processes += [p for pid, p in self._prev_procs.items() if pid not in mine]
        self._prev_procs = {p.pid: p for p in win.processes if p.pid in mine}
        if samples:
            win.seconds = round(samples[-1].t - samples[0].t, 3)
            if self.sampler.stacks is not None:
                win.stacks = self.sampler.stacks.slices(samples[0].t, samples[-1].t)
        return DiagnosisWork(self.topo, win, self.th)

    def diagnose_now(self, work: DiagnosisWork) -> Report | None:
        """Diagnose one window, publish the report and hand it to the sinks (None: too short, or failed)."""
        if len(work.window.samples) < 2:
            return None
        t0 = time.monotonic()
        try:
            report = diagnose(work.topo, work.window, work.th, "agent")
        except Exception as exc:
            v = self.state.view
            if v.diagnosis_errors_total == 0:
                log.error("diagnosis failed: %s: %s (nodetune_agent_diagnosis_errors_total)", type(exc).__name__, exc)
            self.state.update(diagnosis_errors_total=v.diagnosis_errors_total + 1)
            return None
        now = time.monotonic()
        window_s = work.window.seconds
        dt = max(window_s if self._last_diag_mono is None else min(now - self._last_diag_mono, window_s), 0.0)
        self._last_diag_mono = now
        self.jobs.retention_s, self.jobs.max_jobs = self.acfg.job_retention_s, self.acfg.max_jobs
        self.jobs.add(report, dt, now)
        self.gpu_book.add(report, dt)
        verdict_s, lost_s = self.gpu_book.frozen()
        self.state.update(report=report, report_wall=time.time(), diagnosis_duration_s=now - t0,
                          diagnoses_total=self.state.view.diagnoses_total + 1, jobs=self.jobs.rows(),
                          gpu_verdict_seconds=verdict_s, gpu_lost_seconds=lost_s)
        self.notifier.status(self.status_line())
        wall = time.time()
        try:
            self.sinks.remember(report, wall - dt, wall)
        except Exception as exc:  # never let history or autotune stop the diagnoses
            log.error("history/autotune failed: %s: %s", type(exc).__name__, exc)
        return report

    def _wake_worker(self) -> None:
        try:
            self._queue.put_nowait(None)  # the worker sleeps on the queue: None says look at stop_event
        except queue.Full:
            pass  # work is queued: the worker wakes for it and then sees the stop

    def diagnosis_worker(self) -> None:
        """The diagnosis thread's body: one window at a time until the stop."""
        while not self.stop_event.is_set():
            work = self._queue.get()  # no timeout: a stop puts None
            if work is not None and not self.stop_event.is_set():
                self.diagnose_now(work)

    def status_line(self) -> str:
        """sd_notify's STATUS=: the verdicts of the last diagnosis, or what the agent waits for."""
        v = self.state.view
        if v.report is None:
            return f"sampling {len(self.topo.gpus)} GPU(s) every {self.acfg.sample_interval_s:g} s; first verdict " \
                   f"in {min(self.acfg.diagnose_every_s, self.acfg.window_s):g} s"
        verdicts = ", ".join(f"GPU{g.index} {g.verdict}" for g in v.report.gpus) or "no GPU"
        return f"{verdicts}; {len(v.report.findings)} finding(s)"

    def stop(self) -> None:
        """Stop what the sampler started (py-spy)."""
        if self.sampler.stacks is not None:
            self.sampler.stacks.stop()
