"""The agent's loop: sample the node on a fixed cadence into the ring, diagnose the last window
every N seconds, publish one immutable View that the exporter and sd_notify read.

Threads: the sampling loop (the caller's, usually the main thread: signals land there), one
diagnosis worker (so a diagnosis never delays a sample), the HTTP server, and the kmsg and udev
readers. Only the sampling thread touches the Sampler and the ring; everyone else reads the View.
Every wait is an Event wait, so SIGTERM ends the agent within a fraction of a second.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from types import FrameType, MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from nodetune.agent.autotune import Autotuner
from nodetune.agent.collectors import StateCollector
from nodetune.agent.exposition import CachingRegistry
from nodetune.agent.history import History, HistoryError
from nodetune.agent.hotplug import Hotplug
from nodetune.agent.http import Listen, MetricsApp, Served, parse_listen, serve
from nodetune.agent.http_server import Limits
from nodetune.agent.kmsg import KmsgReader, XidLabels
from nodetune.agent.lost_hours import GpuBook
from nodetune.agent.notify import Notifier
from nodetune.agent.state import JobBook, State, TuningSummary, lateness_bucket
from nodetune.agent.wakeup import StopEvent
from nodetune.agent.web_config import WebConfig, web_config
from nodetune.config.agent import AgentConfig
from nodetune.config.diagnosis import Thresholds
from nodetune.config.loader import Config, ConfigError, load_config
from nodetune.diagnosis.engine import diagnose
from nodetune.diagnosis.findings import Report
from nodetune.probes.gpu import GpuSample
from nodetune.probes.host import ProbeError, check_regular
from nodetune.probes.node import Topology, probe_topology
from nodetune.probes.processes import ProcessInfo
from nodetune.probes.pystacks import StackRecorder
from nodetune.probes.sampler import MAX_STACK_PROCESSES, MIN_INTERVAL_S, Sampler
from nodetune.probes.snapshot import Sample, Window
from nodetune.probes.source import Source, open_source

log = logging.getLogger("nodetune.agent")
GIL_SWITCH_S = 0.0005


@dataclass
class Job:
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
    return math.ceil(cfg.window_s / cfg.sample_interval_s) + 2


def _missing(s: Sample) -> dict[str, int]:
    out = {"cpu": len(s.cpu.missing), "memory": len(s.memory.missing), "io": len(s.io.missing),
           "thermal": len(s.thermal.missing)}
    out["gpu"] = sum(len(g.missing) for g in s.gpus)
    out["processes"] = sum(len(p.missing) for p in s.processes)
    return out


class Agent:
    """Construct, `start()` (binds the port, starts helper threads), `run()` (the loop), `stop()`."""

    def __init__(self, root: str = "/", config_path: str | None = None, listen: str | None = None,
                 nvml: object | None = None, source: Source | None = None, hotplug_loader: Any = None,
                 kmsg_path: str | None = None, web_config_file: str | None = None) -> None:
        self.root = root
        self.web_config_override = web_config_file
        self.config_path = config_path
        self.listen_override = listen
        self.src = source or open_source(root, nvml=nvml)
        # ConfigError (the CLI's one line, exit 2) for anything the config or its files cannot give
        self.cfg, self.web = self._take_config()
        self.acfg = self.cfg.get(AgentConfig)
        self.th = self.cfg.get(Thresholds)
        self.listen: Listen = self._listen(self.acfg)
        self.state = State(ring_size(self.acfg))
        self.stop_event = StopEvent()
        self._reload = threading.Event()
        self._reprobe = threading.Event()
        self._hotplug_loader = hotplug_loader
        self._kmsg_path = kmsg_path or self.src.host.path("/dev/kmsg")
        self.notifier = Notifier()
        self.jobs = JobBook(self.acfg.job_retention_s, self.acfg.max_jobs)
        self.gpu_book = GpuBook()
        self._diag_q: queue.Queue[Job | None] = queue.Queue(maxsize=1)
        self._threads: list[threading.Thread] = []
        self._wake = threading.Event()  # cuts the loop's wait short (SIGHUP, a stop) without stopping it
        self.stop_event.on_set(self._wake.set)
        self.stop_event.on_set(self._wake_diagnosis)
        self.served: Served | None = None
        self._logged: set[tuple[str, str]] = set()  # (probe, field) already logged: one line per fault
        self._last_diag_mono: float | None = None
        self._prev_procs: dict[int, ProcessInfo] = {}
        self._journal_mtime: float | None = -1.0
        self._bus_to_gpu: dict[str, str] = {}
        self._xid_labels = XidLabels()
        self.topo = self._probe_topology()
        self.sampler = self._new_sampler()
        self.history: History | None = None
        self.autotuner: Autotuner | None = None
        self._history_logged: str | None = None
        self._last_prune = 0.0
        self._setup_history_and_autotune()

    # -- setup ------------------------------------------------------------------------------------
    def _listen(self, cfg: AgentConfig) -> Listen:
        text = self.listen_override or cfg.listen
        try:
            return parse_listen(text)
        except ValueError as exc:
            where = "--listen" if self.listen_override else f"{self.cfg.source or 'defaults'}: [agent].listen"
            raise ConfigError(f"{where}: {exc}") from None

    def _web_config(self, cfg: AgentConfig) -> WebConfig:
        """TLS, users and headers: --web.config.file, else [agent] (ConfigError: one line)."""
        return web_config(self.web_config_override or cfg.web_config_file, cfg.tls_cert_file, cfg.tls_key_file,
                          cfg.basic_auth_file)

    def _setup_history_and_autotune(self) -> None:
        """Open the job history and build the autotuner from the [agent] section (again on reload)."""
        a = self.acfg
        path = self.src.host.path(a.history_path)
        if a.history and (self.history is None or self.history.path != path):
            if self.history is not None:
                self.history.close()
            try:
                self.history = History(path, a.history_retention_days, int(a.history_max_mib * 2**20)).open()
            except (HistoryError, OSError) as exc:  # history is a convenience: sampling goes on
                self.history = None
                log.error("job history off: %s (nodetune_agent_history_up=0)", exc)
                self.state.update(history_up=False, history_reason=str(exc))
        elif not a.history and self.history is not None:
            self.history.close()
            self.history = None
        if self.history is not None:
            self.history.retention_s = a.history_retention_days * 86400
            self.history.max_bytes = int(a.history_max_mib * 2**20)
            self.state.update(history_up=True, history_reason=None)
        elif not a.history:
            self.state.update(history_up=False, history_reason="[agent].history = false")
        if self.autotuner is not None:
            self.autotuner.close()  # its followers: a reload starts over from the new allowlist
        if a.autotune:
            self.autotuner = Autotuner(self.src.host, list(a.autotune), a.autotune_hold_windows, a.autotune_max_per_hour)
            log.warning("autotune on for %s: the agent applies its own findings through the tuning journal",
                        ", ".join(a.autotune))
        else:
            self.autotuner = None

    def _remember(self, report: Report, t_start: float, t_end: float) -> None:
        """History and autotune after a diagnosis; their faults are metrics and one log line."""
        h = self.history
        if h is not None:
            ok = h.record(report, t_start, t_end)
            if t_end - self._last_prune > 3600:
                self._last_prune = t_end
                h.prune()
            if not ok and h.paused != self._history_logged:
                log.error("%s (nodetune_agent_history_writes_failed_total)", h.paused)
            self._history_logged = h.paused
            self.state.update(history_writes_total=h.writes, history_write_errors_total=h.write_errors,
                              history_paused=h.paused is not None, history_bytes=h.size_bytes())
        at = self.autotuner
        if at is None:
            return
        changes = at.observe(report)
        for c in changes:
            for job in c.jobs:
                if h is not None:
                    h.event(job, "autotune", f"{c.tuner}: {c.knob} {c.original} -> {c.target} (txn {c.txn})"
                            if c.ok else f"{c.tuner} failed, rolled back: {c.reason}")
        if changes:
            self._journal_mtime = -1.0  # re-read the journal at the next chance
        self.state.update(autotune_changes=MappingProxyType(dict(at.changes_total)),
                          autotune_failures_total=at.failures_total, autotune_rate_limited_total=at.rate_limited_total,
                          prefetch=at.followers.totals() if at.followers is not None else None)

    def _probe_topology(self) -> Topology:
        topo = probe_topology(self.src.host, self.src.backend, self.src.status)
        self._bus_to_gpu = {g.address.rsplit(".", 1)[0].lower(): str(g.index) for g in topo.gpus if g.address}
        self.state.update(topo=topo)
        return topo

    def _new_sampler(self) -> Sampler:
        every = max(1, round(self.acfg.worker_scan_every_s / self.acfg.sample_interval_s))
        sampler = Sampler(self.src.host, self.src.backend, self.topo, worker_scan_every=every)
        cfg = self.acfg
        if cfg.stacks and self.src.host.live:
            # keep what the next diagnosis window can use: its length and one slice before it
            sampler.stacks = StackRecorder(slice_s=cfg.stacks_slice_s, rate_hz=cfg.stacks_rate_hz,
                                           max_processes=MAX_STACK_PROCESSES, keep_s=cfg.window_s + cfg.stacks_slice_s)
            sampler.stacks_busy_s = cfg.stacks_slice_s  # a GPU busy throughout has no idle time to explain
        return sampler

    def registry(self) -> CollectorRegistry:
        reg = CachingRegistry(auto_describe=False)  # each scrape re-renders only the families that changed
        reg.register(StateCollector(self.state))
        reg.register(ProcessCollector(registry=None))  # the standard process_* series every exporter has
        return reg

    def app(self) -> Any:
        return MetricsApp(self.registry(), self.state, lambda: max(10.0, 3 * self.acfg.sample_interval_s))

    def start(self, http: bool = True) -> None:
        """Bind the exporter (a ConfigError if it cannot) and start the helper threads."""
        self.state.update(interval_s=self.acfg.sample_interval_s)
        if http:
            # The diagnosis thread is pure Python for tens of ms; at the default 5 ms GIL switch
            # interval a scrape, which gives the GIL up at every socket call, waits a full slice each
            # time (p99 233 ms for 100 scrapers at 1/s on 2 cores; 105 ms at 0.5 ms).
            sys.setswitchinterval(GIL_SWITCH_S)
            a = self.acfg
            limits = Limits(a.max_connections, a.idle_timeout_s, a.header_timeout_s, a.write_timeout_s)
            self.served = serve(self.app(), self.listen, self.web, limits)
            self.listen = Listen(self.listen.host, self.served.port)
            log.info("serving http%s://%s/metrics%s", "s" if self.web.tls else "", self.listen,
                     " (basic auth)" if self.web.users else "")
        worker = threading.Thread(target=self._diagnosis_worker, name="nodetune-diagnosis", daemon=True)
        worker.start()
        self._threads.append(worker)
        if self.acfg.kmsg:
            k = KmsgReader(self._kmsg_path, self._on_xid, self._on_kmsg_status, self.stop_event)
            k.start()
            self._threads.append(k)
        else:
            self.state.update(kmsg_reason="off ([agent].kmsg = false)")
        if not self.acfg.hotplug:
            self._on_hotplug_status(False, "off ([agent].hotplug = false)")
        elif not self.src.host.live and self._hotplug_loader is None:
            self._on_hotplug_status(False, f"--root {self.root}: udev reports the live node's devices only")
        else:
            kw = {"load": self._hotplug_loader} if self._hotplug_loader is not None else {}
            h = Hotplug(self._on_hotplug, self._on_hotplug_status, self.stop_event, **kw)
            h.start()
            self._threads.append(h)

    def install_signals(self) -> None:
        """SIGHUP: reload at the next tick; SIGTERM/SIGINT: stop. Main thread only (Python's rule)."""
        def on_stop(signum: int, frame: FrameType | None) -> None:
            self.stop_event.set()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self._reload.set()
            self.stop_event_wake()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def stop_event_wake(self) -> None:
        """Wake the loop's wait without stopping it (a reload is handled at once, not next tick)."""
        self._wake.set()

    # -- callbacks from helper threads ---------------------------------------------------------------
    def _on_xid(self, bus: str, code: str) -> None:
        gpu, label = self._xid_labels.of(self._bus_to_gpu.get(bus), code)
        self.state.count("xid", (gpu, label))
        # per kind of line, the log handler shows the first few an interval and counts the rest
        log.warning("GPU %s: Xid %s in the kernel log (counted in nodetune_gpu_xid_errors_total)",
                    self._bus_to_gpu.get(bus, bus), code)

    def _on_kmsg_status(self, up: bool, reason: str | None) -> None:
        self.state.update(kmsg_up=up, kmsg_reason=reason)
        if not up:
            log.warning("Xid events not counted: %s (nodetune_agent_kmsg_up=0)", reason)

    def _on_hotplug(self, subsystem: str, action: str) -> None:
        self.state.count("hotplug_events", (subsystem, action))
        self._reprobe.set()

    def _on_hotplug_status(self, up: bool, reason: str | None) -> None:
        self.state.update(hotplug_up=up, hotplug_reason=reason)
        if not up:
            log.info("hot-plug not watched: %s (nodetune_agent_hotplug_up=0)", reason)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, max_samples: int | None = None) -> None:
        """Sample until stopped (or `max_samples`, for --once and tests)."""
        self.sampler.prime()
        self.stop_event.wait(MIN_INTERVAL_S)  # GPM needs two samples >= 100 ms apart
        cfg = self.acfg
        start = time.monotonic()
        slot = start
        next_detail = start
        next_diag = start + min(cfg.diagnose_every_s, cfg.window_s)
        next_journal = start
        n = 0
        ready = False
        while not self.stop_event.is_set():
            if self._reprobe.is_set():
                self._reprobe.clear()
                self._do_reprobe()
            now = time.monotonic()
            late = max(0.0, now - slot)
            detail = now >= next_detail
            if detail:
                next_detail = now + cfg.detail_every_s
            self._sample_once(detail, late)
            n += 1
            if not ready:
                ready = True
                self.notifier.ready(self._status_line())
            self.notifier.watchdog()
            now = time.monotonic()
            if now >= next_diag:
                self._hand_over()
                next_diag = now + cfg.diagnose_every_s
            if now >= next_journal:
                self._read_journal()
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
                if self._reload.is_set():  # handled between samples: the cadence keeps its grid
                    self._reload.clear()
                    self._do_reload()
                    cfg = self.acfg
                left = slot - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                if not self.stop_event.is_set():  # a stop that came before the clear would be lost
                    self._wake.wait(left)  # until the slot; a stop or SIGHUP sets _wake

    def _sample_once(self, detail: bool, late: float) -> None:
        t0, c0 = time.monotonic(), time.thread_time()  # the sampling thread alone, not diagnosis or HTTP
        v = self.state.view
        try:
            s = self.sampler.sample(detail=detail)
        except Exception as exc:  # a probe bug or a node state no probe expected: counted, logged once
            probe = probe_of(exc)
            key = (probe, type(exc).__name__)
            if key not in self._logged:
                self._logged.add(key)
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
        self._log_faults(s, states, v.gpu_states)
        self.state.update(
            sample=s, sample_wall=time.time(), sample_duration_s=time.monotonic() - t0,
            sample_cpu_s=time.thread_time() - c0, samples_total=v.samples_total + 1,
            lateness_counts=tuple(counts), lateness_sum_s=v.lateness_sum_s + late,
            missing_fields=MappingProxyType(_missing(s)), gpu_detail=detail_map,
            gpu_states=MappingProxyType(states), ring_len=len(self.state.ring), followed=len(self.sampler.infos),
            workers_capped=self.sampler.capped())

    def _log_faults(self, s: Sample, states: dict[int, str], before: Any) -> None:
        """One log line per new fault (a GPU lost, a field that went missing), never one per sample."""
        for g in s.gpus:
            if g.state != "ok" and before.get(g.index) != g.state:
                log.error("GPU %d: %s: %s (nodetune_gpu_state)", g.index, g.state, g.missing.get("*", ""))
                if g.state == "lost":
                    self._reprobe.set()  # the topology shows it gone (and gpu_lost at the next diagnosis)
        for probe, miss in (("cpu", s.cpu.missing), ("memory", s.memory.missing), ("io", s.io.missing),
                            ("thermal", s.thermal.missing)):
            for k, reason in miss.items():
                if (probe, k) not in self._logged and len(self._logged) < 1024:
                    self._logged.add((probe, k))
                    if self.state.view.samples_total > 0:  # what a node lacks from the start is no fault
                        log.warning("probe %s: %s unreadable: %s (nodetune_agent_probe_missing_fields)",
                                    probe, k, reason)

    def _hand_over(self) -> None:
        try:
            self._diag_q.put_nowait(self.window_job())
        except queue.Full:
            self.state.update(diagnoses_skipped_total=self.state.view.diagnoses_skipped_total + 1)

    def window_job(self) -> Job:
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
        return Job(self.topo, win, self.th)

    def diagnose_now(self, job: Job) -> Report | None:
        if len(job.window.samples) < 2:
            return None
        t0 = time.monotonic()
        try:
            report = diagnose(job.topo, job.window, job.th, "agent")
        except Exception as exc:
            v = self.state.view
            if v.diagnosis_errors_total == 0:
                log.error("diagnosis failed: %s: %s (nodetune_agent_diagnosis_errors_total)", type(exc).__name__, exc)
            self.state.update(diagnosis_errors_total=v.diagnosis_errors_total + 1)
            return None
        now = time.monotonic()
        dt = job.window.seconds if self._last_diag_mono is None else min(now - self._last_diag_mono, job.window.seconds)
        self._last_diag_mono = now
        self.jobs.retention_s, self.jobs.max_jobs = self.acfg.job_retention_s, self.acfg.max_jobs
        self.jobs.add(report, max(dt, 0.0), now)
        self.gpu_book.add(report, max(dt, 0.0))
        verdict_s, lost_s = self.gpu_book.frozen()
        v = self.state.update(report=report, report_wall=time.time(), diagnosis_duration_s=now - t0,
                              diagnoses_total=self.state.view.diagnoses_total + 1, jobs=self.jobs.rows(),
                              gpu_verdict_seconds=verdict_s, gpu_lost_seconds=lost_s)
        del v
        self.notifier.status(self._status_line())
        wall = time.time()
        try:
            self._remember(report, wall - max(dt, 0.0), wall)
        except Exception as exc:  # never let history or autotune stop the diagnoses
            log.error("history/autotune failed: %s: %s", type(exc).__name__, exc)
        return report

    def _wake_diagnosis(self) -> None:
        try:
            self._diag_q.put_nowait(None)  # the worker sleeps on the queue: None says look at stop_event
        except queue.Full:
            pass  # a job is queued: the worker wakes for it and then sees the stop

    def _diagnosis_worker(self) -> None:
        while not self.stop_event.is_set():
            job = self._diag_q.get()  # no timeout: a stop puts None
            if job is not None and not self.stop_event.is_set():
                self.diagnose_now(job)

    def _status_line(self) -> str:
        v = self.state.view
        if v.report is None:
            gpus = len(self.topo.gpus)
            return f"sampling {gpus} GPU(s) every {self.acfg.sample_interval_s:g} s; first verdict in " \
                   f"{min(self.acfg.diagnose_every_s, self.acfg.window_s):g} s"
        verdicts = ", ".join(f"GPU{g.index} {g.verdict}" for g in v.report.gpus) or "no GPU"
        return f"{verdicts}; {len(v.report.findings)} finding(s)"

    # -- reload, re-probe, journal --------------------------------------------------------------------
    def _take_config(self) -> tuple[Config, WebConfig]:
        """The config file and every file it names, checked before anything uses them.

        Any failure is one ConfigError line: start-up exits 2 with it, a reload is refused with it.
        Files a library opens itself (users file, certificate, key) must be regular files first:
        a FIFO would block the open forever.
        """
        try:
            cfg = load_config(self.src.host, self.config_path)
            acfg = cfg.get(AgentConfig)
            for key in ("basic_auth_file", "tls_cert_file", "tls_key_file", "web_config_file"):
                name = getattr(acfg, key)
                if name:
                    try:
                        check_regular(name)
                    except OSError as exc:
                        raise ConfigError(f"[agent].{key} {name}: {exc.strerror or exc}") from None
            if acfg.history:
                self.src.host.path(acfg.history_path)  # a `..` or a symlink out of the root: refused here
            web = self._web_config(acfg)  # TLS, users, headers (ConfigError: one line)
        except ConfigError:
            raise
        except ProbeError as exc:
            raise ConfigError(f"[agent].history_path: {exc.reason}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"[agent].basic_auth_file: not UTF-8 text (byte {exc.start})") from None
        except Exception as exc:  # whatever else a file can do to a loader: one line, never a traceback
            raise ConfigError(f"config {self.config_path or 'of the node'}: {type(exc).__name__}: {exc}") from None
        return cfg, web

    def _do_reload(self) -> None:
        """SIGHUP: take the new config whole, or refuse it (one line, a metric) and keep the old one."""
        try:
            cfg, web = self._take_config()
            if self.served is not None and (web.tls is None) == (self.web.tls is None):
                self.served.update(web)  # new certificates, users, headers (ConfigError: none taken)
        except ConfigError as exc:
            self._refuse_reload(str(exc))
            return
        saved = (self.cfg, self.acfg, self.th)
        try:
            self._apply_config(cfg, web)
        except Exception as exc:  # a reload never stops the agent: back to the running config
            self.cfg, self.acfg, self.th = saved
            self.state.resize_ring(ring_size(self.acfg))
            self._refuse_reload(f"{type(exc).__name__}: {exc}")

    def _refuse_reload(self, why: str) -> None:
        log.error("config reload refused, keeping the previous config: %s "
                  "(nodetune_agent_config_reloads_total{result=\"refused\"})", why.replace("\n", " "))
        self.state.count("config_reloads", "refused", config_ok=False)

    def _apply_config(self, cfg: Config, web: WebConfig) -> None:
        acfg = cfg.get(AgentConfig)
        old = self.acfg
        for key in ("listen", "kmsg", "hotplug", "max_connections", "idle_timeout_s", "header_timeout_s",
                    "write_timeout_s"):
            if getattr(old, key) != getattr(acfg, key):
                log.warning("[agent].%s changed: takes effect when the agent restarts", key)
        if (web.tls is None) != (self.web.tls is None) or bool(web.users) != bool(self.web.users):
            log.warning("TLS or basic auth turned on or off: takes effect when the agent restarts")
        else:
            self.web = web
        self.cfg, self.acfg, self.th = cfg, acfg, cfg.get(Thresholds)
        self.state.resize_ring(ring_size(acfg))
        self.sampler.worker_scan_every = max(1, round(acfg.worker_scan_every_s / acfg.sample_interval_s))
        self._setup_history_and_autotune()
        self.state.count("config_reloads", "ok", config_ok=True, interval_s=acfg.sample_interval_s)
        log.info("config reloaded from %s", cfg.source or "defaults")

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

    def _read_journal(self) -> None:
        """Tuning state, read-only, only when the journal file changed."""
        from nodetune.tuners.journal import DEFAULT_JOURNAL, Journal

        path = self.src.host.path(DEFAULT_JOURNAL)
        try:
            mtime: float | None = os.stat(path).st_mtime
        except FileNotFoundError:
            mtime = None
        except OSError as exc:
            self.state.update(tuning=TuningSummary(DEFAULT_JOURNAL, True, error=str(exc)))
            return
        if mtime == self._journal_mtime:
            return
        self._journal_mtime = mtime
        try:
            js = Journal(path).load()
        except Exception as exc:  # JournalError and a damaged file alike: a value, not a crash
            self.state.update(tuning=TuningSummary(DEFAULT_JOURNAL, True, error=str(exc)))
            log.warning("tuning journal unreadable: %s (nodetune_tuning_journal_readable=0)", exc)
            return
        by_state: dict[str, int] = {}
        active: dict[str, int] = {}
        for e in js.entries():
            # an entry whose restore failed is still applied in the fold; the gauge says what to do
            st = "restore_failed" if e.attempted and e.active else e.state
            by_state[st] = by_state.get(st, 0) + 1
            if e.active:
                active[e.knob.group] = active.get(e.knob.group, 0) + 1
        self.state.update(tuning=TuningSummary(DEFAULT_JOURNAL, js.exists, MappingProxyType(by_state),
                                               MappingProxyType(active)))

    # -- stop ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()
        self.notifier.send("STOPPING=1")
        if self.served is not None:
            self.served.stop()
            self.served = None
        for t in self._threads:
            t.join(timeout=1.0)
        if self.sampler.stacks is not None:
            self.sampler.stacks.stop()
        if self.history is not None:
            self.history.close()
            self.history = None
        self.notifier.close()
        self.src.close()
        if not any(t.is_alive() for t in self._threads):
            self.stop_event.close()  # else a helper still selects on it: the pipe goes with the process
