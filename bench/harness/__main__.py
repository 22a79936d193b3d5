"""`python -m bench.harness`: see bench/harness/cli.py."""

from bench.harness.cli import main

raise SystemExit(main())
