"""Host temperatures: hwmon sensors (CPU package) and thermal zones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

from .host import Host, attempt


@dataclass
class TempSensor:
    source: str  # hwmon | thermal_zone
    chip: str  # hwmon name (coretemp, k10temp, nvme) or zone type
    label: str
    temp_c: float | None = None
    max_c: float | None = None
    crit_c: float | None = None


@dataclass
class ThermalSample:
    sensors: list[TempSensor] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def _milli(host: Host, p: str) -> float | None:
    if not host.exists(p):
        return None
    return host.read_int(p) / 1000.0


def probe_thermal(host: Host) -> ThermalSample:
    s = ThermalSample()
    if host.exists("/sys/class/hwmon"):
        for hw in attempt(s.missing, "hwmon", lambda: host.listdir("/sys/class/hwmon")) or []:
            d = f"/sys/class/hwmon/{hw}"
            chip = attempt(s.missing, f"{hw}.name", partial(host.read_line, f"{d}/name")) or hw
            for f in attempt(s.missing, hw, partial(host.listdir, d)) or []:
                m = re.fullmatch(r"temp(\d+)_input", f)
                if not m:
                    continue
                n = m.group(1)
                label = f"temp{n}"
                if host.exists(f"{d}/temp{n}_label"):
                    label = attempt(s.missing, f"{hw}.temp{n}_label", partial(host.read_line, f"{d}/temp{n}_label")) or label
                key = f"{hw}.temp{n}"
                s.sensors.append(TempSensor(
                    "hwmon", chip, label,
                    attempt(s.missing, key, partial(_milli, host, f"{d}/temp{n}_input")),
                    attempt(s.missing, key + "_max", partial(_milli, host, f"{d}/temp{n}_max")),
                    attempt(s.missing, key + "_crit", partial(_milli, host, f"{d}/temp{n}_crit")),
                ))
    else:
        s.missing["hwmon"] = "/sys/class/hwmon: not present (VM or no sensor drivers)"
    if host.exists("/sys/class/thermal"):
        for z in attempt(s.missing, "thermal", lambda: host.listdir("/sys/class/thermal")) or []:
            if not z.startswith("thermal_zone"):
                continue
            d = f"/sys/class/thermal/{z}"
            kind = attempt(s.missing, f"{z}.type", partial(host.read_line, f"{d}/type")) or z
            s.sensors.append(TempSensor("thermal_zone", kind, z, attempt(s.missing, z, partial(_milli, host, f"{d}/temp"))))
    else:
        s.missing["thermal_zones"] = "/sys/class/thermal: not present"
    return s


def cpu_package_temps(s: ThermalSample) -> list[TempSensor]:
    """CPU package sensors: coretemp "Package id N", k10temp Tctl/Tdie, or x86_pkg_temp zones."""
    out = []
    for t in s.sensors:
        if t.chip == "coretemp" and t.label.startswith("Package"):
            out.append(t)
        elif t.chip in ("k10temp", "zenpower") and t.label in ("Tctl", "Tdie"):
            out.append(t)
        elif t.source == "thermal_zone" and t.chip == "x86_pkg_temp":
            out.append(t)
    return out
