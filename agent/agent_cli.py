"""`nodetune agent` on the CLI (mounted through the nodetune.commands entry point: the CLI never
imports the agent by name, and the agent imports nothing of the CLI)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def _listen(value: str | None) -> str | None:
    if value is None:
        return None
    from nodetune.agent.web_app import parse_listen

    try:
        parse_listen(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def agent(
    config: Annotated[str | None, typer.Option("--config", help="Config file (default: /etc/nodetune/config.toml "
                                               "under --root).")] = None,
    root: Annotated[str, typer.Option("--root",
                                      help="Read /proc, /sys, /dev and /etc under this root (a fake tree).")] = "/",
    listen: Annotated[str | None, typer.Option("--listen", parser=_listen, metavar="ADDR:PORT",
                                               help="Exporter address (default: [agent].listen, "
                                               "0.0.0.0:9847).")] = None,
    web_config: Annotated[str | None, typer.Option("--web.config.file", metavar="FILE",
                                                   help="node_exporter's web configuration file: TLS and bcrypt "
                                                   "basic_auth_users (default: [agent].web_config_file).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Sample one short window, diagnose it, print the exposition "
                                       "and exit (no HTTP).")] = False,
    replay: Annotated[str | None, typer.Option("--replay", metavar="SNAPSHOT",
                                               help="With --once: diagnose this snapshot's window instead of "
                                               "sampling, print the exposition (writes nothing).")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log at debug level.")] = False,
) -> None:
    """Run the node agent: sample, diagnose every N seconds, serve Prometheus metrics (systemd: Type=notify)."""
    import os

    if replay is not None and not once:
        raise typer.BadParameter("needs --once (the daemon samples the live node)", param_hint="--replay")
    if sys.argv[1:2] == ["agent"] and os.environ.get("NODETUNE_AGENT_NO_REEXEC") != "1":
        # The options are valid (typer checked them); the daemon runs without the CLI's libraries.
        os.execv(sys.executable, [sys.executable, "-m", "nodetune.agent", *sys.argv[2:]])
    from nodetune.agent.launch import run_agent

    run_agent(config, root, listen, once, verbose, web_config, replay)


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
