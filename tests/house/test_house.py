"""The house: layout and import direction, the one config loader, the one error path, --version,
and behaviour unchanged by the move (diagnose --replay against outputs recorded before it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.faketree import laptop

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden" / "diagnose_replay_v2.json"


def nodetune(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodetune.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


# -- behaviour unchanged ---------------------------------------------------------------------------

def _essentials(rep: dict) -> dict:
    return {"gpus": [{k: g[k] for k in ("index", "verdict", "cause", "healthy", "confidence", "summary", "metrics",
                                        "findings")} for g in rep["gpus"]],
            "jobs": [{k: j[k] for k in ("id", "verdict", "cause", "healthy", "findings")} for j in rep["jobs"]],
            "findings": [{k: f[k] for k in ("kind", "severity", "gpus", "job", "cause", "summary", "evidence",
                                            "confidence")} for f in rep["findings"]]}


def test_replay_reports_match_those_recorded_before_the_move():
    from nodetune.config.diagnosis import Thresholds
    from nodetune.diagnosis.engine import diagnose
    from nodetune.probes.serde import to_jsonable
    from nodetune.probes.snapshot import load_snapshot

    golden = json.loads(GOLDEN.read_text())
    assert len(golden) >= 15
    for name, want in golden.items():
        snap = load_snapshot(str(REPO / name))
        assert snap.window is not None
        got = _essentials(to_jsonable(diagnose(snap.topology, snap.window, Thresholds(), f"replay:{name}")))
        assert got == want, name


# -- import direction --------------------------------------------------------------------------------

@pytest.mark.parametrize("module,forbidden", [
    ("nodetune.diagnosis.engine", ("nodetune.tuners", "nodetune.cli", "nodetune.agent")),
    ("nodetune.probes.snapshot", ("nodetune.tuners", "nodetune.cli", "nodetune.agent", "nodetune.diagnosis")),
    ("nodetune.probes.sampler", ("nodetune.tuners", "nodetune.cli", "nodetune.agent", "nodetune.diagnosis")),
    ("nodetune.config.loader", ("nodetune.tuners", "nodetune.cli", "nodetune.agent", "nodetune.diagnosis",
                                "nodetune.probes")),
    ("nodetune.tuners.plan", ("nodetune.cli", "nodetune.agent", "nodetune.diagnosis")),
])
def test_layers_import_nothing_above_them(module, forbidden):
    code = f"import sys, {module}, nodetune.config.loader as L; L.defaults()\n"
    if module.startswith("nodetune.diagnosis"):
        code += "from nodetune.diagnosis.rules import all_rules; all_rules()\n"
    code += f"print(','.join(sorted(m for m in sys.modules if m.startswith({forbidden!r}))))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"{module} pulled in {r.stdout.strip()}"


def test_rules_register_themselves():
    from nodetune.diagnosis.rules import all_rules, primary_order

    names = {m.__name__.rsplit(".", 1)[1] for m in all_rules()}
    assert {"data_starved", "compute_bound", "gpu_lost", "throttled"} <= names
    assert primary_order()[0] == "gpu_lost" and "throttled" not in primary_order()
    assert set(primary_order()) <= names


# -- one config loader ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,needle", [
    ("[tune]\nallow_gpu_powerr = true\n",
     "config.toml:2: [tune].allow_gpu_powerr: unknown key (did you mean allow_gpu_power?)"),
    ('[tune]\nallow_gpu_power = "yes"\n', "config.toml:2: [tune].allow_gpu_power: expected true or false, got 'yes'"),
    ("[diagnosis]\n\nbusy_sm_pct = nan\n", "config.toml:3: [diagnosis].busy_sm_pct: expected a finite number, got nan"),
    ("[diagnosis]\nbusy_sm_pct = inf\n", "expected a finite number, got inf"),
    ("[diagnosis]\nbusy_sm_pct = 1e400\n", "expected a finite number, got inf"),
    ("[diagnosis]\nstarved_idle_share = 7\n",
     "[diagnosis].starved_idle_share: expected a number between 0 and 1, got 7"),
    ("[diagnosis]\nbusy_sm_pct = -3\n", "expected a number between 0 and 100, got -3"),
    ("[diagnosis]\nbusy_sm_pct = 'x'\n", "expected a number, got 'x'"),
    ("[nonsense]\n", "config.toml:1: unknown section [nonsense]"),
    ("busy_sm_pct = [\n", "not valid TOML"),
    ("allow_gpu_power = true\n", "unknown section [allow_gpu_power]"),
])
@pytest.mark.parametrize("command", [["diagnose", "--seconds", "1"], ["tune", "plan", "--profile", "data-loading"],
                                     ["config", "check"]])
def test_every_command_refuses_the_same_bad_config(tmp_path, text, needle, command):
    laptop(tmp_path)
    cfg = tmp_path / "etc/nodetune/config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(text)
    r = nodetune(*command, "--root", str(tmp_path))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nodetune: error: /etc/nodetune/config.toml"), r.stderr
    assert needle in lines[0]


def test_non_utf8_and_huge_configs_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[diagnosis]\nbusy_sm_pct = 40 # \xff\xfe\n")
    r = nodetune("config", "check", str(bad))
    assert r.returncode == 2 and r.stderr.strip() == f"nodetune: error: {bad}: not UTF-8 text (byte 31)"
    bad.write_bytes(b"#" * (2 << 20))
    r = nodetune("config", "check", str(bad))
    assert r.returncode == 2 and "too large for a config file" in r.stderr


def test_config_check_prints_effective_values(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[diagnosis]\nbusy_sm_pct = 40\n[tune]\nallow_gpu_power = true\n")
    r = nodetune("config", "check", str(good), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["sections"]["diagnosis"]["busy_sm_pct"] == 40 and out["sections"]["diagnosis"]["idle_util_pct"] == 5
    assert out["sections"]["tune"]["allow_gpu_power"] is True
    text = nodetune("config", "check", str(good)).stdout
    assert "[diagnosis]\n" in text and "busy_sm_pct = 40.0" in text and "allow_gpu_power = true" in text


def test_readme_tables_are_generated_from_the_sections():
    from nodetune.config.loader import _discover, section_table

    readme = (REPO / "README.md").read_text()
    sections = _discover()
    assert {"agent", "diagnosis", "tune"} <= set(sections)
    for name, cls in sections.items():
        assert section_table(cls) in readme, f"README lacks the [{name}] table (config.loader.section_table)"


def test_readme_layout_names_every_module():
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    for pkg in ("agent", "cli", "config", "diagnosis", "probes", "tuners"):
        for f in sorted((REPO / pkg).glob("*.py")):
            if f.name not in ("__init__.py", "__main__.py"):
                assert f.name in layout, f"README layout does not name {pkg}/{f.name}"


# -- one error path ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,line", [
    (["diagnose", "--seconds", "-1"], "--seconds: expected a number between 1 and 3600, got '-1'"),
    (["diagnose", "--seconds", "abc"], "--seconds: expected a number between 1 and 3600, got 'abc'"),
    (["diagnose", "--interval", "0"], "--interval: expected a number between 0.11 and 60, got '0'"),
    (["snapshot", "-o", "x.json", "--interval", "nan"], "--interval: expected a number between 0.11 and 60, got 'nan'"),
    (["diagnose", "--fail-on", "bogus"], "--fail-on: expected one of warning, critical, got 'bogus'"),
    (["exec", "--gpu", "abc", "--", "true"], "--gpu: expected a whole number between 0 and 4095, got 'abc'"),
    (["tune", "recommend", "--seconds", "0"], "--seconds: expected a number between 1 and 3600, got '0'"),
    (["tune", "hold-latency", "--us", "1.5"], "--us: expected a whole number between 0 and 1e+07, got '1.5'"),
    (["diagnose", "--nope"], "No such option: --nope"),
    (["frobnicate"], "No such command 'frobnicate'."),
    (["snapshot"], "Missing option '-o' / '--output'."),
    (["diagnose", "--root", "/nonexistent-root"], "--root /nonexistent-root: not a directory"),
])
def test_bad_input_is_one_line_and_exit_2(args, line, tmp_path):
    r = nodetune(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr == f"nodetune: error: {line}\n"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_snapshot_errors_say_what_the_file_is(tmp_path):
    f = tmp_path / "s.json.gz"
    f.write_text("not gzip")
    r = nodetune("diagnose", "--replay", str(f))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and str(f) in r.stderr
    f2 = tmp_path / "s.json"
    f2.write_text("{nope")
    r = nodetune("diagnose", "--replay", str(f2))
    assert r.returncode == 2 and "not JSON" in r.stderr and len(r.stderr.splitlines()) == 1


def test_version():
    r = nodetune("--version")
    assert r.returncode == 0 and r.stdout.startswith("nodetune ")


# -- recommend reads what diagnose writes ------------------------------------------------------------

def test_recommend_reads_the_diagnose_json_report(tmp_path):
    from tests.support.faketree import FakeProc

    # the node the report came from: its job is pid 567
    fn = laptop(tmp_path / "root").node
    fn.process(FakeProc(pid=567, comm="python3", cmdline=["python3", "train.py"], cpus=list(range(8)),
                        threads={567: ("python3", "R", 1, 1)}, starttime=5000))
    rep = nodetune("diagnose", "--replay", str(REPO / "examples/h200-dataloader-starved.json.gz"), "--json")
    assert rep.returncode == 0
    f = tmp_path / "report.json"
    f.write_text(rep.stdout)
    r = nodetune("tune", "recommend", "--advice", str(f), "--root", str(tmp_path / "root"), "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    # The example's node has one NUMA node: pinning would change nothing, so the plan is the
    # data-loading profile the advice asks for.
    assert plan["profile"] == "recommended" and any(c["tuner"] == "hugepages" for c in plan["changes"])
    assert not any(c["tuner"] == "pinning" for c in plan["changes"])


@pytest.mark.parametrize("content,needle", [
    ('{"foo": 1}', "not a report from `nodetune diagnose --json` (found a JSON keys foo)"),
    ("[1, 2]", "not a report from `nodetune diagnose --json` (found a JSON list)"),
    ("[" * 100_000, "JSON nested too deep"),
    ('{"gpus": [], "findings": [{"advice": 3}]}', "findings[0].advice is not a list"),
])
def test_recommend_refuses_anything_else(tmp_path, content, needle):
    laptop(tmp_path / "root")
    f = tmp_path / "advice.json"
    f.write_text(content)
    r = nodetune("tune", "recommend", "--advice", str(f), "--root", str(tmp_path / "root"))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and needle in r.stderr, r.stderr


def test_text_advice_is_a_command_to_paste():
    r = nodetune("diagnose", "--replay", str(REPO / "examples/h200-dataloader-starved.json.gz"))
    assert r.returncode == 0
    assert "$ nodetune tune apply --profile data-loading" in r.stdout and "{'p" not in r.stdout


# -- a sampler for long runs ------------------------------------------------------------------------

def test_sampler_drops_exited_and_reused_pids_and_reads_the_page_size(tmp_path):
    import shutil

    from nodetune.probes.host import Host
    from nodetune.probes.node import probe_topology
    from nodetune.probes.nvml_backend import NvmlBackend
    from nodetune.probes.sampler import Sampler
    from nodetune.probes.snapshot import Window
    from tests.support.fakenvml import FakeNvml, hgx_gpus
    from tests.support.faketree import FakeProc, vm_h200

    p = vm_h200(tmp_path)
    p.node.page_size(64)  # a GH200-style 64 KiB-page node
    for pid in (100, 200):
        p.node.process(FakeProc(pid=pid, comm="python", cmdline=["python"], cpus=[0], starttime=pid,
                                threads={pid: ("python", "R", 1, 1)}))
    gpus = hgx_gpus(p.gpu_addresses)
    gpus[0].processes = [(100, 2**30), (200, 2**30)]
    backend = NvmlBackend(FakeNvml(gpus))
    host = Host(str(tmp_path))
    topo = probe_topology(host, backend, backend.open())
    assert topo.node.page_kb == 64
    s = Sampler(host, backend, topo)
    first = s.sample()
    assert set(s.infos) == {100, 200}
    rss_pages = int((tmp_path / "proc/100/stat").read_text().rsplit(")", 1)[1].split()[21])
    assert next(x for x in first.processes if x.pid == 100).rss_kb == rss_pages * 64
    # 100 exits; 200 is replaced by another process on the same pid (new start time)
    shutil.rmtree(tmp_path / "proc/100")
    p.node.process(FakeProc(pid=200, comm="other", cmdline=["other"], cpus=[0], starttime=999,
                            threads={200: ("other", "S", 1, 1)}))
    gpus[0].processes = []
    s.sample()
    assert s.infos == {} and s.dropped == 2
    win = s.roll(Window(seconds=1, interval_s=1))
    assert {i.pid for i in win.processes} == {100, 200}  # the window still says who it saw
    s.sample()
    assert s.roll(Window(seconds=1, interval_s=1)).processes == []  # the next one does not


def test_every_package_is_in_the_distribution():
    """A subpackage missing from pyproject's list works from a checkout and breaks once installed."""
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    for name, folder in cfg["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            pkg = ".".join([name, *rel.parts]) if rel.parts else name
            assert pkg in listed, f"{pkg} ({init.parent}) is not in pyproject's packages"


def test_tuners_register_themselves_and_everything_derives_from_them():
    from nodetune.tuners.profiles import Profile, profile_from_data
    from nodetune.tuners.registry import all_tuners, sections, tuner_modules

    names = list(all_tuners())
    shipped = ["hugepages", "readahead", "power", "gpu", "pinning"]
    assert [n for n in names if n in shipped] == shipped  # their declared order
    assert sorted(names) == tuner_modules()  # one module a tuner, named as its table: no list kept here
    assert set(sections()) == set(names)
    prof = profile_from_data({"readahead": {"read_ahead_kb": 4096}}, "p", "test")
    assert prof.readahead.read_ahead_kb == 4096 and prof.pinning is None
    import pytest as _pytest

    with _pytest.raises(AttributeError):
        _ = Profile("x", "y").nonsense


def test_readme_verdict_table_is_generated_from_the_rules():
    from nodetune.diagnosis.rules import all_rules, verdict_table

    table = verdict_table()
    assert table in (REPO / "README.md").read_text()
    for m in all_rules():
        assert f"| `{m.__name__.rsplit('.', 1)[1]}` |" in table
