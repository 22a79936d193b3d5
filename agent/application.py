"""The agent put together: config (and its reload), the exporter, the helper threads, signals.

The parts it wires: the loop and the diagnosis worker (agent/controller.py), what a report feeds
(agent/sinks.py: history, autotune), the tuning journal's reader (agent/journal_reader.py), the
exporter (agent/web_app.py), the kmsg and udev readers.

Threads: the sampling loop (the caller's, usually the main thread: signals land there), one
diagnosis worker (so a diagnosis never delays a sample), the HTTP server, and the kmsg and udev
readers. Only the sampling thread touches the Sampler and the ring; everyone else reads the View.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import replace
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from nodetune.agent.collectors import StateCollector
from nodetune.agent.controller import Controller, ring_size
from nodetune.agent.exposition import CachingRegistry
from nodetune.agent.hotplug import Hotplug
from nodetune.agent.journal_reader import JournalReader
from nodetune.agent.kmsg import KmsgReader, XidLabels
from nodetune.agent.notify import Notifier
from nodetune.agent.sinks import Sinks
from nodetune.agent.state import State
from nodetune.agent.wakeup import StopEvent
from nodetune.agent.web_app import Listen, MetricsApp, Served, parse_listen, serve
from nodetune.agent.web_config import WebConfig, web_config
from nodetune.agent.web_server import Limits
from nodetune.config.agent import AgentConfig
from nodetune.config.diagnosis import Thresholds
from nodetune.config.loader import Config, ConfigError, load_config
from nodetune.probes.host import ProbeError, check_regular
from nodetune.probes.sampler import Sampler
from nodetune.probes.source import Source, open_source

log = logging.getLogger("nodetune.agent")
GIL_SWITCH_S = 0.0005
RESTART_KEYS = ("listen", "kmsg", "hotplug", "max_connections", "idle_timeout_s", "header_timeout_s",
                "write_timeout_s")


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
        self._hotplug_loader = hotplug_loader
        self._kmsg_path = kmsg_path or self.src.host.path("/dev/kmsg")
        self._threads: list[threading.Thread] = []
        self._xid_labels = XidLabels()
        self.served: Served | None = None
        self.notifier = Notifier()
        self.journal = JournalReader(self.src.host)
        self.sinks = Sinks(self.src.host, self.state, self.journal.invalidate)
        snap = self.src.snapshot  # a replay: the recorded topology, and nothing written to this node
        self.controller = Controller(self.src, self.acfg, self.th, self.state, self.notifier, self.sinks,
                                     self.journal, self.stop_event, snap.topology if snap is not None else None)
        self._setup_history_and_autotune()

    @property
    def sampler(self) -> Sampler:
        """The controller's sampler (a re-probe that changed the GPUs replaces it)."""
        return self.controller.sampler

    # -- config -----------------------------------------------------------------------------------
    def _listen(self, cfg: AgentConfig) -> Listen:
        text = self.listen_override or cfg.listen
        try:
            return parse_listen(text)
        except ValueError as exc:
            where = "--listen" if self.listen_override else f"{self.cfg.source or 'defaults'}: [agent].listen"
            raise ConfigError(f"{where}: {exc}") from None

    def _setup_history_and_autotune(self) -> None:
        """Open the job history and build the autotuner from the [agent] section (again on reload);
        a replayed snapshot is no job of this node's and no tuning advice for it: neither runs."""
        a = self.acfg
        self.sinks.configure(a if self.src.snapshot is None else replace(a, history=False, autotune=()))

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
            # TLS, users, headers: --web.config.file, else [agent] (ConfigError: one line)
            web = web_config(self.web_config_override or acfg.web_config_file, acfg.tls_cert_file,
                             acfg.tls_key_file, acfg.basic_auth_file)
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
            self.controller.configure(self.acfg, self.th)
            self._refuse_reload(f"{type(exc).__name__}: {exc}")

    def _refuse_reload(self, why: str) -> None:
        log.error("config reload refused, keeping the previous config: %s "
                  "(nodetune_agent_config_reloads_total{result=\"refused\"})", why.replace("\n", " "))
        self.state.count("config_reloads", "refused", config_ok=False)

    def _apply_config(self, cfg: Config, web: WebConfig) -> None:
        acfg = cfg.get(AgentConfig)
        for key in RESTART_KEYS:
            if getattr(self.acfg, key) != getattr(acfg, key):
                log.warning("[agent].%s changed: takes effect when the agent restarts", key)
        if (web.tls is None) != (self.web.tls is None) or bool(web.users) != bool(self.web.users):
            log.warning("TLS or basic auth turned on or off: takes effect when the agent restarts")
        else:
            self.web = web
        self.cfg, self.acfg, self.th = cfg, acfg, cfg.get(Thresholds)
        self.state.resize_ring(ring_size(acfg))
        self.controller.configure(acfg, self.th)
        self._setup_history_and_autotune()
        self.state.count("config_reloads", "ok", config_ok=True, interval_s=acfg.sample_interval_s)
        log.info("config reloaded from %s", cfg.source or "defaults")

    # -- exporter and threads -----------------------------------------------------------------------
    def registry(self) -> CollectorRegistry:
        """The collectors a scrape renders: the State's families and the standard process_* ones."""
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
            self.served = serve(self.app(), self.listen, self.web, limits, on_refused=self._on_refused)
            self.listen = Listen(self.listen.host, self.served.port)
            log.info("serving http%s://%s/metrics%s", "s" if self.web.tls else "", self.listen,
                     " (basic auth)" if self.web.users else "")
        worker = threading.Thread(target=self.controller.diagnosis_worker, name="nodetune-diagnosis", daemon=True)
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

    def run(self, max_samples: int | None = None) -> None:
        """Sample until stopped (or `max_samples`, for --once and tests); SIGHUP reloads between samples."""
        self.controller.run(max_samples, self._reload, self._do_reload)

    def install_signals(self) -> None:
        """SIGHUP: reload at the next tick; SIGTERM/SIGINT: stop. Main thread only (Python's rule)."""
        def on_stop(signum: int, frame: FrameType | None) -> None:
            self.stop_event.set()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self._reload.set()
            self.controller.wake.set()  # a reload is handled at once, not at the next tick

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    # -- callbacks from helper threads ---------------------------------------------------------------
    def _on_refused(self, reason: str) -> None:
        self.state.count("http_refused", reason)

    def _on_xid(self, bus: str, code: str) -> None:
        gpu, label = self._xid_labels.of(self.controller.bus_to_gpu.get(bus), code)
        self.state.count("xid", (gpu, label))
        # per kind of line, the log handler shows the first few an interval and counts the rest
        log.warning("GPU %s: Xid %s in the kernel log (counted in nodetune_gpu_xid_errors_total)",
                    self.controller.bus_to_gpu.get(bus, bus), code)

    def _on_kmsg_status(self, up: bool, reason: str | None) -> None:
        self.state.update(kmsg_up=up, kmsg_reason=reason)
        if not up:
            log.warning("Xid events not counted: %s (nodetune_agent_kmsg_up=0)", reason)

    def _on_hotplug(self, subsystem: str, action: str) -> None:
        self.state.count("hotplug_events", (subsystem, action))
        self.controller.reprobe.set()

    def _on_hotplug_status(self, up: bool, reason: str | None) -> None:
        self.state.update(hotplug_up=up, hotplug_reason=reason)
        if not up:
            log.info("hot-plug not watched: %s (nodetune_agent_hotplug_up=0)", reason)

    # -- stop ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the loop and every thread; close the history, the exporter and the backend."""
        self.stop_event.set()
        self.controller.wake.set()
        self.notifier.send("STOPPING=1")
        if self.served is not None:
            self.served.stop()
            self.served = None
        for t in self._threads:
            t.join(timeout=1.0)
        self.controller.stop()
        self.sinks.close()
        self.notifier.close()
        self.src.close()
        if not any(t.is_alive() for t in self._threads):
            self.stop_event.close()  # else a helper still selects on it: the pipe goes with the process
