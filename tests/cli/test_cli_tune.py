"""`nodetune tune ...` and `nodetune exec` through the CLI, on fake roots, with injected NVML/affinity."""

from __future__ import annotations

import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from nodetune.cli.errors import UserError
from nodetune.cli.tune import TuneDeps, register
from nodetune.probes.host import Host
from nodetune.tuners.affinity import NEEDS_CAP, TreeAffinity
from nodetune.tuners.errors import KnobFailed
from tests.support.fakenvml import FakeNvml, hgx_gpus
from tests.support.faketree import FakeProc, laptop
from tests.support.tuners_support import (
    RejectingHost,
    changed,
    dgx_copy,
    knob_values,
    laptop_with_job,
)

runner = CliRunner()


def cli(deps: TuneDeps | None = None) -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def version() -> None:  # a second command keeps `tune` a sub-command, as in the real app
        typer.echo("x")

    register(app, deps)
    return app


def run(args, deps=None, root=None):
    args = list(args) + (["--root", str(root)] if root is not None else [])
    return runner.invoke(cli(deps), args)


def user_error(result) -> str:
    assert isinstance(result.exception, UserError), (result.exit_code, result.output, result.exception)
    return str(result.exception)


def test_profiles_are_listed(tmp_path):
    laptop(tmp_path)
    r = run(["tune", "profiles"], root=tmp_path)
    assert r.exit_code == 0
    assert [line.split()[0] for line in r.output.splitlines()] == [
        "data-loading", "energy-saver", "inference-latency", "training-throughput"]


def test_plan_apply_verify_status_rollback(tmp_path):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    args = ["--profile", "data-loading", "--pid", "4242", "--pin-cpus", "0-3", "--data-path", "/home"]
    r = run(["tune", "plan", *args], root=tmp_path)
    assert r.exit_code == 0, r.output
    assert "affinity pid 4242 (python), 3 threads" in r.output and "governor cpu0-7" in r.output
    assert "read_ahead_kb dm-0, sda" in r.output and "io_uring: enabled" in r.output
    assert knob_values(tmp_path) == before  # plan changes nothing

    r = run(["tune", "apply", *args], root=tmp_path)
    assert r.exit_code == 0, r.output
    assert "21 change(s) applied" in r.output
    assert len(changed(before, knob_values(tmp_path))) == 21

    r = run(["tune", "verify"], root=tmp_path)
    assert r.exit_code == 0 and r.output.count(" ok ") == 4  # four grouped rows, all ok

    r = run(["tune", "status", "--json"], root=tmp_path)
    st = json.loads(r.output)
    assert [(t["profile"], t["state"], t["active"]) for t in st["txns"]] == [("data-loading", "applied", 21)]
    assert {a["knob"]["group"] for a in st["active"]} == {"readahead", "governor", "epp", "affinity"}

    r = run(["tune", "rollback"], root=tmp_path)
    assert r.exit_code == 0 and "restored" in r.output
    assert knob_values(tmp_path) == before
    r = run(["tune", "verify", "--json"], root=tmp_path)
    assert {row["status"] for row in json.loads(r.output)["rows"]} == {"restored"}


def test_plan_json_is_machine_readable(tmp_path):
    laptop_with_job(tmp_path)
    r = run(["tune", "plan", "--profile", "training-throughput", "--json"], root=tmp_path)
    data = json.loads(r.output)
    assert data["profile"] == "training-throughput"
    assert {c["action"] for c in data["changes"]} <= {"change", "keep", "skip", "hold"}
    thp = next(c for c in data["changes"] if c["knob"]["label"] == "THP enabled")
    assert (thp["current"], thp["target"], thp["action"]) == ("madvise", "always", "change")


def test_explicit_journal_file(tmp_path):
    laptop_with_job(tmp_path / "root")
    j = tmp_path / "elsewhere" / "j.jsonl"
    r = run(["tune", "apply", "--pid", "4242", "--pin-cpus", "0-1", "--journal", str(j)], root=tmp_path / "root")
    assert r.exit_code == 0, r.output
    assert j.exists() and not (tmp_path / "root/var/lib/nodetune/journal.jsonl").exists()
    assert run(["tune", "rollback", "--journal", str(j)], root=tmp_path / "root").exit_code == 0


def test_verify_exits_1_on_drift(tmp_path):
    fn = laptop_with_job(tmp_path)
    assert run(["tune", "apply", "--profile", "training-throughput"], root=tmp_path).exit_code == 0
    r = run(["tune", "verify"], root=tmp_path)
    assert r.exit_code == 0
    fn.attr("/sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never")  # a reboot, or TuneD
    r = run(["tune", "verify"], root=tmp_path)
    assert r.exit_code == 1 and "restored" in r.output
    fn.attr("/sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]")
    r = run(["tune", "verify", "--json"], root=tmp_path)
    assert r.exit_code == 1
    assert [row["live"] for row in json.loads(r.output)["rows"] if row["knob"]["label"] == "THP enabled"] == ["never"]


# -- errors: one line, non-zero, nothing changed ---------------------------------------------------

def test_unknown_profile(tmp_path):
    laptop(tmp_path)
    msg = user_error(run(["tune", "plan", "--profile", "fastest"], root=tmp_path))
    assert msg.startswith("unknown profile 'fastest' (available: data-loading, energy-saver")


def test_no_profile_and_no_target(tmp_path):
    laptop(tmp_path)
    assert "give --profile NAME (available: data-loading" in user_error(run(["tune", "apply"], root=tmp_path))


def test_unknown_knob_in_a_profile_file_names_file_and_key(tmp_path):
    laptop(tmp_path / "root")
    f = tmp_path / "mine.toml"
    f.write_text('[power]\ngovernor = "performance"\nturbo = true\n')
    msg = user_error(run(["tune", "apply", "--profile", str(f)], root=tmp_path / "root"))
    assert msg.startswith(f"{f}: [power] unknown key 'turbo'")
    assert not (tmp_path / "root/var/lib/nodetune").exists()


def test_device_that_does_not_exist(tmp_path):
    fn = laptop(tmp_path).node
    fn.mountinfo([])
    before = knob_values(tmp_path)
    msg = user_error(run(["tune", "apply", "--profile", "data-loading", "--data-path", "/data"], root=tmp_path))
    assert msg == "no block device behind /data: no such file or directory on this node (a typo?)"
    assert knob_values(tmp_path) == before


def test_missing_pid_and_bad_pin_cpus(tmp_path):
    laptop_with_job(tmp_path)
    assert (user_error(run(["tune", "plan", "--pid", "31337", "--pin-cpus", "0"], root=tmp_path))
            == "pid 31337: no such process")
    assert "[pinning] cpus" in user_error(run(["tune", "plan", "--pid", "4242", "--pin-cpus", "zero"], root=tmp_path))


def test_a_knob_write_failure_rolls_back_and_says_which(tmp_path):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    deps = TuneDeps(host=lambda root: RejectingHost(root, reject="cpu6/cpufreq/scaling_governor",
                                                    why="permission denied (needs root)"))
    msg = user_error(run(["tune", "apply", "--profile", "training-throughput"], deps, root=tmp_path))
    assert msg.startswith("apply failed at governor cpu6: /sys/devices/system/cpu/cpu6/cpufreq/scaling_governor: "
                          "permission denied (needs root)")
    assert "rolled back 7 change(s); node unchanged" in msg and "\n" not in msg  # THP enabled + governor cpu0-5
    assert knob_values(tmp_path) == before


def test_affinity_permission_says_cap_sys_nice(tmp_path):
    laptop_with_job(tmp_path)

    class NoCap(TreeAffinity):
        def set(self, pid, tid, cpus):
            raise KnobFailed(f"affinity of pid {pid} tid {tid}: permission denied ({NEEDS_CAP})")

    deps = TuneDeps(affinity=NoCap(Host(str(tmp_path))))
    before = knob_values(tmp_path)
    msg = user_error(run(["tune", "apply", "--pid", "4242", "--pin-cpus", "0-3"], deps, root=tmp_path))
    assert "permission denied (needs root or CAP_SYS_NICE)" in msg and "node unchanged" in msg
    assert knob_values(tmp_path) == before


def test_rollback_that_cannot_restore_keeps_the_entry(tmp_path):
    fn = laptop_with_job(tmp_path)
    assert run(["tune", "apply", "--profile", "energy-saver"], root=tmp_path).exit_code == 0
    epb = fn.p("/sys/devices/system/cpu/cpu2/power/energy_perf_bias")
    epb.unlink()
    epb.mkdir()
    msg = user_error(run(["tune", "rollback"], root=tmp_path))
    assert msg.startswith("epb cpu2: could not restore 6:") and "run rollback again" in msg
    epb.rmdir()
    epb.write_text("0\n")
    assert run(["tune", "rollback"], root=tmp_path).exit_code == 0
    assert knob_values(tmp_path)["/sys/devices/system/cpu/cpu2/power/energy_perf_bias"] == 6


def test_tuned_running_needs_force(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.process(FakeProc(pid=812, comm="tuned", cmdline=["/usr/sbin/tuned"], uid=0, cpus=list(range(8)), cgroup=""))
    fn.write("/proc/812/comm", "tuned\n")
    fn.attr("/run/tuned/tuned.pid", 812)
    before = knob_values(tmp_path)
    r = run(["tune", "plan", "--profile", "training-throughput"], root=tmp_path)
    assert "TuneD (pid 812) also manages thp" in r.output and "--force" in r.output
    msg = user_error(run(["tune", "apply", "--profile", "training-throughput"], root=tmp_path))
    assert msg.startswith("TuneD (pid 812) manages epb, epp, governor, thp") and msg.endswith("nothing changed")
    assert knob_values(tmp_path) == before
    r = run(["tune", "apply", "--profile", "training-throughput", "--force"], root=tmp_path)
    assert r.exit_code == 0 and changed(before, knob_values(tmp_path))


# -- GPU power: profile asks, config allows ----------------------------------------------------------

def test_gpu_power_needs_the_config_or_flag(tmp_path):
    pre = dgx_copy(tmp_path)
    nv = FakeNvml(hgx_gpus(pre.gpu_addresses))
    deps = TuneDeps(nvml=nv)
    root = pre.node.root
    r = run(["tune", "plan", "--profile", "energy-saver", "--json"], deps, root=root)
    gpu_rows = [c for c in json.loads(r.output)["changes"] if c["knob"]["group"] == "gpu_power"]
    assert len(gpu_rows) == 8 and {c["action"] for c in gpu_rows} == {"skip"}
    assert r.exit_code == 0
    r = run(["tune", "apply", "--profile", "energy-saver"], deps, root=root)
    assert r.exit_code == 0 and all(g.power_limit_set_mw is None for g in nv.gpus)

    pre.node.write("/etc/nodetune/config.toml", "[tune]\nallow_gpu_power = true\n")
    r = run(["tune", "plan", "--profile", "energy-saver", "--json"], deps, root=root)
    assert {c["action"] for c in json.loads(r.output)["changes"] if c["knob"]["group"] == "gpu_power"} == {"change"}
    assert run(["tune", "rollback"], deps, root=root).exit_code == 0


def test_gpu_power_with_the_flag_applies_and_rolls_back(tmp_path):
    pre = dgx_copy(tmp_path)
    nv = FakeNvml(hgx_gpus(pre.gpu_addresses))
    deps = TuneDeps(nvml=nv)
    r = run(["tune", "apply", "--profile", "energy-saver", "--allow-gpu-power"], deps, root=pre.node.root)
    assert r.exit_code == 0, r.output
    assert [g.power_limit_set_mw for g in nv.gpus] == [525000] * 8
    assert run(["tune", "rollback"], deps, root=pre.node.root).exit_code == 0
    assert [g.power_limit_set_mw for g in nv.gpus] == [700000] * 8


def test_gpu_jobs_pinning_through_nvml(tmp_path):
    pre = dgx_copy(tmp_path)
    pre.node.process(FakeProc(pid=5000, comm="python", cmdline=["python"], cpus=list(range(224)), starttime=9))
    nv = FakeNvml(hgx_gpus(pre.gpu_addresses))
    nv.gpus[0].processes = [(5000, 1 << 30)]
    r = run(["tune", "apply", "--gpu-jobs"], TuneDeps(nvml=nv), root=pre.node.root)
    assert r.exit_code == 0, r.output
    assert TreeAffinity(Host(str(pre.node.root))).get(5000, 5000) == list(range(56)) + list(range(112, 168))


# -- recommend ----------------------------------------------------------------------------------------

def test_recommend_from_an_advice_file(tmp_path):
    laptop_with_job(tmp_path / "root")
    f = tmp_path / "advice.json"
    # the shape `nodetune diagnose --json` writes: advice sits in each finding
    f.write_text(json.dumps({"version": 1, "gpus": [], "findings": [{"kind": "numa_misplaced", "advice": [
        {"tuner": "pinning", "params": {"pids": [4242], "cpus": "0-1"}, "text": "pin it"},
        {"tuner": "hugepages", "params": {"thp_enabled": "always"}, "text": "THP"}]}]}))
    before = knob_values(tmp_path / "root")
    r = run(["tune", "recommend", "--advice", str(f)], root=tmp_path / "root")
    assert r.exit_code == 0, r.output
    assert "plan: recommended (diagnosis advice)" in r.output and "affinity pid 4242" in r.output
    assert knob_values(tmp_path / "root") == before


def test_recommend_from_an_injected_diagnosis(tmp_path):
    laptop_with_job(tmp_path)
    seen = []

    def diagnose(root, seconds):
        seen.append((root, seconds))
        return [{"tuner": "power", "params": {"governor": "performance"}, "text": "full clocks"},
                {"tuner": None, "params": {}, "text": "use DALI"}]

    r = run(["tune", "recommend", "--json", "--seconds", "3"], TuneDeps(diagnose=diagnose), root=tmp_path)
    data = json.loads(r.output)
    assert seen == [(str(tmp_path), 3.0)]
    assert {c["knob"]["group"] for c in data["changes"]} == {"governor"}
    assert any("use DALI" in n for n in data["notes"])


# -- exec ---------------------------------------------------------------------------------------------

def test_exec_binds_and_execs_through_the_seams(tmp_path):
    pre = dgx_copy(tmp_path)
    calls: dict[str, list] = {"aff": [], "numa": [], "exec": []}

    class Sched:
        @staticmethod
        def set_preferred_node(n):
            calls["numa"].append(n)

    deps = TuneDeps(set_affinity=lambda pid, cpus: calls["aff"].append(list(cpus)), libnuma=lambda: Sched,
                    execvp=lambda f, argv: calls["exec"].append(argv))
    r = run(["exec", "--gpu", "4", "--root", str(pre.node.root), "--", "python3", "train.py", "--lr", "1e-3"], deps)
    assert r.exit_code == 0, r.output
    assert calls["exec"] == [["python3", "train.py", "--lr", "1e-3"]]
    assert calls["numa"] == [1] and calls["aff"] == [list(range(56, 112)) + list(range(168, 224))]


def test_exec_dry_run_and_unknown_gpu(tmp_path):
    pre = dgx_copy(tmp_path)
    r = run(["exec", "--gpu", "0", "--dry-run", "--root", str(pre.node.root), "--", "true"])
    assert r.exit_code == 0 and "GPU 0 (0000:18:00.0): CPUs 0-55,112-167, NUMA node 0; would run: true" in r.output
    msg = user_error(run(["exec", "--gpu", "9", "--root", str(pre.node.root), "--", "true"]))
    assert msg.startswith("GPU 9: no such GPU on this node")


def test_root_must_be_a_directory(tmp_path):
    assert user_error(run(["tune", "status"], root=tmp_path / "nope")).endswith("not a directory")


@pytest.fixture(autouse=True)
def _no_stray_trees(tmp_path):
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_cli_surfaces_a_lost_change_and_needs_force_over_an_open_transaction(tmp_path):
    """The engine's refusals reach the user: status/verify exit 1 on a damaged journal, rollback
    names the knob and exits 2, a different profile over an open transaction needs --force."""
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    assert run(["tune", "apply", "--profile", "data-loading"], root=tmp_path).exit_code == 0
    r = run(["tune", "apply", "--profile", "energy-saver"], root=tmp_path)
    assert "--force" in user_error(r) or "open" in user_error(r)
    journal = tmp_path / "var/lib/nodetune/journal.jsonl"
    lines = journal.read_text().splitlines()
    # damage every record of the first change (intent and applied): its original is lost
    first = next(json.loads(x) for x in lines if '"intent"' in x)
    damaged = [("garbage " + x) if first["knob"]["id"] in x else x for x in lines]
    journal.write_text("\n".join(damaged) + "\n")
    assert run(["tune", "status"], root=tmp_path).exit_code == 1
    assert run(["tune", "verify"], root=tmp_path).exit_code == 1
    msg = user_error(run(["tune", "rollback"], root=tmp_path))
    assert "journal line is damaged" in msg or "lost" in msg
    after = knob_values(tmp_path)
    assert sum(1 for k in before if before[k] != after.get(k)) == 1  # only the lost knob stays changed


def test_command_line_targets_join_any_tuners_table_by_its_field_types() -> None:
    """with_overrides names no tuner: a target is "table.field" of a tuner's params dataclass, joined
    by the field's type (a list gains items, ids sorted; a flag is set by either; a value is replaced)."""
    from nodetune.cli.tune_session import with_overrides
    from nodetune.tuners.errors import ProfileError
    from nodetune.tuners.profiles import Profile

    prof = with_overrides(Profile(name="p", source="test"), {
        "pinning.pids": [9, 3, 9], "pinning.cgroups": ["/b", "/a"], "pinning.gpu_jobs": True, "pinning.gpus": [1],
        "readahead.paths": ["/data"], "hugepages.nodes": [1, 0], "power.governor": "performance", "gpu.gpus": None})
    assert (prof.pinning.pids, prof.pinning.cgroups, prof.pinning.gpu_jobs, prof.pinning.gpus) == (
        [3, 9], ["/b", "/a"], True, [1])
    assert prof.readahead.paths == ["/data"] and prof.hugepages.nodes == [1, 0] and prof.power.governor == "performance"
    assert prof.gpu is None  # not given: the table is not made
    again = with_overrides(prof, {"pinning.pids": [1], "readahead.paths": ["/home", "/data"]})
    assert again.pinning.pids == [1, 3, 9] and again.readahead.paths == ["/data", "/home"]
    with pytest.raises(ProfileError, match=r"command line: \[readahead\] paths: 'rel' is not an absolute path"):
        with_overrides(Profile(name="p", source="test"), {"readahead.paths": ["rel"]})
    with pytest.raises(RuntimeError, match="no tuner's profile table has that field"):
        with_overrides(Profile(name="p", source="test"), {"pinning.nope": [1]})
