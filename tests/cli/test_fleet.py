"""`nodetune fleet` against a real Prometheus on 127.0.0.1 scraping three agents on fake trees.

Node "a": one H200 busy with a Slurm job (compute_bound: nothing lost, no problem). Node "b": two
H200s; GPU 0 is held by a Slurm job but idle and its PCIe link runs x8 of x16, GPU 1 falls off the
bus, and its tuning journal cannot be read. Node "c": an H200 NVML cannot see (no driver) whose
link sysfs shows at Gen4 x8 of Gen5 x16, and a journal with a change whose restore failed. The
command must rank b's job first by GPU-hours lost, count only the minutes the agents ran whatever
the range, not count c's unseen GPU as lost, name each problem and exit 1; limited to node a it
exits 0; bad input, an unreachable Prometheus and a URL that is not Prometheus are one line and
exit 2. Skipped, with the reason, without `prometheus`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from nodetune.tuners.contract import Knob
from nodetune.tuners.transaction.journal import Journal
from nodetune.tuners.transaction.record import Record
from tests.support.agent_support import FAST, JOB_CGROUP, JOB_PID, free_port, start_agent, wait_for
from tests.support.fakenvml import FakeNvml, nvlink_pair_gpus
from tests.support.faketree import FakeProc, Preset, h200_pair, vm_h200

MAIN = "from nodetune.cli.app import main; main()"


def _node_b(root: Path) -> tuple[Preset, FakeNvml]:
    p = h200_pair(root)
    p.node.process(FakeProc(pid=JOB_PID, comm="python3", cmdline=["python3", "train.py"], cpus=list(range(32)),
                            cgroup=JOB_CGROUP, utime=100, stime=10))
    gpus = nvlink_pair_gpus(p.gpu_addresses)
    gpus[0].processes = [(JOB_PID, 20 << 30)]  # held, idle: GPU-hours lost
    gpus[0].pcie_width = 8
    (root / "var/lib/nodetune/journal.jsonl").mkdir(parents=True)  # unreadable journal
    (root / "dev").mkdir(exist_ok=True)
    (root / "dev/kmsg").write_text("3,1,1,-;NVRM: Xid (PCI:0000:00:06): 79, pid=1, GPU has fallen off the bus.\n")
    return p, FakeNvml(gpus)


def _node_c(root: Path) -> tuple[Preset, FakeNvml]:
    p = vm_h200(root)
    dev = f"/sys/devices/pci0000:00/{p.gpu_addresses[0]}"
    p.node.attr(f"{dev}/current_link_speed", "16.0 GT/s PCIe")
    p.node.attr(f"{dev}/current_link_width", 8)
    p.node.attr(f"{dev}/max_link_speed", "32.0 GT/s PCIe")
    p.node.attr(f"{dev}/max_link_width", 16)
    path = root / "var/lib/nodetune/journal.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    j = Journal(str(path))
    k = Knob("sysfs:/sys/kernel/mm/transparent_hugepage/enabled", "sysfs", "thp", "THP enabled",
             path="/sys/kernel/mm/transparent_hugepage/enabled", selector=True)
    change = {"seq": 0, "knob": k, "tuner": "hugepages", "original": "madvise", "target": "always"}
    for rec in (Record("t1", "begin", 1.0, profile="training-throughput"), Record("t1", "intent", 1.0, **change),
                Record("t1", "applied", 1.0, **change), Record("t1", "commit", 1.0, n=1),
                Record("t1", "restore_failed", 2.0, seq=0, knob=k, note="Permission denied")):
        j.append(rec)
    j.close()
    return p, FakeNvml([], init_error=12)


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", MAIN, "fleet", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory):
    tool = shutil.which("prometheus")
    if not tool:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    tmp = tmp_path_factory.mktemp("fleet")
    a = start_agent(tmp / "a", FAST)
    b = start_agent(tmp / "b", FAST, node=_node_b)
    c = start_agent(tmp / "c", FAST, node=_node_c)
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(lambda: b.agent.state.view.sample is not None, what="node b sampled")
        b.nvml.gpus[1].lost_after_samples = 0
        port = free_port()
        targets = "".join(f"      - targets: ['{r.url.removeprefix('http://')}']\n        labels: {{node: {n}}}\n"
                          for n, r in (("a", a), ("b", b), ("c", c)))
        cfg = tmp / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nodetune\n"
                       f"    static_configs:\n{targets}")
        procs.append(subprocess.Popen([tool, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            # Three scrapes of each node's job series and of b's lost GPU: enough for increase().
            q = ("count(count_over_time(nodetune_job_verdict_seconds_total[1m]) >= 3) >= 2 and "
                 'on() count(nodetune_gpu_state{state="lost"} == 1) >= 1 and '
                 'on() count(count_over_time(nodetune_gpu_verdict_seconds_total{node="c"}[1m]) >= 3) >= 1')
            try:
                with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(q)}", timeout=2) as r:  # noqa: S310
                    return bool(json.load(r)["data"]["result"])
            except OSError:
                return False

        wait_for(ready, timeout=60, what="prometheus holding every node's series")
        yield url, started
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        a.stop()
        b.stop()
        c.stop()


@pytest.mark.integration
def test_fleet_ranks_lost_gpu_hours_and_names_problems(prometheus: tuple[str, float]) -> None:
    url, started = prometheus
    r = fleet("--prometheus", url, "--range", "5m", "--json")
    assert r.returncode == 1, r.stdout + r.stderr  # problems found
    rep = json.loads(r.stdout)
    jobs = {(j["node"], j["job"]): j for j in rep["jobs"]}
    assert set(jobs) == {("a", "slurm:1234.0"), ("b", "slurm:1234.0")}
    assert rep["jobs"][0]["node"] == "b" and rep["jobs"][0]["gpu_hours_lost"] > 0
    assert jobs[("a", "slurm:1234.0")]["gpu_hours_lost"] < 0.1 * jobs[("b", "slurm:1234.0")]["gpu_hours_lost"]
    assert "compute_bound" in jobs[("a", "slurm:1234.0")]["by_verdict"]
    assert not set(jobs[("b", "slurm:1234.0")]["by_verdict"]) & {"compute_bound", "memory_bound"}
    nodes = {n["node"]: n for n in rep["nodes"]}
    assert nodes["b"]["gpus"] == 2 and nodes["b"]["gpu_hours_lost"] > nodes["a"]["gpu_hours_lost"]
    assert nodes["b"]["idle_gpu_hours"] > 0 and "gpu_lost" in nodes["b"]["by_cause"]
    assert "gpu_lost" in nodes["b"]["by_verdict"]
    # No NVML on c: its GPU's time is `unknown`, never idle and never lost.
    assert nodes["c"]["gpu_hours_lost"] == 0 and set(nodes["c"]["by_verdict"]) == {"unknown"}
    assert sorted(rep["pcie_degraded"], key=lambda p: p["node"]) == [
        {"node": "b", "gpu": "0", "width": 8, "max_width": 16}, {"node": "c", "gpu": "0", "width": 8, "max_width": 16}]
    assert [(g["node"], g["gpu"]) for g in rep["gpus_lost"]] == [("b", "1")]
    tuning = {(t["node"], t["reason"].split(" (")[0]) for t in rep["tuning"]}
    assert ("b", "tuning journal unreadable") in tuning and ("c", "1 change(s) could not be restored") in tuning
    assert rep["agents_down"] == [] and rep["problems"] == 5

    text = fleet("--prometheus", url, "--range", "5m")
    assert text.returncode == 1
    assert "GPU-hours lost by job" in text.stdout and "b GPU 0: PCIe x8 of x16" in text.stdout
    assert "b GPU 1: lost" in text.stdout and "Problems: 5" in text.stdout and "to gpu_lost" in text.stdout


@pytest.mark.integration
def test_fleet_counts_only_the_time_series_existed(prometheus: tuple[str, float]) -> None:
    url, started = prometheus
    week = json.loads(fleet("--prometheus", url, "--range", "7d", "--json").stdout)
    short = json.loads(fleet("--prometheus", url, "--range", "10m", "--json").stdout)
    up_h = (time.monotonic() - started + 60) / 3600  # agents' life, with the first diagnosis's window
    for w, s in zip(week["nodes"], short["nodes"], strict=True):
        assert w["node"] == s["node"]
        assert w["gpu_hours_lost"] == pytest.approx(s["gpu_hours_lost"], rel=0.2, abs=1e-3)
        assert w["gpu_hours_lost"] <= w["gpus"] * up_h  # never more than the GPUs' lifetime
        assert sum(w["by_verdict"].values()) <= w["gpus"] * up_h


@pytest.mark.integration
def test_fleet_healthy_nodes_exit_0(prometheus: tuple[str, float]) -> None:
    r = fleet("--prometheus", prometheus[0], "--range", "5m", "--nodes", "^a$")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Problems: 0" in r.stdout and "slurm:1234.0" in r.stdout


def test_fleet_bad_input_and_unreachable_exit_2() -> None:
    for args, says in ((["--prometheus", "localhost:9090"], "--prometheus: expected an http(s)://"),
                       (["--prometheus", "http://127.0.0.1:9", "--range", "5x"], "--range: expected a duration"),
                       (["--prometheus", "http://127.0.0.1:9", "--nodes", "("], "--nodes: not a regular expression"),
                       (["--prometheus", "http://127.0.0.1:9", "--range", "0s"], "--range: expected a duration"),
                       (["--prometheus", f"http://127.0.0.1:{free_port()}"], "cannot reach Prometheus")):
        r = fleet(*args)
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nodetune: error: ") and says in lines[0], r.stderr


@pytest.mark.integration
def test_every_dashboard_panel_and_alert_query_returns_data(prometheus: tuple[str, float]) -> None:
    """Each panel's queries and each alert's expression, over the three fake nodes, return series
    (an alert's condition stripped of its comparison: the series it judges exist)."""
    import re as _re

    url = prometheus[0]
    root = Path(__file__).resolve().parents[2] / "monitoring"
    dash = json.loads((root / "grafana-nodetune.json").read_text())

    def query(q: str) -> list[dict]:
        q = (q.replace('instance="$instance"', 'instance=~".+"').replace("$__rate_interval", "1m")
             .replace("$__range", "5m"))
        with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(q)}", timeout=5) as r:  # noqa: S310
            return list(json.load(r)["data"]["result"])

    empty = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", []) if not query(t["expr"])]
    assert not empty, empty
    rules = (root / "nodetune.rules.yml").read_text()
    for expr in _re.findall(r"expr: (?:\|\n((?:\s{10}.*\n)+)|(.*))", rules):
        text = " ".join((expr[0] or expr[1]).split())
        series = set(_re.findall(r"\b(nodetune_[a-z_]+|up)\b", text))
        missing = [s for s in series if not query(s)]
        assert not missing, (text, missing)
