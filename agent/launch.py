"""Run the agent: what `nodetune agent` and `python -m nodetune.agent` both call."""

from __future__ import annotations

import logging
import sys


def run_agent(config: str | None, root: str, listen: str | None, once: bool, verbose: bool,
              web_config: str | None = None) -> None:
    """Sample, diagnose every N seconds, serve Prometheus metrics until SIGTERM (or one window with `once`)."""
    from nodetune.agent.ratelog import install

    install(logging.DEBUG if verbose else logging.INFO, "nodetune agent: %(levelname)s: %(message)s")
    from nodetune.agent.application import Agent

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
