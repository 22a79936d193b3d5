"""The exporter's own HTTP server: clients it turned away, by a bounded reason."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from nodetune.agent.collectors import collector
from nodetune.agent.state import View
from nodetune.agent.web_server import REFUSALS


@collector("http")
def http(v: View) -> Iterator[Metric]:
    fam = CounterMetricFamily("nodetune_agent_http_refused", "Clients the exporter turned away or cut off, by reason "
                              "(connection cap, idle or slow client closed, bad auth, too large, bad request).",
                              labels=["reason"])
    for reason in REFUSALS:
        fam.add_metric([reason], v.http_refused.get(reason, 0))
    yield fam
