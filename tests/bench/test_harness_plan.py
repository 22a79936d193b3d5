"""The harness's pure parts: offsets, rounds, command lines, recordings' files, nvidia-smi parsing,
the exporters' names and configs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bench.harness.agents import (
    Exporter,
    agent_config,
    parse_target,
)
from bench.harness.gpus import is_calm, parse_query
from bench.harness.launch import Offset
from bench.harness.record import RecordSpec, parse_report, verdict_line
from bench.harness.workloads import (
    CPU_STANDIN,
    ArgvOptions,
    Found,
    Slot,
    discover,
    plan_rounds,
    select,
    workload_argv,
)


def test_offsets():
    assert Offset.parse("launch+2") == Offset("launch", 2.0)
    assert Offset.parse("ready+0.5") == Offset("ready", 0.5)
    assert Offset.parse("ready") == Offset("ready", 0.0)
    for bad in ("start+2", "ready+x", "launch+-1", ""):
        with pytest.raises(ValueError):
            Offset.parse(bad)


def _found(*names: str) -> dict[str, Found]:
    return {n: Found(Path(f"/w/{n}.py"), (n, None)) for n in names}


def test_sequential_rounds_put_each_workload_alone_on_the_gpu_and_all_gpu_ones_last():
    found = _found("compute_bound", "allreduce", "io_starved")
    plan = plan_rounds(list(found), found, ngpus=2, concurrent=False, keep_order=False, gpu=1)
    assert [[(s.name, s.device, s.gpus, s.where) for s in r] for r in plan.rounds] == [
        [("compute_bound", "cuda:1", [1], "cuda:1")], [("io_starved", "cuda:1", [1], "cuda:1")],
        [("allreduce", "cuda:0", [0, 1], "all")]]
    assert plan.skipped == []


def test_one_gpu_skips_the_all_gpu_workloads():
    found = _found("compute_bound", "straggler_2gpu")
    plan = plan_rounds(list(found), found, ngpus=1, concurrent=False, keep_order=False)
    assert [[s.name for s in r] for r in plan.rounds] == [["compute_bound"]]
    assert plan.skipped == ["straggler_2gpu"]


def test_concurrent_rounds_pair_workloads_in_the_concurrent_order_unless_told():
    found = _found("cpu_starved", "memory_bound", "io_starved", "compute_bound", "startup")
    plan = plan_rounds(list(found), found, ngpus=2, concurrent=True, keep_order=False)
    assert [[(s.name, s.device) for s in r] for r in plan.rounds] == [
        [("compute_bound", "cuda:0"), ("io_starved", "cuda:1")],
        [("memory_bound", "cuda:0"), ("cpu_starved", "cuda:1")],
        [("startup", "cuda:0")]]
    kept = plan_rounds(list(found), found, ngpus=2, concurrent=True, keep_order=True)
    assert [s.name for s in kept.rounds[0]] == ["cpu_starved", "memory_bound"]


def test_select():
    found = discover()
    assert select(found, "io_starved,compute_bound", None) == ["io_starved", "compute_bound"]
    assert "compute_bound" not in select(found, None, "compute_bound, memory_bound")
    with pytest.raises(SystemExit, match="unknown workload"):
        select(found, "nope", None)


def test_workload_argv():
    slot = Slot("io_starved", Path("/w/io_starved.py"), ("data_starved", "io_input"), "cuda:1", [1])
    o = ArgvOptions(python="py", seconds=61.0, ngpus=2, io_data_dir="/data")
    assert workload_argv(slot, o) == ["py", "/w/io_starved.py", "--seconds", "61.0", "--device", "cuda:1",
                                      "--data-dir", "/data"]
    allr = Slot("allreduce", Path("/w/allreduce.py"), ("communication_bound", None), "cuda:0", [0, 1])
    assert workload_argv(allr, o)[-2:] == ["--nproc", "2"]
    fake = ArgvOptions(python="py", seconds=5.0, ngpus=1, fake=True)
    assert workload_argv(slot, fake) == ["py", str(CPU_STANDIN), "--seconds", "5.0", "--device", "cuda:1"]
    tmpl = ArgvOptions(python="py", seconds=5.0, ngpus=2, template="{python} -X {path} {name} {device} {extra}")
    assert workload_argv(allr, tmpl) == ["py", "-X", "/w/allreduce.py", "allreduce", "cuda:0", "--nproc", "2"]


def test_record_spec_files_and_arguments(tmp_path):
    d = RecordSpec("diagnose", "startup-launch-1", 5, tmp_path, interval=0.5)
    assert d.argv() == ["diagnose", "--seconds", "5", "--interval", "0.5", "--json", "--save",
                        str(tmp_path / "startup-launch-1.json.gz")]
    assert (d.report_path.name, d.stderr_path.name) == ("startup-launch-1.json", "startup-launch-1.err")
    s = RecordSpec("snapshot", "hf_generate", 60, tmp_path, interval=0.5, note="hf_generate from launch")
    assert s.argv() == ["snapshot", "-o", str(tmp_path / "hf_generate.json.gz"), "--seconds", "60",
                        "--interval", "0.5", "--note", "hf_generate from launch"]
    assert s.stderr_path.name == "hf_generate.snap.err"
    assert RecordSpec("diagnose", "t", 1, tmp_path, save_window=False).argv() == ["diagnose", "--seconds", "1",
                                                                                   "--json"]


def test_parse_report_tolerates_text_before_the_json():
    assert parse_report('warming up\n{"gpus": []}\n') == ({"gpus": []}, None)
    assert parse_report("") == (None, "no output")
    assert parse_report("no json here") == (None, "no JSON object in output")
    assert parse_report("[1, 2]")[1] == "JSON is not an object"
    assert parse_report("x {bad")[1].startswith("bad JSON")


def test_verdict_line():
    rep = {"gpus": [{"index": 0, "verdict": "startup", "cause": "startup", "confidence": 0.85, "healthy": False,
                     "borderline": False, "attribution": {"text": "import 3 s"}}]}
    assert verdict_line(rep) == "GPU0 startup/startup conf 0.85 healthy False border False | import 3 s"
    assert verdict_line({"gpus": []}) == "no GPU in the report"


def test_nvidia_smi_query_parsing_and_calm():
    state = parse_query("0, 0, 3\n1, [N/A], 5\n\n2, 7, 900\n")
    assert state == {0: (0.0, 3.0), 2: (7.0, 900.0)}
    assert parse_query("") is None
    base = {0: (0.0, 3.0), 2: (0.0, 400.0)}
    assert not is_calm(state, base)
    assert is_calm({0: (0.0, 500.0), 2: (0.0, 900.0)}, base)
    assert not is_calm({}, base)


def test_exporters():
    assert parse_target("nodetune agent, stacks on=123:9847") == Exporter("nodetune agent, stacks on", 123, 9847)
    with pytest.raises(ValueError):
        parse_target("agent:9847")
    cfg = tomllib.loads(agent_config("/tmp/h.sqlite", stacks=False, listen="127.0.0.1:9848"))
    assert cfg == {"agent": {"listen": "127.0.0.1:9848", "history_path": "/tmp/h.sqlite", "stacks": False}}
    assert tomllib.loads(agent_config("/x"))["agent"] == {"history_path": "/x", "stacks": True}


def test_the_agent_config_is_one_the_agent_accepts():
    from nodetune.config.loader import parse_config

    text = agent_config("/tmp/h.sqlite", stacks=False, listen="127.0.0.1:9848")
    agent = parse_config(text, "bench").sections["agent"]
    assert (agent.listen, agent.history_path, agent.stacks) == ("127.0.0.1:9848", "/tmp/h.sqlite", False)
