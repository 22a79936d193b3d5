"""The shape of tuners/ (its circles and module sizes: test_package_shape.py): a registry that
loads tuners only, and adding a tuner is one file (planned, applied, rolled back, offered to
autotune and named in help)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.house.test_package_shape import _graph

REPO = Path(__file__).resolve().parents[2]
TUNERS = REPO / "tuners"
MAX_LINES = 400


def test_contract_errors_and_context_are_apart():
    graph = _graph()
    assert not {m for m in graph["nodetune.tuners.errors"] if m.startswith("nodetune.tuners")}
    assert "nodetune.tuners.affinity" not in graph["nodetune.tuners.contract"]
    # inspect (verify, status) takes no lock and writes nothing
    inspect = graph["nodetune.tuners.transaction.inspect"]
    assert not inspect & {"nodetune.tuners.transaction.nodelock", "nodetune.tuners.transaction.journal"}


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def test_the_registry_loads_tuner_modules_only():
    r = _run("""
        import sys
        from nodetune.tuners.registry import all_tuners, drivers
        all_tuners(); drivers()
        print(",".join(sorted(m for m in sys.modules
                              if m.startswith(("nodetune.tuners.transaction", "nodetune.prefetch",
                                               "nodetune.tuners.exec_numa")))))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


PLUGIN = '''
"""A tuner written for the test: one file, its knob's driver included."""
from dataclasses import dataclass

from nodetune.tuners.contract import CHANGE, Change, Knob, TunerPlan
from nodetune.tuners.errors import KnobFailed
from nodetune.tuners.registry import driver, tuner

PATH = "/etc/frob.conf"


@dataclass
class FrobParams:
    level: int | None = None

    def check(self) -> list[str]:
        return []


@tuner
class FrobTuner:
    name = "frob"
    params = FrobParams
    order = 25

    def plan(self, ctx, p):
        knob = Knob(id="frob:level", kind="frob", group="frob", label="frob level", path=PATH)
        return TunerPlan([Change(self.name, knob, FrobDriver(ctx).read(knob), str(p.level), CHANGE)])

    @staticmethod
    def command(params):
        return f"nodetune tune apply --frob {params.get('level')}"


@driver("frob")
class FrobDriver:
    def __init__(self, ctx):
        self.host = ctx.host

    def read(self, knob):
        return self.host.read(knob.path).strip()

    def write(self, knob, value):
        try:
            open(self.host.path(knob.path), "w").write(value)
        except OSError as exc:
            raise KnobFailed(str(exc)) from None

    def preflight(self, knob):
        return None
'''


def test_adding_a_tuner_is_one_file(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "frob.py").write_text(PLUGIN)
    root = tmp_path / "root"
    r = _run(f"""
        import nodetune.tuners.knobs as knobs
        knobs.__path__.append({str(plugins)!r})  # a second folder of tuner modules: the only change

        from tests.support.faketree import laptop
        from typer.testing import CliRunner
        import typer
        from nodetune.cli.advice_command import advice_command
        from nodetune.cli.tune import register
        from nodetune.config.agent import AgentConfig
        from nodetune.config.loader import parse_config
        from nodetune.probes.host import Host
        from nodetune.tuners.profiles import parse_profile
        from nodetune.tuners.session import open_session
        from nodetune.tuners.gpu_control import GpuControl

        laptop({str(root)!r})
        (__import__("pathlib").Path({str(root)!r}) / "etc/frob.conf").write_text("1\\n")
        host = Host({str(root)!r})
        prof = parse_profile("[frob]\\nlevel = 3\\n", "p", "p.toml")
        with open_session(host, gpus=GpuControl.disabled("test")) as s:
            plan = s.plan(prof)
            print("planned", [(c.tuner, c.current, c.target, c.action) for c in plan.changes])
            res = s.apply(plan)
            print("applied", open(host.path("/etc/frob.conf")).read())
            rb = s.engine.rollback()
            print("rolled back", [r.outcome for r in rb.rows], open(host.path("/etc/frob.conf")).read())
        cfg = parse_config(b"[agent]\\nautotune = [\\"frob\\"]\\n", "config.toml").get(AgentConfig)
        print("autotune", cfg.autotune)
        print("advice", advice_command("frob", {{"level": 3}}))
        app = typer.Typer()
        app.command()(lambda: None)
        register(app)
        print("help", "frob" in CliRunner().invoke(app, ["tune", "--help"]).output)
    """)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "planned [('frob', '1', '3', 'change')]" in out
    assert "applied 3" in out and "rolled back ['restored'] 1" in out
    assert "autotune ['frob']" in out
    assert "advice nodetune tune apply --frob 3" in out
    assert "help True" in out
