"""Deployment: the systemd units, /etc/default/nodetune and the Ansible role, against the real CLI.

- the units' Exec lines name real `nodetune` subcommands and flags (the CLI's own --help);
- the units' commands, expanded as systemd would from the shipped defaults, run on a fake node:
  apply then the stop command restores every knob; hold-latency holds until SIGTERM and exits 0;
- `systemd-analyze verify` and `systemd-analyze security --offline` on the unit files;
- `ansible-playbook --syntax-check`, and a --check run of the role against localhost (no root,
  no network, nothing written).
Tests that need a tool skip with the reason when it is absent.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.faketree import laptop
from tests.support.tuners_support import knob_values

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
ANSIBLE = REPO / "ansible"
ROLE = ANSIBLE / "roles" / "nodetune"
UNITS = ["nodetune-tune.service", "nodetune-latency.service"]
BIN = "/usr/local/bin/nodetune"
MAIN = "from nodetune.cli.app import main; main()"


# -- reading units and environment files ------------------------------------------------------

def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit syntax: [Section], Key=value, repeated keys accumulate, '#'/';' comments,
    trailing-backslash continuation. An empty assignment resets the list, as systemd does."""
    sections: dict[str, dict[str, list[str]]] = {}
    cur: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            cur = sections.setdefault(line[1:-1], {})
            continue
        assert cur is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not Key=value: {line!r}"
        key, value = key.strip(), value.strip()
        if value == "":
            cur[key] = []  # "Key=" resets
        else:
            cur.setdefault(key, []).append(value)
    return sections


def read_env_file(path: Path) -> dict[str, str]:
    """EnvironmentFile= syntax as the shipped file uses it: KEY=value, optional double quotes."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        env[key] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    return env


def expand(cmd: str, env: dict[str, str]) -> list[str]:
    """An Exec line's argv as systemd builds it: "${VAR}" is one word, a bare "$VAR" word is split
    at whitespace (and vanishes when empty)."""
    argv: list[str] = []
    for word in shlex.split(cmd):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            argv += env.get(m.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda v: env.get(v.group(1), ""), word))
    return argv


def unit_env(unit: dict[str, dict[str, list[str]]], env_file: Path) -> dict[str, str]:
    """Environment= defaults, then the EnvironmentFile (which wins, as in systemd)."""
    env: dict[str, str] = {}
    for assignment in unit["Service"].get("Environment", []):
        for item in shlex.split(assignment):
            k, _, v = item.partition("=")
            env[k] = v
    env.update(read_env_file(env_file))
    return env


def exec_lines(unit: dict[str, dict[str, list[str]]]) -> list[tuple[str, str]]:
    svc = unit["Service"]
    return [(k, v) for k in ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop",
                             "ExecStopPost") for v in svc.get(k, [])]


# -- the real CLI ------------------------------------------------------------------------------

def cli_prefix() -> list[str]:
    """What /usr/local/bin/nodetune runs: the console script's main."""
    return [sys.executable, "-c", MAIN]


def help_text(subcommand: list[str]) -> str:
    r = subprocess.run([*cli_prefix(), *subcommand, "--help"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert r.returncode == 0, f"`nodetune {' '.join(subcommand)} --help` failed: {r.stderr.strip()[-400:]}"
    return r.stdout


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """(subcommand words, --flags) of a nodetune argv after the program."""
    words, flags = [], []
    for a in argv:
        if a.startswith("-"):
            flags.append(a.split("=", 1)[0])
        elif not flags:
            words.append(a)
    return words, flags


# -- units -------------------------------------------------------------------------------------

def test_console_script_has_the_units_commands():
    """The units run /usr/local/bin/nodetune, i.e. nodetune.cli.app:main: it must have `tune`."""
    r = subprocess.run([sys.executable, "-c", MAIN, "tune", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, (
        "`nodetune tune` is not mounted on the console script (agent/cli.py _register_optional "
        f"does not call cli_tune.register): the units' commands would fail. stderr: {r.stderr.strip()}")
    for sub in ("apply", "rollback", "hold-latency"):
        assert re.search(rf"^\s+{sub}\b", r.stdout, re.M), f"`nodetune tune --help` lists no {sub}"


def test_units_have_the_promised_shape():
    tune = read_unit(SYSTEMD / "nodetune-tune.service")
    svc = tune["Service"]
    assert svc["Type"] == ["oneshot"] and svc["RemainAfterExit"] == ["yes"]
    assert svc["EnvironmentFile"] == ["-/etc/default/nodetune"]
    assert svc["StateDirectory"] == ["nodetune"]  # /var/lib/nodetune: the CLI's default journal dir
    assert svc["ExecStart"] == [f"{BIN} tune apply --profile ${{NODETUNE_PROFILE}} $NODETUNE_ARGS"]
    assert svc["ExecStop"] == [f"{BIN} tune rollback"]
    assert "local-fs.target" in " ".join(tune["Unit"]["After"])
    # /sys must stay writable (THP, cpufreq, block queues) and /dev/nvidia* reachable.
    for key in ("ProtectKernelTunables", "PrivateDevices", "ProtectClock", "DynamicUser", "User"):
        assert key not in svc, f"nodetune-tune.service: {key}= would break tuning"
    assert "CAP_SYS_NICE" in " ".join(svc["CapabilityBoundingSet"])
    assert tune["Install"]["WantedBy"] == ["multi-user.target"]

    lat = read_unit(SYSTEMD / "nodetune-latency.service")["Service"]
    assert lat["Type"] == ["simple"] and lat["Restart"] == ["on-failure"]
    assert lat["ExecStart"] == [f"{BIN} tune hold-latency --us ${{NODETUNE_LATENCY_US}}"]
    assert lat["EnvironmentFile"] == ["-/etc/default/nodetune"]
    assert lat.get("KillSignal", ["SIGTERM"]) == ["SIGTERM"]  # what hold-latency waits for
    assert "/dev/cpu_dma_latency" in " ".join(lat["DeviceAllow"])


@pytest.mark.parametrize("unit_name", UNITS)
def test_unit_commands_are_real_cli_commands_and_flags(unit_name):
    unit = read_unit(SYSTEMD / unit_name)
    env = unit_env(unit, SYSTEMD / "nodetune.default")
    lines = exec_lines(unit)
    assert lines, f"{unit_name}: no Exec lines"
    for key, cmd in lines:
        argv = shlex.split(cmd.lstrip("-@:+!"))
        assert argv[0] == BIN, f"{unit_name} {key}: runs {argv[0]}, not {BIN}"
        words, flags = split_command(argv[1:])
        assert words, f"{unit_name} {key}: no subcommand"
        text = help_text(words)
        for flag in flags:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), \
                f"{unit_name} {key}: `nodetune {' '.join(words)}` has no {flag}"
        # What the shipped /etc/default/nodetune puts in $NODETUNE_ARGS must be flags of it too.
        for flag in split_command(expand(cmd, env)[1:])[1]:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), \
                f"{unit_name} {key}: NODETUNE_ARGS passes {flag}, unknown to the CLI"


def test_default_file_documents_flags_the_cli_has():
    """Every --flag the comments in nodetune.default suggest for NODETUNE_ARGS exists."""
    text = help_text(["tune", "apply"])
    suggested = set(re.findall(r"^#\s+(--[a-z][a-z-]+)", (SYSTEMD / "nodetune.default").read_text(), re.M))
    assert suggested, "nodetune.default suggests no flags (comments changed?)"
    assert {f for f in suggested if f not in text} == set()


def test_environment_variables_agree():
    """Units, the documented default file and the role's template use the same variables, each
    unit has a default for every variable it uses, and the default profile exists."""
    documented = read_env_file(SYSTEMD / "nodetune.default")
    template = set(re.findall(r"^([A-Z_]+)=", (ROLE / "templates" / "nodetune.default.j2").read_text(), re.M))
    used: set[str] = set()
    for name in UNITS:
        unit = read_unit(SYSTEMD / name)
        names = set()
        for _, cmd in exec_lines(unit):
            names |= set(re.findall(r"\$\{?([A-Z_]+)\}?", cmd))
        defaults = {a.split("=", 1)[0] for a in unit["Service"].get("Environment", [])}
        assert names <= defaults, f"{name}: no Environment= default for {names - defaults}"
        used |= names
    assert used == set(documented) == template
    assert (REPO / "tuners" / "profiles" / f"{documented['NODETUNE_PROFILE']}.toml").is_file()


# -- the units' commands, run on a fake node ------------------------------------------------------

def test_tune_unit_start_then_stop_restores_a_fake_node(tmp_path):
    """ExecStart with the shipped defaults applies to a fake node; ExecStop restores every knob."""
    laptop(tmp_path)
    before = knob_values(tmp_path)
    unit = read_unit(SYSTEMD / "nodetune-tune.service")
    env = unit_env(unit, SYSTEMD / "nodetune.default")
    root = ["--root", str(tmp_path)]

    def run(cmd: str) -> subprocess.CompletedProcess[str]:
        argv = expand(cmd, env)
        return subprocess.run([*cli_prefix(), *argv[1:], *root], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": "200"})

    r = run(unit["Service"]["ExecStart"][0])
    assert r.returncode == 0, r.stderr
    assert knob_values(tmp_path) != before, "the default profile changed nothing on the fake node"
    assert (tmp_path / "var/lib/nodetune/journal.jsonl").is_file()  # inside StateDirectory=nodetune
    r = run(unit["Service"]["ExecStop"][0])
    assert r.returncode == 0, r.stderr
    assert knob_values(tmp_path) == before


def test_latency_unit_holds_until_sigterm_on_a_fake_node(tmp_path):
    laptop(tmp_path)
    dev = tmp_path / "dev" / "cpu_dma_latency"
    dev.parent.mkdir(exist_ok=True)
    dev.write_bytes(struct.pack("=i", 2_000_000_000))
    unit = read_unit(SYSTEMD / "nodetune-latency.service")
    env = unit_env(unit, SYSTEMD / "nodetune.default")
    argv = expand(unit["Service"]["ExecStart"][0], env)
    p = subprocess.Popen([*cli_prefix(), *argv[1:], "--root", str(tmp_path)], stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        line = p.stderr.readline()  # printed once the cap is held
        assert "holding C-state latency cap" in line, line
        assert dev.read_bytes() == struct.pack("=i", int(env["NODETUNE_LATENCY_US"]))
        p.send_signal(signal.SIGTERM)  # what `systemctl stop` sends
        assert p.wait(timeout=30) == 0  # a clean stop: Restart=on-failure leaves it stopped
        assert "released" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# -- systemd-analyze ----------------------------------------------------------------------------

def _analyzable_units(tmp_path: Path, names: list[str] = UNITS) -> list[Path]:
    """Copies of the units whose /usr/local/bin/nodetune is an executable that exists here (verify
    checks the binary; nothing else in the text changes)."""
    stub = tmp_path / "bin" / "nodetune"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    out = []
    for name in names:
        dst = tmp_path / name
        dst.write_text((SYSTEMD / name).read_text().replace(BIN, str(stub)))
        out.append(dst)
    return out


@pytest.mark.integration
def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    units = _analyzable_units(tmp_path)
    r = subprocess.run([tool, "verify", *map(str, units)], capture_output=True, text=True, timeout=120)
    # verify exits 0 on unknown keys and bad values too: any message at all is a failure.
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


@pytest.mark.integration
@pytest.mark.parametrize("unit_name,ceiling", [("nodetune.service", 3.4), ("nodetune-tune.service", 3.5),
                                               ("nodetune-latency.service", 2.5)])
def test_systemd_analyze_security_exposure(tmp_path, unit_name, ceiling):
    """The hardening stays: systemd's own exposure score (0 best, 10 worst) below a ceiling."""
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    unit = next(u for u in _analyzable_units(tmp_path, [unit_name]) if u.name == unit_name)
    r = subprocess.run([tool, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    if r.returncode != 0 and not m and "offline" in r.stderr:
        pytest.skip(f"systemd-analyze too old for --offline: {r.stderr.strip()[:200]}")
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= ceiling, r.stdout


# -- Ansible ------------------------------------------------------------------------------------

def _ansible_playbook() -> str:
    here = Path(sys.executable).parent / "ansible-playbook"
    tool = str(here) if here.exists() else shutil.which("ansible-playbook")
    if not tool:
        pytest.skip("ansible-playbook not installed (pip install ansible-core)")
    return tool


def _ansible_env(tmp_path: Path) -> dict[str, str]:
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")  # no user or system ansible.cfg leaks in
    return {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local"),
            "ANSIBLE_REMOTE_TEMP": str(tmp_path / "remote"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_FORCE_COLOR": "0"}


@pytest.mark.integration
def test_ansible_syntax_check(tmp_path):
    tool = _ansible_playbook()
    r = subprocess.run([tool, "--syntax-check", str(ANSIBLE / "site.yml"),
                        "-i", str(ANSIBLE / "inventory.example.ini")],
                       capture_output=True, text=True, timeout=300, env=_ansible_env(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.integration
def test_ansible_role_check_mode_on_localhost(tmp_path):
    """The whole role in --check against localhost: connection local, no become, no OS packages,
    services not managed (no systemd as PID 1 in CI). The venv is this interpreter's, which has
    nodetune installed, so `nodetune topo --json` really runs. Check mode writes nothing."""
    tool = _ansible_playbook()
    inv = tmp_path / "inventory.ini"
    inv.write_text(f"[gpu_nodes]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    wheel = tmp_path / "nodetune-0.1.0-py3-none-any.whl"  # the controller-wheel branch (copy, then pip)
    wheel.write_bytes(b"")
    watched = [Path(p) for p in ("/etc/nodetune", "/etc/default/nodetune", BIN,
                                 "/etc/systemd/system/nodetune-tune.service")]
    existed = {p: p.exists() or p.is_symlink() for p in watched}
    extra = {"ansible_become": False, "nodetune_venv": sys.prefix, "nodetune_python": sys.executable,
             "nodetune_package": str(wheel), "nodetune_install_os_packages": False,
             "nodetune_service_manager": "none", "nodetune_latency_us": 0,
             "nodetune_config": {"idle_util_pct": 3, "starved_idle_share": 0.5}}
    r = subprocess.run([tool, "-i", str(inv), str(ANSIBLE / "site.yml"), "--check", "--diff", "-e", json.dumps(extra)],
                       capture_output=True, text=True, timeout=600, env=_ansible_env(tmp_path))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    assert re.search(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", out), out[-3000:]
    assert "idle_util_pct = 3" in out and 'NODETUNE_PROFILE="training-throughput"' in out  # rendered
    if (Path(sys.prefix) / "bin" / "nodetune").exists():
        assert re.search(r"\d+ GPU\(s\).*CPU\(s\) online", out), "topology summary missing"
    for p in watched:
        assert (p.exists() or p.is_symlink()) == existed[p], f"--check changed {p}"
