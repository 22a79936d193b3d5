"""Profiles: the shipped ones validate and plan on every preset; strict errors name file and key."""

from __future__ import annotations

import pytest

from nodetune.probes.host import Host
from nodetune.tuners.config import load_tune_config
from nodetune.tuners.errors import ProfileError
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import list_profiles, load_profile, parse_profile
from tests.support.faketree import laptop, vm_h200
from tests.support.tuners_support import ctx_for

SHIPPED = ["data-loading", "energy-saver", "inference-latency", "training-throughput"]


def test_shipped_profiles_are_listed_and_valid(tmp_path):
    items = list_profiles(Host(str(tmp_path)))
    assert [p.name for p in items] == SHIPPED
    assert all(p.source.startswith("shipped:") and not p.description.startswith("invalid") for p in items)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("preset", [laptop, vm_h200])
def test_every_shipped_profile_plans_on_every_preset(tmp_path, name, preset):
    preset(tmp_path)
    plan = make_plan(ctx_for(tmp_path), load_profile(Host(str(tmp_path)), name))
    assert plan.profile == name and plan.changes
    assert all(c.action in ("change", "keep", "skip", "hold") for c in plan.changes)
    if preset is vm_h200:  # no cpufreq: CPU knobs are "not present", never errors
        assert all(c.action == "skip" for c in plan.changes if c.knob.group in ("governor", "epp", "epb"))


def test_gpu_knobs_in_shipped_profiles_stay_opt_in(tmp_path):
    prof = load_profile(Host(str(tmp_path)), "energy-saver")
    assert prof.gpu is not None and prof.gpu.power_limit_pct == 75
    for name in ("training-throughput", "inference-latency", "data-loading"):
        assert load_profile(Host(str(tmp_path)), name).gpu is None


@pytest.mark.parametrize(("text", "error"), [
    ('[powr]\ngovernor = "performance"\n',
     "x.toml: unknown section [powr] (known: hugepages, readahead, power, gpu, pinning"),
    ('[power]\ngoverner = "performance"\n', "x.toml: [power] unknown key 'governer'"),
    ('[readahead]\nread_ahead_kb = "big"\n', "x.toml: [readahead] read_ahead_kb: expected an integer, found 'big'"),
    ('[pinning]\npids = [1, "2"]\n', "x.toml: [pinning] pids: expected a list of integers"),
    ("[hugepages]\nthp_enabled = true\n", "x.toml: [hugepages] thp_enabled: expected a string, found True"),
    ('[hugepages]\nthp_enabled = "sometimes"\n', "x.toml: [hugepages] thp_enabled: 'sometimes' is not one of always"),
    ("[power]\nepb = 42\n", "x.toml: [power] epb: 42 is outside 0 (performance) .. 15"),
    ('[pinning]\ncpus = "0-x"\n', "x.toml: [pinning] cpus: cpus: bad cpu list"),
    ("[gpu]\nlocked_clocks_mhz = [1980, 1000]\n", "x.toml: [gpu] locked_clocks_mhz: expected [min, max]"),
    ('description = 3\n', "x.toml: description: expected a string, found 3"),
    ("[power\n", "x.toml: not valid TOML"),
    ("power = 1\n", "x.toml: [power]: expected a table, found int"),
    ("colour = 1\n", "x.toml: unknown key 'colour' (known: description, allow_lower)"),
])
def test_invalid_profiles_fail_with_one_line_naming_file_and_key(text, error):
    with pytest.raises(ProfileError) as ei:
        parse_profile(text, "x", "x.toml")
    assert str(ei.value).startswith(error) and "\n" not in str(ei.value)


def test_node_profiles_dir_adds_and_overrides(tmp_path):
    fn = laptop(tmp_path).node
    fn.write("/etc/nodetune/profiles/site.toml", 'description = "our site"\n[power]\ngovernor = "performance"\n')
    fn.write("/etc/nodetune/profiles/data-loading.toml",
             'description = "site data loading"\n[readahead]\nread_ahead_kb = 16384\n')
    host = Host(str(tmp_path))
    names = {p.name: p for p in list_profiles(host)}
    assert names["site"].source == "/etc/nodetune/profiles/site.toml"
    dl = load_profile(host, "data-loading")
    assert dl.description == "site data loading" and dl.readahead is not None and dl.readahead.read_ahead_kb == 16384


def test_profile_by_path_unknown_name_and_bad_name(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[hugepages]\nthp_enabled = "never"\n')
    assert load_profile(Host(str(tmp_path)), str(f)).name == "mine"
    with pytest.raises(ProfileError, match="unknown profile 'nope' \\(available: data-loading, energy-saver"):
        load_profile(Host(str(tmp_path)), "nope")
    with pytest.raises(ProfileError, match="not a valid name"):
        load_profile(Host(str(tmp_path)), "..")
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(Host(str(tmp_path)), str(tmp_path / "missing.toml"))


def test_tune_config_allows_gpu_power(tmp_path):
    fn = laptop(tmp_path).node
    host = Host(str(tmp_path))
    assert load_tune_config(host).allow_gpu_power is False
    fn.write("/etc/nodetune/config.toml", "[tune]\nallow_gpu_power = true\n[diagnosis]\nbusy_sm_pct = 40\n")
    assert load_tune_config(host).allow_gpu_power is True
    # one loader for every command: a key of another section that is wrong is an error here too
    fn.write("/etc/nodetune/config.toml", "[tune]\nallow_gpu_power = true\n[thresholds]\nanything = 1\n")
    with pytest.raises(ProfileError, match=r"config.toml:3: unknown section \[thresholds\]"):
        load_tune_config(host)
    fn.write("/etc/nodetune/config.toml", '[tune]\nallow_gpu_power = "yes"\n')
    with pytest.raises(ProfileError, match=r"config.toml:2: \[tune\].allow_gpu_power: expected true or false"):
        load_tune_config(host)
