"""Diagnosis advice -> profile -> plan."""

from __future__ import annotations

import pytest

from nodetune.probes.host import Host
from nodetune.tuners.errors import ProfileError
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import load_profile
from nodetune.tuners.recommend import advice_items, profile_from_advice
from tests.support.tuners_support import ctx_for, laptop_with_job


class AdviceObj:  # shaped like nodetune.diagnosis.findings.Advice
    def __init__(self, text, tuner=None, params=None):
        self.text, self.tuner, self.params = text, tuner, params or {}


def test_advice_from_the_diagnosis_rules_becomes_a_plan(tmp_path):
    laptop_with_job(tmp_path)
    items = advice_items([
        AdviceObj("Pin the job's threads to CPUs local to its GPU.", "pinning", {"pids": [4242]}),
        {"tuner": "pinning", "params": {"pids": [4242], "cpus": "0-3"}, "text": "contention"},
        AdviceObj("Run CPUs at full clock while launching.", "power", {"governor": "performance"}),
        AdviceObj("restore the power limit", "power", {"gpu": 0, "gpu_power_limit_w": 700}),
        AdviceObj("Keep huge pages only if used", "hugepages", {"review": True}),
        AdviceObj("Use DALI."),
        AdviceObj("tune the NIC", "nic", {"rings": 4096}),
    ])
    prof, notes = profile_from_advice(items)
    assert prof.pinning is not None and prof.pinning.pids == [4242] and prof.pinning.cpus == "0-3"
    assert prof.power is not None and prof.power.governor == "performance"
    assert prof.gpu is not None and (prof.gpu.gpus, prof.gpu.power_limit_w) == ([0], 700)
    assert any("review = True is not a hugepages setting" in n for n in notes)
    assert any("no tuner acts on it): Use DALI." in n for n in notes)
    assert any("'nic'" in n for n in notes)
    plan = make_plan(ctx_for(tmp_path), prof)
    groups = {c.knob.group: c.action for c in plan.changes}
    assert groups["governor"] == "change" and groups["affinity"] == "change"
    assert groups["gpu_power"] == "skip"  # the config does not allow GPU power, and this root has no NVML


def test_profile_advice_starts_from_that_profile(tmp_path):
    laptop_with_job(tmp_path)
    items = advice_items([{"tuner": "profile", "params": {"profile": "data-loading"}, "text": "apply it"},
                          {"tuner": "readahead", "params": {"paths": ["/"], "read_ahead_kb": 8192}, "text": "io"}])
    prof, notes = profile_from_advice(items, lambda n: load_profile(Host(str(tmp_path)), n))
    assert prof.readahead is not None and prof.readahead.read_ahead_kb == 4096  # the profile's value came first
    assert any("planning 4096" in n for n in notes)
    assert prof.power is not None and prof.power.governor == "performance"


def test_advice_that_cannot_make_a_valid_profile_says_so():
    with pytest.raises(ProfileError, match="the diagnosis's advice does not make a valid plan"):
        profile_from_advice(advice_items([{"tuner": "power", "params": {"epb": 99}, "text": ""}]))
