"""GPU temperatures and their slowdown threshold; the host's hwmon and thermal-zone sensors."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from nodetune.agent.collectors import collector, gauge, put
from nodetune.agent.state import View


@collector("temperature")
def temperature(v: View) -> Iterator[Metric]:
    s = v.sample
    if s is None:
        return
    t = gauge("nodetune_gpu_temperature_celsius", "GPU temperature by sensor (gpu: the die, memory: HBM).",
              ["gpu", "sensor"])
    slow = gauge("nodetune_gpu_temperature_slowdown_celsius", "Temperature at which the GPU slows down.", ["gpu"])
    host = gauge("nodetune_host_temperature_celsius", "Host sensors (hwmon, thermal zones); device is chip/label.",
                 ["device"])
    for g in s.gpus:
        put(t, [str(g.index), "gpu"], g.temp_gpu_c)
        put(t, [str(g.index), "memory"], g.temp_mem_c)
    for tg in v.topo.gpus if v.topo else []:
        put(slow, [str(tg.index)], tg.static.temp_slowdown_c)
    seen: set[str] = set()
    for sensor in s.thermal.sensors:
        dev = f"{sensor.chip}/{sensor.label}"
        if dev not in seen:  # two chips of one name (two coretemp packages) label their sensors apart
            seen.add(dev)
            put(host, [dev], sensor.temp_c)
    yield from (t, slow, host)
