"""The top-level `nodetune --help` as typer prints it at 80 columns or more (click lays help out
at most 78 wide), laid out here from the commands' declarations so `cli/app.py` can print it
without importing typer. tests/cli/test_cli_fast_paths.py compares it with typer's, character for
character.
"""

from __future__ import annotations

APP_HELP = ("Profile and tune a Linux GPU node: see its topology, explain what holds each GPU job back, "
            "and apply reversible tuning.")

# The help of the commands other packages mount through the nodetune.commands entry points (their
# docstrings: importing the agent's modules to read them would import typer). Where the installed
# entry points name other commands, `nodetune --help` is typer's.
PLUGIN_HELP = {
    "agent": "Run the node agent: sample, diagnose every N seconds, serve Prometheus metrics (systemd: Type=notify).",
    "history": "Recent jobs with their dominant verdict and lost GPU-hours; with JOB, its verdict timeline.",
}
PLUGIN_COMMANDS = frozenset(PLUGIN_HELP)

WIDTH = 78
_OPTIONS = (("--version", "Print the version and exit."), ("-h, --help", "Show this message and exit."))


def short_help(text: str, limit: int) -> str:
    """A command's help cut to `limit` characters as click cuts it for a listing (its first
    sentence, or its first words and "...")."""
    words = text.split("\n\n", 1)[0].split()
    total = 0
    for i, word in enumerate(words):
        total += len(word) + (i > 0)
        if total > limit:
            break
        if word.endswith("."):
            return " ".join(words[:i + 1])
        if total == limit and i != len(words) - 1:
            break
    else:
        return " ".join(words)
    total += 3
    while i > 0:
        total -= len(words[i]) + (i > 0)
        if total <= limit:
            break
        i -= 1
    return " ".join(words[:i]) + "..."


def _wrap(text: str, indent: str) -> list[str] | None:
    """`text` filled to WIDTH as textwrap fills it; None where a hyphen or a long word could
    make textwrap break elsewhere."""
    lines: list[str] = []
    line = indent
    for word in text.split(" "):
        if not word or "-" in word or len(indent) + len(word) > WIDTH:
            return None
        if line != indent and len(line) + 1 + len(word) > WIDTH:
            lines.append(line)
            line = indent
        line += (" " if line != indent else "") + word
    return [*lines, line]


def _definitions(rows: list[tuple[str, str]]) -> list[str] | None:
    """click's definition list (`write_dl`) where every row fits on one line; None otherwise."""
    first = max(len(name) for name, _ in rows)
    if first > 30 or any(len(text) > max(WIDTH - first - 4, 10) or "  " in text for _, text in rows):
        return None
    return [f"  {name:<{first + 2}}{text}".rstrip() for name, text in rows]


def top_help(summaries: dict[str, str], plugin_help: dict[str, str]) -> str | None:
    """The top-level help listing built-in commands by their summaries and plugin commands by
    their cut help, every command by name (as the typer app lists them); None where the layout
    is not one this can be sure of."""
    if not summaries.keys().isdisjoint(plugin_help):
        return None
    limit = WIDTH - 6 - max(len(n) for n in [*summaries, *plugin_help])
    rows = {**summaries, **{name: short_help(text, limit) for name, text in plugin_help.items()}}
    intro = _wrap(APP_HELP, "  ")
    options = _definitions(list(_OPTIONS))
    commands = _definitions(sorted(rows.items()))
    if intro is None or options is None or commands is None:
        return None
    lines = ["Usage: nodetune [OPTIONS] COMMAND [ARGS]...", "", *intro, "", "Options:", *options, "",
             "Commands:", *commands]
    return "\n".join(lines) + "\n"
