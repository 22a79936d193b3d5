"""`python -m nodetune.cli` runs the CLI (for hosts where the console script is not on PATH)."""

from .app import main

main()
