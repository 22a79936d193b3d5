"""`python -m nodetune.agent`: the daemon's lean entry point (argparse, no typer, rich or pydantic).

`nodetune agent` re-executes itself into this so the long-running process does not carry the
CLI's libraries (about 16 MB of RSS: typer's option parsing imports pydantic). Errors are the
CLI's: one line `nodetune: error: ...` and exit 2.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="nodetune agent", description="Run the node agent.")
    ap.add_argument("--config", default=None)
    ap.add_argument("--root", default="/")
    ap.add_argument("--listen", default=None)
    ap.add_argument("--web.config.file", dest="web_config", default=None)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("--replay", default=None, metavar="SNAPSHOT")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.replay is not None and not args.once:
        sys.exit("nodetune: error: --replay needs --once (the daemon samples the live node)")
    from nodetune.config.loader import ConfigError
    from nodetune.probes.host import ProbeError
    from nodetune.probes.snapshot import SnapshotError

    if args.listen is not None:
        from nodetune.agent.web_app import parse_listen

        try:
            parse_listen(args.listen)
        except ValueError as exc:
            sys.exit(f"nodetune: error: --listen: {exc}")
    from nodetune.agent.launch import run_agent

    try:
        run_agent(args.config, args.root, args.listen, args.once, args.verbose, args.web_config, args.replay)
    except (ConfigError, ProbeError, SnapshotError) as exc:
        print(f"nodetune: error: {getattr(exc, 'reason', None) or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
