"""What this machine is: one description shared by `edge doctor`, `precision: auto` and bench.

Int8 answers and speed depend on CPU features that pick the runtimes' int8 kernels:
  x86:  AVX2 (onnxruntime's U8S8 kernels saturate int16 without VNNI), AVX-512, VNNI
        (AVX512-VNNI or AVX-VNNI), AMX;
  ARM:  NEON, dot product (asimddp), i8mm, SVE, SME (LiteRT/XNNPACK's SME kernels gave
        garbage int8 answers on an emulated SME CPU, issue 11).
Features come from the CPU itself where possible: numpy's CPUID/HWCAP probe and, on
Linux ARM, the kernel's HWCAP words in /proc/self/auxv. /proc/cpuinfo only fills gaps
(AMX), because under user-mode emulation it still describes the host.

`fingerprint()` is a short stable hash of what decides kernels (architecture, CPU model
name, int8 features): results measured on this CPU (edge.precision) are cached under it.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import struct
import sys
from typing import Dict, List, Optional

# Packages whose versions change answers or speed.
PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime",
            "opencv-python-headless", "opencv-python")
X86_FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FEATURES = ("neon", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme", "sme2")

# Linux arm64 HWCAP / HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h).
_AT_HWCAP, _AT_HWCAP2 = 16, 26
_HWCAP = {"neon": 1 << 1, "asimddp": 1 << 20, "sve": 1 << 22}
_HWCAP2 = {"sve2": 1 << 1, "i8mm": 1 << 13, "bf16": 1 << 14, "sme": 1 << 23, "sme2": 1 << 37}
# numpy's names for the x86 features above.
_NUMPY_X86 = {"sse4_2": "SSE42", "avx": "AVX", "avx2": "AVX2", "fma": "FMA3", "avx512f": "AVX512F",
              "avx512bw": "AVX512BW", "avx512_vnni": "AVX512VNNI"}


def read_sys_file(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def architecture() -> str:
    """'x86_64', 'aarch64', ... (arm64 on macOS is reported as aarch64)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _numpy_features() -> Dict[str, bool]:
    """numpy's own CPUID / HWCAP probe (it sees the emulated CPU under QEMU)."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            found = getattr(importlib.import_module(module), "__cpu_features__", None)
        except ImportError:
            continue
        if found:
            return dict(found)
    return {}


def _cpuinfo_flags() -> List[str]:
    for line in (read_sys_file("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return value.split()
    return []


def _auxv_hwcaps() -> Optional[Dict[int, int]]:
    try:
        with open("/proc/self/auxv", "rb") as f:
            data = f.read()
    except OSError:
        return None
    width = 8 if sys.maxsize > 2 ** 32 else 4
    fmt = "<QQ" if width == 8 else "<II"
    out = {}
    for offset in range(0, len(data) - 2 * width + 1, 2 * width):
        key, value = struct.unpack_from(fmt, data, offset)
        if key == 0:
            break
        out[key] = value
    return out


def _darwin_arm_features() -> Dict[str, bool]:
    import subprocess

    names = {"asimddp": "FEAT_DotProd", "i8mm": "FEAT_I8MM", "bf16": "FEAT_BF16", "sme": "FEAT_SME",
             "sme2": "FEAT_SME2"}
    out = {"neon": True}
    for ours, theirs in names.items():
        try:
            value = subprocess.run(["sysctl", "-n", "hw.optional.arm." + theirs], capture_output=True,
                                   text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            value = ""
        out[ours] = value == "1"
    return out


def int8_features() -> Dict[str, bool]:
    """The CPU features that decide which int8 kernels the runtimes use, name -> present."""
    arch = architecture()
    if arch == "x86_64":
        probe = _numpy_features()
        flags = set(_cpuinfo_flags())
        out = {}
        for name in X86_FEATURES:
            if name in _NUMPY_X86 and probe:
                out[name] = bool(probe.get(_NUMPY_X86[name]))
            else:
                out[name] = name in flags
        # AMX and AVX-VNNI are not in numpy's probe; trust cpuinfo only where the CPU really
        # has AVX-512 / AVX2 (under emulation cpuinfo still lists the host's flags).
        out["amx_int8"] = out["amx_int8"] and out["avx512f"]
        out["avx_vnni"] = out["avx_vnni"] and out["avx2"]
        return out
    if arch == "aarch64":
        if sys.platform == "darwin":
            return _darwin_arm_features()
        caps = _auxv_hwcaps()
        if caps:
            hwcap, hwcap2 = caps.get(_AT_HWCAP, 0), caps.get(_AT_HWCAP2, 0)
            out = {name: bool(hwcap & bit) for name, bit in _HWCAP.items()}
            out.update({name: bool(hwcap2 & bit) for name, bit in _HWCAP2.items()})
            return {name: out.get(name, False) for name in ARM_FEATURES}
        flags = set(_cpuinfo_flags())
        return {name: (name in flags or (name == "neon" and "asimd" in flags)) for name in ARM_FEATURES}
    return {}


def int8_summary(features: Optional[Dict[str, bool]] = None) -> str:
    """One line: the present int8 features, e.g. 'avx2 fma avx512f avx512_vnni'."""
    features = int8_features() if features is None else features
    present = [name for name, on in features.items() if on]
    return " ".join(present) if present else "none of " + " ".join(features or ["(unknown architecture)"])


def cpu_model() -> str:
    """Board and CPU name: Pi and Jetson name the board in the device tree, x86 the CPU."""
    board = read_sys_file("/proc/device-tree/model")
    name = None
    for line in (read_sys_file("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "cpu model", "Processor") and value.strip():
            name = value.strip()
            break
    name = name or platform.processor() or platform.machine()
    return f"{board.rstrip(chr(0))} / {name}" if board else name


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def memory_mb() -> Dict[str, Optional[int]]:
    found: Dict[str, Optional[int]] = {"total_mb": None, "available_mb": None}
    for line in (read_sys_file("/proc/meminfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            found["total_mb" if key == "MemTotal" else "available_mb"] = int(value.split()[0]) // 1024
    return found


def os_name() -> str:
    for line in (read_sys_file("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def package_versions() -> Dict[str, str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return {}
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def fingerprint(features: Optional[Dict[str, bool]] = None, model: Optional[str] = None) -> str:
    """16 hex digits naming what decides int8 kernels here: architecture, CPU model, features."""
    doc = {"arch": architecture(), "cpu": cpu_model() if model is None else model,
           "features": sorted(k for k, v in (int8_features() if features is None else features).items() if v)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def describe_machine() -> Dict[str, object]:
    """The machine, as `edge doctor` shows it and bench stores with every result."""
    features = int8_features()
    memory = memory_mb()
    model = cpu_model()
    return {
        "cpu_model": model,
        "machine": architecture(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "virtualized": "hypervisor" in (read_sys_file("/proc/cpuinfo") or ""),
        "int8_features": features,
        "cpu_fingerprint": fingerprint(features, model),
        "memory_mb": memory["total_mb"],
        "memory_available_mb": memory["available_mb"],
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }
