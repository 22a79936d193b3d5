"""Run the agent: what `nodetune agent` and `python -m nodetune.agent` both call."""

from __future__ import annotations

import logging
import sys


def run_agent(config: str | None, root: str, listen: str | None, once: bool, verbose: bool,
              web_config: str | None = None, replay: str | None = None) -> None:
    """Sample, diagnose every N seconds, serve Prometheus metrics until SIGTERM (or one window with
    `once`; with `replay`, the snapshot's window instead of the node's)."""
    from nodetune.agent.ratelog import install

    install(logging.DEBUG if verbose else logging.INFO, "nodetune agent: %(levelname)s: %(message)s")
    from nodetune.agent.application import Agent

    if replay is not None:
        sys.stdout.write(replay_once(config, root, replay))
        return

    a = Agent(root=root, config_path=config, listen=listen, web_config_file=web_config)
    if once:
        from prometheus_client.exposition import generate_latest

        try:
            a.start(http=False)
            a.run(max_samples=3)
            a.controller.diagnose_now(a.controller.window_work())
            sys.stdout.write(generate_latest(a.registry()).decode())
        finally:
            a.stop()
        return
    a.install_signals()
    try:
        a.start()
        a.run()
    finally:
        a.stop()


def replay_once(config: str | None, root: str, path: str) -> str:
    """The exposition the agent would serve after diagnosing the snapshot at `path` once.

    No HTTP, no sampling, nothing written to the node (history and autotune stay off); the config
    is checked as at start-up. SnapshotError (one line) for a file that is not a snapshot with a window.
    """
    from prometheus_client.exposition import generate_latest

    from nodetune.agent.application import Agent
    from nodetune.probes.snapshot import SnapshotError
    from nodetune.probes.source import open_source

    src = open_source(root, replay=path)
    snap = src.snapshot
    if snap is None or snap.window is None or len(snap.window.samples) < 2:
        src.close()
        raise SnapshotError(f"{path}: snapshot has no sample window (record one with `nodetune snapshot --seconds N`)")
    a = Agent(root=root, config_path=config, source=src)
    try:
        a.controller.replay(snap.window)
        return generate_latest(a.registry()).decode()
    finally:
        a.stop()
