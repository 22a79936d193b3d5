"""THP and hugetlb pools: plan, apply, shortfall read-back, rollback."""

from __future__ import annotations

import pytest

from nodetune.tuners.contract import CHANGE, KEEP, SKIP
from nodetune.tuners.errors import TargetError
from nodetune.tuners.plan import make_plan
from nodetune.tuners.profiles import profile_from_data
from tests.support.tuners_support import (
    StingyHost,
    changed,
    ctx_for,
    dgx_copy,
    engine_for,
    journal_for,
    knob_values,
    laptop_with_job,
)


def plan(ctx, hp):
    return make_plan(ctx, profile_from_data({"hugepages": hp}, "t", "t.toml"), journal_for(ctx.host.root).load())


def test_thp_plan_reads_the_bracketed_choice(tmp_path):
    laptop_with_job(tmp_path)
    rows = {c.knob.label: c
            for c in plan(ctx_for(tmp_path), {"thp_enabled": "always", "thp_defrag": "madvise"}).changes}
    assert (rows["THP enabled"].current, rows["THP enabled"].target, rows["THP enabled"].action) == (
        "madvise", "always", CHANGE)
    assert rows["THP defrag"].action == KEEP


def test_thp_option_the_kernel_lacks_is_skipped(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.attr("/sys/kernel/mm/transparent_hugepage/defrag", "always [madvise] never")  # an old kernel
    rows = {c.knob.label: c for c in plan(ctx_for(tmp_path), {"thp_defrag": "defer+madvise"}).changes}
    assert rows["THP defrag"].action == SKIP and "not offered" in rows["THP defrag"].reason


def test_thp_absent_is_reported_not_an_error(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.remove("/sys/kernel/mm/transparent_hugepage/enabled")
    (c,) = plan(ctx_for(tmp_path), {"thp_enabled": "always"}).changes
    assert c.action == SKIP and "not present" in c.reason


def test_hugetlb_per_node_on_two_sockets(tmp_path):
    dgx = dgx_copy(tmp_path)
    tmp_path = dgx.node.root
    ctx = ctx_for(tmp_path)
    p = plan(ctx, {"hugetlb_pages_per_node": 512})
    assert [(c.knob.label, c.current, c.target, c.action) for c in p.changes] == [
        ("hugetlb 2048kB pages node0", "0", "512", CHANGE), ("hugetlb 2048kB pages node1", "0", "512", CHANGE)]
    res = engine_for(ctx).apply(p.changes, "t")
    assert [a.actual for a in res.applied] == ["512", "512"] and res.warnings == []


def test_hugetlb_shortfall_is_a_warning_with_the_granted_count(tmp_path):
    laptop_with_job(tmp_path)
    before = knob_values(tmp_path)
    ctx = ctx_for(StingyHost(str(tmp_path), cap=300))
    res = engine_for(ctx).apply(plan(ctx, {"hugetlb_pages_per_node": 1024}).changes, "t")
    (a,) = res.applied
    assert (a.target, a.actual) == ("1024", "300")
    assert len(res.warnings) == 1 and "asked for 1024, the kernel granted 300 (short by 724" in res.warnings[0]
    rows = engine_for(ctx).verify().rows
    assert rows[0].set_value == "300" and rows[0].status == "ok"  # verify compares with what was granted
    engine_for(ctx).rollback()
    assert changed(before, knob_values(tmp_path)) == {}


def test_hugetlb_is_never_lowered_without_allow_lower(tmp_path):
    fn = laptop_with_job(tmp_path)
    fn.attr("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages", 2048)
    (c,) = plan(ctx_for(tmp_path), {"hugetlb_pages_per_node": 1024}).changes
    assert c.action == KEEP and "2048 > 1024" in c.reason
    (c,) = plan(ctx_for(tmp_path), {"hugetlb_pages_per_node": 1024, "allow_lower": True}).changes
    assert c.action == CHANGE


def test_hugetlb_1g_pages_and_an_unknown_node(tmp_path):
    dgx = dgx_copy(tmp_path)
    tmp_path = dgx.node.root
    p = plan(ctx_for(tmp_path), {"hugetlb_pages_per_node": 4, "hugetlb_page_size_kb": 1048576, "nodes": [1]})
    assert [c.knob.path for c in p.changes] == [
        "/sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages"]
    with pytest.raises(TargetError, match="NUMA node 7: not present on this node \\(nodes: 0-1\\)"):
        plan(ctx_for(tmp_path), {"hugetlb_pages_per_node": 4, "nodes": [7]})
