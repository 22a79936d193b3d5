"""`nodetune --help`, `-h` and `--version` answered without typer, to the character what the typer
app says; commands that take only strings and flags start without pydantic."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points, version

from nodetune.cli import plugins
from nodetune.cli.help_text import PLUGIN_COMMANDS

FAST = "from nodetune.cli.app import main; main()"
TYPER = "from nodetune.cli.typer_app import main; main()"


def _run(code: str, *args: str, columns: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)


def test_fast_help_is_the_typer_apps_help() -> None:
    for flag in ("--help", "-h"):
        for cols in (None, "80", "200"):
            fast, slow = _run(FAST, flag, columns=cols), _run(TYPER, flag, columns=cols)
            assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)


def test_a_narrow_terminal_gets_typers_own_layout() -> None:
    fast, slow = _run(FAST, "--help", columns="60"), _run(TYPER, "--help", columns="60")
    assert fast.stdout == slow.stdout and max(len(line) for line in fast.stdout.splitlines()) <= 60


def test_fast_version_and_plugins_are_what_importlib_metadata_finds() -> None:
    assert _run(FAST, "--version").stdout == f"nodetune {version('nodetune')}\n"
    eps = sorted((ep.name, ep.value) for ep in entry_points(group=plugins.GROUP))
    assert sorted(set(plugins.command_entry_points())) == eps
    assert {n for n, _ in eps} == PLUGIN_COMMANDS


def test_help_imports_no_typer_and_topo_no_pydantic() -> None:
    probe = ("import sys; from nodetune.cli.app import main; main(); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'pydantic', 'click'}), "
             "file=sys.stderr)")
    assert _run(probe, "--help").stderr.strip() == "[]"
    assert _run(probe, "--version").stderr.strip() == "[]"
    topo = _run(probe, "topo", "--json")
    assert topo.returncode == 0 and "pydantic" not in topo.stderr.splitlines()[-1]


def test_options_with_parsers_are_still_checked() -> None:
    """Strings with a parser of ours (a choice, a listen address) still go through it."""
    bad = _run(FAST, "diagnose", "--fail-on", "bogus")
    assert bad.returncode == 2 and "expected one of warning, critical, got 'bogus'" in bad.stderr


def test_builtin_map_names_what_each_module_mounts() -> None:
    import typer.main

    from nodetune.cli import typer_app

    full = typer.main.get_command(typer_app.build_app())
    builtin = set(full.commands) - PLUGIN_COMMANDS  # type: ignore[attr-defined]
    assert builtin == set(typer_app.BUILTIN)
    for name in typer_app.BUILTIN:
        only = typer.main.get_command(typer_app.build_app(name))
        assert name in only.commands  # type: ignore[attr-defined]
    agent_only = typer.main.get_command(typer_app.build_app("history"))
    assert set(agent_only.commands) == {"history"}  # type: ignore[attr-defined]


def test_an_unknown_command_is_told_against_every_command() -> None:
    r = _run(FAST, "diagnos")
    assert r.returncode == 2 and "diagnos" in r.stderr
