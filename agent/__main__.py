"""`python -m nodetune.agent` runs the CLI (for hosts where the console script is not on PATH)."""

from .cli import main

main()
