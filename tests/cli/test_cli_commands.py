"""A command is one file: a module written into a folder of `nodetune.cli.commands` is listed by
`nodetune --help` (with and without typer, the same text) and runs, its errors on the one path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

COMMAND = '''
"""`nodetune frob`: a command written for the test, in one file."""
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    import typer

COMMANDS = {"frob": "Frobnicate the node's knobs."}


def register(app: "typer.Typer") -> None:
    import typer

    from nodetune.cli.errors import UserError
    from nodetune.cli.options import number

    def frob(level: Annotated[int, typer.Option("--level", parser=number(0, 9, integer=True), metavar="N",
                                                help="How hard.")] = 1) -> None:
        """Frobnicate the node's knobs at LEVEL."""
        if level == 9:
            raise UserError("--level 9: the knobs would break")
        typer.echo(f"frobbed at {level}")

    app.command()(frob)
'''


def _nodetune(folder: Path, *args: str, entry: str = "app") -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(f"""
        import sys
        import nodetune.cli.commands as commands
        commands.__path__.append({str(folder)!r})  # a second folder of command modules: the only change
        from nodetune.cli.{entry} import main
        main(sys.argv[1:])
    """)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=env)


def test_adding_a_command_is_one_file(tmp_path: Path) -> None:
    (tmp_path / "frob.py").write_text(COMMAND)
    fast, slow = _nodetune(tmp_path, "--help"), _nodetune(tmp_path, "--help", entry="typer_app")
    assert fast.returncode == 0 and fast.stdout == slow.stdout, (fast.stdout, slow.stdout, slow.stderr)
    assert "  frob      Frobnicate the node's knobs.\n" in fast.stdout
    assert _nodetune(tmp_path, "frob", "--level", "3").stdout == "frobbed at 3\n"
    assert "Frobnicate the node's knobs at LEVEL." in _nodetune(tmp_path, "frob", "--help").stdout
    bad = _nodetune(tmp_path, "frob", "--level", "x")
    assert (bad.returncode, bad.stderr) == (2, "nodetune: error: --level: expected a whole number between 0 and 9, "
                                                "got 'x'\n")
    refused = _nodetune(tmp_path, "frob", "--level", "9")
    assert (refused.returncode, refused.stderr) == (2, "nodetune: error: --level 9: the knobs would break\n")


def test_a_module_mounts_what_it_declares(tmp_path: Path) -> None:
    (tmp_path / "frob.py").write_text(COMMAND.replace('{"frob": ', '{"frobnicate": '))
    r = _nodetune(tmp_path, "frobnicate")
    assert r.returncode != 0 and "declares the commands ['frobnicate'] but mounts ['frob']" in r.stderr


def test_help_reads_no_command_implementation() -> None:
    """`--help` imports the command modules' light tops only: no typer, no probes, no renderers."""
    probe = ("import sys; from nodetune.cli.app import main; main(['--help']); "
             "print(sorted(m for m in sys.modules if m.startswith('nodetune.') and 'commands' not in m), "
             "file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.stderr.strip() == str(sorted(["nodetune.cli", "nodetune.cli.app", "nodetune.cli.fast",
                                           "nodetune.cli.help_text", "nodetune.cli.plugins"]))
