"""Host temperatures: hwmon sensors (CPU package) and thermal zones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

from .host import Host, attempt


@dataclass(slots=True)
class TempSensor:
    source: str  # hwmon | thermal_zone
    chip: str  # hwmon name (coretemp, k10temp, nvme) or zone type
    label: str
    temp_c: float | None = None
    max_c: float | None = None
    crit_c: float | None = None


@dataclass(slots=True)
class ThermalSample:
    sensors: list[TempSensor] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


_TEMP_INPUT = re.compile(r"temp(\d+)_input")


def _milli(host: Host, p: str) -> float | None:
    if not host.exists(p):
        return None
    return host.read_int(p) / 1000.0


@dataclass
class _Sensor:
    """One sensor as a layout knows it: its names and limits, and the file its temperature is in."""

    source: str
    chip: str
    label: str
    path: str  # *_input or a zone's temp
    key: str  # its name in `missing`
    max_c: float | None = None
    crit_c: float | None = None


@dataclass
class ThermalLayout:
    """What stays put between samples (sensors, names, labels, limits): read once per window by the
    Sampler, so a sample reads one file per sensor."""

    sensors: list[_Sensor] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def thermal_layout(host: Host) -> ThermalLayout:
    """The node's hwmon sensors and thermal zones with their names and limits."""
    lay = ThermalLayout()
    miss = lay.missing
    if host.exists("/sys/class/hwmon"):
        for hw in attempt(miss, "hwmon", lambda: host.listdir("/sys/class/hwmon")) or []:
            d = f"/sys/class/hwmon/{hw}"
            chip = attempt(miss, f"{hw}.name", partial(host.read_line, f"{d}/name")) or hw
            for f in attempt(miss, hw, partial(host.listdir, d)) or []:
                m = _TEMP_INPUT.fullmatch(f)
                if not m:
                    continue
                n = m.group(1)
                label = f"temp{n}"
                if host.exists(f"{d}/temp{n}_label"):
                    label = attempt(miss, f"{hw}.temp{n}_label", partial(host.read_line, f"{d}/temp{n}_label")) or label
                key = f"{hw}.temp{n}"
                lay.sensors.append(_Sensor(
                    "hwmon", chip, label, f"{d}/temp{n}_input", key,
                    attempt(miss, key + "_max", partial(_milli, host, f"{d}/temp{n}_max")),
                    attempt(miss, key + "_crit", partial(_milli, host, f"{d}/temp{n}_crit"))))
    else:
        miss["hwmon"] = "/sys/class/hwmon: not present (VM or no sensor drivers)"
    if host.exists("/sys/class/thermal"):
        for z in attempt(miss, "thermal", lambda: host.listdir("/sys/class/thermal")) or []:
            if not z.startswith("thermal_zone"):
                continue
            d = f"/sys/class/thermal/{z}"
            kind = attempt(miss, f"{z}.type", partial(host.read_line, f"{d}/type")) or z
            lay.sensors.append(_Sensor("thermal_zone", kind, z, f"{d}/temp", z))
    else:
        miss["thermal_zones"] = "/sys/class/thermal: not present"
    return lay


def probe_thermal(host: Host, layout: ThermalLayout | None = None) -> ThermalSample:
    """Each sensor's temperature now; `layout` (else read now) names the sensors and their limits."""
    lay = layout if layout is not None else thermal_layout(host)
    s = ThermalSample(missing=dict(lay.missing))
    for t in lay.sensors:
        s.sensors.append(TempSensor(t.source, t.chip, t.label, attempt(s.missing, t.key, partial(_milli, host, t.path)),
                                    t.max_c, t.crit_c))
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
