"""The shape of tuners/: no import circle, small modules, a registry that loads tuners only, and
adding a tuner is one file (planned, applied, rolled back, offered to autotune and named in help)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TUNERS = REPO / "tuners"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    rel = path.relative_to(TUNERS).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["nodetune.tuners", *parts])


def _imports(path: Path) -> set[str]:
    """Modules of nodetune.tuners that `path` imports (type-only imports included)."""
    me = _module_name(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = pkg
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            mod = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import crashpoints`
    return {m for m in out if m.startswith("nodetune.tuners")}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in TUNERS.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_circle_in_tuners():
    graph = _graph()
    assert "nodetune.tuners.transaction.engine" in graph and "nodetune.tuners.knobs.readahead" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_check_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_every_tuners_module_is_under_400_lines():
    big = {str(p.relative_to(REPO)): n for p in TUNERS.rglob("*.py") if (n := len(p.read_text().splitlines())) >= MAX_LINES}
    assert big == {}


def test_contract_errors_and_context_are_apart():
    graph = _graph()
    assert graph["nodetune.tuners.errors"] == set()
    assert "nodetune.tuners.affinity" not in graph["nodetune.tuners.contract"]
    # inspect (verify, status) takes no lock and writes nothing
    inspect = _imports(TUNERS / "transaction" / "inspect.py")
    assert not inspect & {"nodetune.tuners.transaction.nodelock.NodeLock", "nodetune.tuners.transaction.journal"}


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          cwd=REPO / "tests")


def test_the_registry_loads_tuner_modules_only():
    r = _run("""
        import sys
        from nodetune.tuners.registry import all_tuners, drivers
        all_tuners(); drivers()
        print(",".join(sorted(m for m in sys.modules if m.startswith(("nodetune.tuners.transaction", "nodetune.prefetch",
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

        from faketree import laptop
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
