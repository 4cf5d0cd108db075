"""What machine a result came from, and what disturbed it while it ran.

`collect()` is the device fingerprint stored with every result. `sample()` is a cheap
snapshot of the things that make a benchmark lie (CPU clocks, throttling counters,
stolen CPU time, temperature), taken before and after every round; `disturbances()`
turns a row's snapshots into flags. Every reading is optional: a value the device does
not expose is None, never a guess.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from typing import Dict, List, Optional, Tuple

from edge import cpu

PACKAGES = cpu.PACKAGES
FREQ_CHANGE_PCT = 10.0
STEAL_PCT = 5.0


def _command(cmd: List[str], timeout_s: float = 5.0) -> Optional[str]:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout or out.stderr).strip() or None


usable_cores = cpu.usable_cores
cpu_model = cpu.cpu_model
package_versions = cpu.package_versions


def _cpufreq() -> Dict[str, Optional[object]]:
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    khz = [cpu.read_sys_file(base + name) for name in ("cpuinfo_min_freq", "cpuinfo_max_freq")]
    return {
        "governor": cpu.read_sys_file(base + "scaling_governor"),
        "min_mhz": int(khz[0]) // 1000 if khz[0] else None,
        "max_mhz": int(khz[1]) // 1000 if khz[1] else None,
    }


def _git_commit() -> Optional[str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = _command(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    return out if out and " " not in out else None


def collect() -> Dict[str, object]:
    """The device fingerprint: edge.cpu.describe_machine() (the one machine description,
    also shown by `edge doctor`: CPU, int8 features, cores, memory, OS, Python, packages)
    plus what moves benchmark numbers: clocks, load, Jetson power mode, Pi throttling."""
    freq = _cpufreq()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = cpu.describe_machine()
    out.update({
        "governor": freq["governor"],
        "cpu_min_mhz": freq["min_mhz"],
        "cpu_max_mhz": freq["max_mhz"],
        "load_average_1m": round(load[0], 2) if load else None,
        "jetson_power_mode": _command(["nvpmodel", "-q"]),
        "jetson_clocks": _command(["jetson_clocks", "--show"]),
        "pi_throttled": _command(["vcgencmd", "get_throttled"]),
        "git_commit": _git_commit(),
    })
    return out


# ---- disturbance sensors -------------------------------------------------------------

def _cpu_mhz() -> List[float]:
    found = []
    for path in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")):
        value = cpu.read_sys_file(path)
        if value and value.isdigit():
            found.append(int(value) / 1000.0)
    if found:
        return found
    for line in (cpu.read_sys_file("/proc/cpuinfo") or "").splitlines():
        if line.startswith("cpu MHz"):
            found.append(float(line.split(":")[1]))
    return found


def _throttle_count() -> Optional[int]:
    # Intel's per-core thermal throttling counters (absent on ARM and in most VMs).
    paths = glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle/core_throttle_count")
    values = [cpu.read_sys_file(p) for p in paths]
    values = [int(v) for v in values if v and v.isdigit()]
    return sum(values) if values else None


def _pi_throttled() -> Optional[int]:
    out = _command(["vcgencmd", "get_throttled"], timeout_s=2.0)
    if not out or "=" not in out:
        return None
    try:
        return int(out.split("=")[1], 16)
    except ValueError:
        return None


def _steal_and_total() -> Optional[List[int]]:
    first = (cpu.read_sys_file("/proc/stat") or "").splitlines()[:1]
    if not first or not first[0].startswith("cpu "):
        return None
    fields = [int(v) for v in first[0].split()[1:]]
    steal = fields[7] if len(fields) > 7 else 0
    return [steal, sum(fields[:8])]


def _max_temp_c() -> Optional[float]:
    temps = []
    for path in glob.glob("/sys/class/thermal/thermal_zone*/temp"):
        value = cpu.read_sys_file(path)
        if value and value.lstrip("-").isdigit():
            temps.append(int(value) / 1000.0)
    return max(temps) if temps else None


class Sensors:
    """Snapshots of the disturbance sensors; `vcgencmd` is only asked when it exists."""

    def __init__(self) -> None:
        self.has_vcgencmd = shutil.which("vcgencmd") is not None

    def sample(self) -> Dict[str, object]:
        return {
            "time": time.monotonic(),
            "cpu_mhz": _cpu_mhz(),
            "throttle_count": _throttle_count(),
            "pi_throttled": _pi_throttled() if self.has_vcgencmd else None,
            "steal_total": _steal_and_total(),
            "temp_c": _max_temp_c(),
        }


def disturbances(rounds: List[Tuple[Dict[str, object], Dict[str, object]]]) -> List[Dict[str, str]]:
    """Flags from a row's (before, after) snapshot pairs, one pair per measured round
    (rows are interleaved, so only the time inside a pair belongs to the row)."""
    flags = []
    snapshots = [s for pair in rounds for s in pair]
    mhz = [m for s in snapshots for m in (s.get("cpu_mhz") or [])]
    if mhz and min(mhz) > 0:
        spread = 100.0 * (max(mhz) - min(mhz)) / max(mhz)
        if spread > FREQ_CHANGE_PCT:
            flags.append({"code": "freq_changed",
                          "detail": f"CPU clock moved between {min(mhz):.0f} and {max(mhz):.0f} MHz"})
    events = sum(after["throttle_count"] - before["throttle_count"] for before, after in rounds
                 if before.get("throttle_count") is not None and after.get("throttle_count") is not None)
    if events > 0:
        flags.append({"code": "throttled", "detail": f"{events} thermal throttling events"})
    pi = [s["pi_throttled"] for s in snapshots if s.get("pi_throttled") is not None]
    # Bits 1-3: capped, throttled, soft temperature limit now; 17-19: the same since boot.
    now_bits = 0x2 | 0x4 | 0x8
    if any(v & now_bits for v in pi) or (len(pi) >= 2 and (pi[-1] & ~pi[0]) & (now_bits << 16)):
        flags.append({"code": "throttled", "detail": f"vcgencmd get_throttled = {hex(pi[-1])}"})
    steal = total = 0
    for before, after in rounds:
        if before.get("steal_total") and after.get("steal_total"):
            steal += after["steal_total"][0] - before["steal_total"][0]
            total += after["steal_total"][1] - before["steal_total"][1]
    if total > 0 and 100.0 * steal / total > STEAL_PCT:
        flags.append({"code": "cpu_steal",
                      "detail": f"the hypervisor took {100.0 * steal / total:.0f} % of CPU time"})
    return flags
