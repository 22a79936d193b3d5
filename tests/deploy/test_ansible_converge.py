"""The Ansible role run for real against localhost, into a prefix under a temp dir.

- ansible-lint (production profile) on site.yml and the roles;
- meta/argument_specs.yml stops a wrong variable before any task, naming it;
- a converge: the first run installs the wheel built from this checkout into a venv in the prefix,
  writes config, units and the Prometheus file_sd/rules/dashboard, applies the profile to a fake
  node tree and starts the agent; a verify step checks files, config, `nodetune --version`, a
  scrape of the agent on 127.0.0.1 (fresh sample; it listens on nothing else) and a real
  Prometheus discovering it through monitoring/prometheus-fleet.yml; the second run and a
  --check --diff run report changed=0 (the latter writes nothing); `nodetune_state: absent`
  rolls the tuning back, stops the agent and leaves nothing behind but the history database it
  was asked to keep, and a second absent run removes that too.

systemd is not PID 1 here, so the role runs with `nodetune_service_manager: pidfile`: the agent
is started detached by the role's nodetune-agentctl under a pid file, with `--root` the fake tree
and `--config` the prefix's config.toml. Every node path is a role variable pointing into the
prefix; nothing outside the temp dir is written. pip installs offline (--no-index): the venv
reads this interpreter's dependencies through a folder of links (nodetune_venv_site_dirs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import psutil
import pytest

from tests.deploy.test_deploy import REPO, SYSTEMD, _ansible_env, _ansible_playbook
from tests.support.agent_support import free_port, parse, scrape_text, value, wait_for
from tests.support.faketree import laptop
from tests.support.tuners_support import knob_values

ANSIBLE = REPO / "ansible"
MON = REPO / "monitoring"
# The checkout's package folders, from pyproject's package-dir (a new subpackage needs no edit here).
PACKAGE_DIRS = tuple(sorted(set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                                ["package-dir"].values())))
PARENTS = ("usr/local/bin", "etc/default", "etc/systemd/system", "opt", "run")
RECAP = re.compile(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def _tool(name: str, hint: str) -> str:
    here = Path(sys.executable).parent / name
    tool = str(here) if here.exists() else shutil.which(name)
    if not tool:
        pytest.skip(f"{name} not installed ({hint})")
    return tool


@pytest.mark.integration
def test_ansible_lint_production_profile(tmp_path: Path) -> None:
    tool = _tool("ansible-lint", "apt-get install ansible-lint, or pip install ansible-lint")
    r = subprocess.run([tool, "--profile", "production", "--nocolor", "-p", "site.yml", "roles"], cwd=ANSIBLE,
                       capture_output=True, text=True, timeout=300,
                       env={**_ansible_env(tmp_path), "HOME": str(tmp_path)})  # its cache stays in tmp
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


@pytest.mark.integration
def test_wrong_variable_fails_before_any_task(tmp_path: Path) -> None:
    tool = _ansible_playbook()
    inv = tmp_path / "inventory.ini"
    inv.write_text(f"[gpu_nodes]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    r = subprocess.run([tool, "-i", str(inv), str(ANSIBLE / "site.yml"), "-e",
                        json.dumps({"ansible_become": False, "nodetune_state": "gone", "nodetune_agent_config": "x"})],
                       capture_output=True, text=True, timeout=300, env=_ansible_env(tmp_path))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "nodetune_state" in out and "nodetune_agent_config" in out, out[-3000:]
    tasks = re.findall(r"^TASK \[(.*?)\]", out, re.M)
    assert "Validating arguments against arg spec 'main'" in tasks[-1], tasks  # the role's first task


# -- the converge ---------------------------------------------------------------------------------

def _build_wheel(tmp: Path) -> Path:
    """The wheel of this checkout, built from a copy (the checkout gets no build/ or egg-info)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for d in PACKAGE_DIRS:
        shutil.copytree(REPO / d, src / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    try:
        import wheel  # noqa: F401 - setuptools' bdist_wheel needs it
    except ImportError:
        pytest.skip("the 'wheel' package is not installed in this venv (pip install wheel; .ci/run does)")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (whl,) = (tmp / "dist").glob("nodetune-*.whl")
    # Every package of the checkout must be in it: a subpackage left out of pyproject.toml's
    # [tool.setuptools] packages installs a CLI or agent that fails at import on the node.
    names = set(zipfile.ZipFile(whl).namelist())
    missing = sorted(str(p.parent.relative_to(REPO)).replace("/", ".") for d in PACKAGE_DIRS
                     for p in (REPO / d).rglob("__init__.py")
                     if f"nodetune/{p.relative_to(REPO)}" not in names)
    assert not missing, (f"the wheel lacks {', '.join('nodetune.' + m for m in missing)}: add them to "
                         "[tool.setuptools] packages in pyproject.toml")
    return whl


def _deps_dir(tmp: Path) -> Path:
    """Links to this venv's installed packages, nodetune itself left out: pip in the new venv sees
    the dependencies as installed and needs no index."""
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and (Path(p) / "typer").is_dir())
    deps = tmp / "deps"
    deps.mkdir()
    for entry in site.iterdir():
        if entry.name.startswith(("nodetune", "__editable__", "_nodetune")) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    return deps


def _tree(base: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int, bool]]:
    """Every path under base: (size, mtime_ns, is link), links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(base))
            if rel.startswith(skip):
                continue
            st = p.lstat()
            out[rel] = (st.st_size, st.st_mtime_ns, p.is_symlink())
    return out


class Converge:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.prefix = tmp / "p"
        self.root = self.prefix / "root"
        self.port = free_port()
        self.whl = _build_wheel(tmp)
        self.deps = _deps_dir(tmp)
        laptop(self.root)
        p = self.prefix
        self.inventory = tmp / "inventory.ini"
        self.inventory.write_text(
            f"[gpu_nodes]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable} "
            "nodetune_scrape_address=127.0.0.1\n[prometheus]\nlocalhost\n")
        self.vars = {
            "ansible_become": False, "nodetune_package": str(self.whl), "nodetune_python": sys.executable,
            "nodetune_pip_extra_args": "--no-index", "nodetune_venv_site_dirs": [str(self.deps)],
            "nodetune_install_os_packages": False, "nodetune_service_manager": "pidfile",
            "nodetune_venv": f"{p}/opt/nodetune", "nodetune_bin_link": f"{p}/usr/local/bin/nodetune",
            "nodetune_config_dir": f"{p}/etc/nodetune", "nodetune_default_file": f"{p}/etc/default/nodetune",
            "nodetune_unit_dir": f"{p}/etc/systemd/system", "nodetune_node_root": str(self.root),
            "nodetune_run_dir": f"{p}/run/nodetune", "nodetune_agent_listen": f"127.0.0.1:{self.port}",
            "nodetune_agent_config": {"sample_interval_s": 0.5, "diagnose_every_s": 2, "window_s": 4},
            "nodetune_config": {"idle_util_pct": 3},
            "nodetune_prometheus_sd_file": f"{p}/etc/prometheus/file_sd/nodetune.json",
            "nodetune_prometheus_rules_dir": f"{p}/etc/prometheus/rules",
            "nodetune_prometheus_dashboard_dir": f"{p}/var/lib/grafana/dashboards",
            "nodetune_prometheus_promtool": shutil.which("promtool") or "", "nodetune_prometheus_reload": False,
        }
        # Parents that exist on any real node; the role makes the rest.
        for d in PARENTS:
            (p / d).mkdir(parents=True)
        self.env = {**_ansible_env(tmp), "ANSIBLE_PIPELINING": "1", "PIP_CONFIG_FILE": os.devnull,
                    "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        self.tool = _ansible_playbook()

    def play(self, *args: str, **extra: object) -> tuple[int, int, str]:
        r = subprocess.run([self.tool, "-i", str(self.inventory), str(ANSIBLE / "site.yml"), "--diff",
                            "-e", json.dumps({**self.vars, **extra}), *args],
                           capture_output=True, text=True, timeout=400, env=self.env)
        out = r.stdout + r.stderr
        m = RECAP.search(out)
        assert r.returncode == 0 and m and m.group(4) == "0", out[-6000:]
        return int(m.group(1)), int(m.group(2)), out

    def pid(self) -> int:
        return int((self.prefix / "run/nodetune/agent.pid").read_text())


def _changed_tasks(out: str) -> list[str]:
    """Names of the tasks that reported a change (for a useful failure message)."""
    names, cur = [], ""
    for line in out.splitlines():
        m = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*?)\]", line)
        if m:
            cur = m.group(1)
        elif line.startswith("changed:"):
            names.append(cur)
    return names


def _prometheus_discovers(c: Converge) -> None:
    """A real Prometheus on 127.0.0.1 with monitoring/prometheus-fleet.yml (paths into the prefix)
    finds the agent in the role's file_sd file and scrapes it under job "nodetune"."""
    tool = shutil.which("prometheus")
    if not tool:
        print("prometheus not installed: the file_sd snippet is checked as text only")  # noqa: T201
        return
    snippet = (MON / "prometheus-fleet.yml").read_text().replace("/etc/prometheus", str(c.prefix / "etc/prometheus"))
    snippet = snippet.replace("scrape_interval: 15s", "scrape_interval: 1s").replace("scrape_timeout: 10s",
                                                                                     "scrape_timeout: 1s")
    cfg = c.tmp / "prometheus.yml"
    cfg.write_text(snippet)
    port = free_port()
    p = subprocess.Popen([tool, f"--config.file={cfg}", f"--storage.tsdb.path={c.tmp / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)

    def up() -> list[dict]:
        q = urllib.parse.quote('up{job="nodetune"} == 1')
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query={q}", timeout=2) as r:  # noqa: S310
                return list(json.load(r)["data"]["result"])
        except OSError:
            return []

    try:
        got = wait_for(up, timeout=60, what="prometheus scraping the agent from the file_sd target")
        assert got[0]["metric"]["instance"] == f"127.0.0.1:{c.port}" and got[0]["metric"]["node"] == "localhost"
    finally:
        p.terminate()
        p.wait(timeout=10)


@pytest.fixture
def converge(tmp_path: Path):
    c = Converge(tmp_path)
    yield c
    # A failed assertion must not leave the agent running: stop it by its pid file.
    pidfile = c.prefix / "run/nodetune/agent.pid"
    if pidfile.exists():
        try:
            proc = psutil.Process(int(pidfile.read_text()))
            if str(c.prefix) in " ".join(proc.cmdline()):  # ours, not a reused pid
                proc.terminate()
        except (psutil.Error, ValueError):
            pass


@pytest.mark.integration
def test_converge_twice_verify_then_absent(converge: Converge) -> None:
    c = converge
    p = c.prefix
    knobs_before = knob_values(c.root)
    t0 = time.monotonic()

    # -- first run: installs and starts everything ----------------------------------------------
    _, changed, out = c.play()
    assert changed > 0
    assert "Validating arguments against arg spec 'main'" in out
    t1 = time.monotonic()

    # files
    venv = p / "opt/nodetune"
    assert (venv / "bin/nodetune").is_file() and (venv / "bin/nodetune-agentctl").is_file()
    assert os.readlink(p / "usr/local/bin/nodetune") == str(venv / "bin/nodetune")
    for unit in ("nodetune.service", "nodetune-tune.service", "nodetune-latency.service"):
        assert (p / "etc/systemd/system" / unit).read_bytes() == (SYSTEMD / unit).read_bytes()
    assert 'NODETUNE_PROFILE="training-throughput"' in (p / "etc/default/nodetune").read_text()
    # config: the role's variables, as nodetune's own loader reads them
    r = subprocess.run([str(p / "usr/local/bin/nodetune"), "config", "check", "--json",
                        str(p / "etc/nodetune/config.toml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    sections = json.loads(r.stdout)["sections"]
    assert sections["agent"]["listen"] == f"127.0.0.1:{c.port}" and sections["agent"]["window_s"] == 4
    assert sections["diagnosis"]["idle_util_pct"] == 3
    r = subprocess.run([str(p / "usr/local/bin/nodetune"), "--version"], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "nodetune 0.1.0", r.stdout + r.stderr
    # nodetune itself comes from the venv, not from this checkout
    r = subprocess.run([str(venv / "bin/python"), "-c", "import nodetune.cli; print(nodetune.cli.__file__)"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith(str(venv)), r.stdout + r.stderr
    # the profile was applied to the fake node, journaled where the agent reads it
    assert knob_values(c.root) != knobs_before
    assert (c.root / "var/lib/nodetune/journal.jsonl").is_file()
    # the agent: running from the venv, a fresh sample on 127.0.0.1, and no other listening socket
    proc = psutil.Process(c.pid())
    assert str(venv / "bin") in " ".join(proc.cmdline()) and "--root" in proc.cmdline()
    m = parse(scrape_text(f"http://127.0.0.1:{c.port}"))
    ts = value(m, "nodetune_agent_last_sample_timestamp_seconds")
    assert ts is not None and time.time() - ts < 10
    assert value(m, "nodetune_tuning_changes_applied", knob="thp") == 1.0
    listening = {(s.laddr.ip, s.laddr.port) for s in proc.net_connections(kind="inet")
                 if s.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", c.port)}
    # Prometheus side: file_sd from the inventory, rules and dashboard from monitoring/
    sd = json.loads((p / "etc/prometheus/file_sd/nodetune.json").read_text())
    assert sd == [{"targets": [f"127.0.0.1:{c.port}"], "labels": {"node": "localhost"}}]
    assert (p / "etc/prometheus/rules/nodetune.rules.yml").read_bytes() == (MON / "nodetune.rules.yml").read_bytes()
    assert (p / "var/lib/grafana/dashboards/nodetune.json").read_bytes() == (MON / "grafana-nodetune.json").read_bytes()
    _prometheus_discovers(c)

    # -- second run: nothing to do --------------------------------------------------------------
    pid = c.pid()
    _, changed, out = c.play()
    assert changed == 0, _changed_tasks(out)
    assert c.pid() == pid  # not restarted
    t2 = time.monotonic()

    # -- --check --diff: says nothing would change and writes nothing -----------------------------
    before = _tree(p, skip=("run/nodetune/agent.log",))
    _, changed, out = c.play("--check", nodetune_agent_config={"sample_interval_s": 0.5, "diagnose_every_s": 2,
                                                                 "window_s": 5})
    assert changed >= 1 and "-window_s = 4\n+window_s = 5" in out  # the diff of the would-be change
    assert _tree(p, skip=("run/nodetune/agent.log",)) == before
    assert c.pid() == pid
    t3 = time.monotonic()

    # -- absent, keeping the history database --------------------------------------------------------
    state = c.root / "var/lib/nodetune"
    (state / "history.sqlite").write_bytes(b"SQLite format 3\x00")  # what the agent's history keeps
    _, changed, out = c.play(nodetune_state="absent", nodetune_keep_history=True)
    assert changed > 0
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             timeout=15, what="the agent to exit")
    assert knob_values(c.root) == knobs_before  # rolled back
    left = sorted(_tree(p, skip=("root",)))
    # What the test itself made (the parents) and the Prometheus host's files (another play's
    # job) are all that is left outside the node's root.
    prometheus_side = {"etc/prometheus", "etc/prometheus/file_sd", "etc/prometheus/file_sd/nodetune.json",
                       "etc/prometheus/rules", "etc/prometheus/rules/nodetune.rules.yml", "var", "var/lib",
                       "var/lib/grafana", "var/lib/grafana/dashboards", "var/lib/grafana/dashboards/nodetune.json"}
    parents = {str(Path(d).parents[i]) for d in PARENTS for i in range(len(Path(d).parts) - 1)} | set(PARENTS)
    assert set(left) - prometheus_side == parents, left
    assert sorted(x.name for x in state.iterdir()) == ["history.sqlite"]
    # -- absent again, not keeping it --------------------------------------------------------------
    c.play(nodetune_state="absent")
    assert not state.exists()
    t4 = time.monotonic()
    print(f"converge timings: install {t1 - t0:.0f}s, again {t2 - t1:.0f}s, check {t3 - t2:.0f}s, "  # noqa: T201
          f"absent x2 {t4 - t3:.0f}s")
