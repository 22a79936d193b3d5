"""The exposition against Prometheus's own tools: `promtool check metrics`, `promtool test rules`
on monitoring/, and a real `prometheus` server scraping a running agent (skipped, with the reason,
where the Debian package `prometheus` is not installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.agent_support import (
    REPO,
    free_port,
    parse,
    scrape_text,
    start_agent,
    value,
    wait_for,
)

MON = REPO / "monitoring"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return path


@pytest.fixture
def running(tmp_path: Path):
    r = start_agent(tmp_path)
    wait_for(lambda: r.agent.state.view.report is not None and r.agent.state.view.jobs)
    yield r
    r.stop()


@pytest.mark.integration
def test_promtool_check_metrics(running) -> None:
    tool = _tool("promtool")
    text = scrape_text(running.url)
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


@pytest.mark.integration
def test_promtool_rules() -> None:
    tool = _tool("promtool")
    r = subprocess.run([tool, "check", "rules", str(MON / "nodetune.rules.yml")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([tool, "test", "rules", "nodetune.rules.test.yml"], cwd=MON, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_every_alert_has_a_test() -> None:
    rules = re.findall(r"- alert: (\w+)", (MON / "nodetune.rules.yml").read_text())
    tested = set(re.findall(r"alertname: (\w+)", (MON / "nodetune.rules.test.yml").read_text()))
    assert rules and set(rules) == tested


def test_dashboard_and_rules_name_only_series_the_agent_exports(running) -> None:
    names = {n for n, _ in parse(scrape_text(running.url))}
    names |= {"nodetune_gpu_xid_errors_total", "nodetune_gpu_nvlink_receive_bytes_per_second",
              "nodetune_gpu_nvlink_transmit_bytes_per_second"}  # present on nodes with Xids / NVLink
    dash = json.loads((MON / "grafana-nodetune.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    exprs.append((MON / "nodetune.rules.yml").read_text())
    used = {m for e in exprs for m in re.findall(r"\bnodetune_[a-z_]+", e)}
    assert used and used <= names, used - names


@pytest.mark.integration
def test_real_prometheus_scrapes_the_agent(running, tmp_path: Path) -> None:
    tool = _tool("prometheus")
    port = free_port()
    target = running.url.removeprefix("http://")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                   f"rule_files:\n  - {MON / 'nodetune.rules.yml'}\n"
                   f"scrape_configs:\n  - job_name: nodetune\n    static_configs:\n      - targets: ['{target}']\n")
    p = subprocess.Popen([tool, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                          f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    api = f"http://127.0.0.1:{port}/api/v1/query?query="

    def query(q: str) -> list[dict]:
        try:
            with urllib.request.urlopen(api + urllib.parse.quote(q), timeout=2) as r:  # noqa: S310 - loopback
                return list(json.load(r)["data"]["result"])
        except OSError:
            return []

    try:
        wait_for(lambda: query('nodetune_gpu_utilization_ratio{gpu="0"}'), timeout=60, what="prometheus scraped")
        util = query('nodetune_gpu_utilization_ratio{gpu="0"}')[0]
        assert float(util["value"][1]) == pytest.approx(0.97) and util["metric"]["job"] == "nodetune"
        verdict = query('nodetune_gpu_verdict{verdict="compute_bound"} == 1')
        assert verdict and verdict[0]["metric"]["gpu"] == "0"
        # no clash with the scrape job's label
        assert query('nodetune_job_verdict_seconds_total{job_id="slurm:1234.0"}')
        assert float(query('up{job="nodetune"}')[0]["value"][1]) == 1.0
        m = parse(scrape_text(running.url))
        assert value(m, "nodetune_gpu_power_watts", gpu="0") == float(query('nodetune_gpu_power_watts')[0]["value"][1])
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
        time.sleep(0)
