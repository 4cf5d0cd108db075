"""`edge doctor`: what this device has (CPU and its int8 features, backends, threads, OpenCV,
power mode) and which model file each model of a profile would load here (`--config`)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Optional

from edge import __version__
from edge.cpu import describe_machine, int8_summary
from edge.errors import EdgeError


def _run(cmd) -> Optional[str]:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() or None


def _onnxruntime() -> Dict:
    try:
        import onnxruntime
    except ImportError:
        return {"available": False}
    return {"available": True, "version": onnxruntime.__version__,
            "providers": onnxruntime.get_available_providers()}


def _tflite() -> Dict:
    from edge.backends.tflite import import_interpreter

    try:
        _, package = import_interpreter()
    except EdgeError as exc:
        return {"available": False, "why": str(exc)}
    return {"available": True, "package": package}


def _opencv() -> Dict:
    try:
        import cv2
    except ImportError:
        return {"available": False}
    from edge.capture.video import gstreamer_available

    gstreamer = gstreamer_available(cv2)
    return {"available": True, "version": cv2.__version__, "haar_cascades": hasattr(cv2, "CascadeClassifier"),
            "gstreamer": gstreamer}


def _cameras() -> Dict:
    """V4L2 device nodes (opening them would grab a camera another program may be using)."""
    nodes = sorted(str(p) for p in Path("/dev").glob("video*"))
    return {"v4l2_devices": nodes or None, "picamera2": importlib.util.find_spec("picamera2") is not None}


def _microphones(config_path: Optional[str] = None) -> Dict:
    """Each input with the rate edge will open it at (the first of the profile's
    audio.device_rates_hz it takes; resampled to 16 kHz) and the default input marked."""
    try:
        import pyaudio
    except ImportError:
        return {"pyaudio": False}
    from edge.capture.audio import list_inputs
    from edge.config import load_config

    rates = tuple(load_config(config_path).audio.device_rates_hz)
    inputs = []
    for dev in list_inputs(rates, pyaudio):
        rate = f"opens at {dev['open_rate_hz']} Hz" if dev["open_rate_hz"] else \
            f"takes none of {', '.join(str(r) for r in rates)} Hz"
        inputs.append(f"{dev['index']}: {dev['name']} ({rate}; device default {dev['device_rate_hz']} Hz)"
                      + (" [default: mic]" if dev["default"] else ""))
    return {"pyaudio": True, "inputs": inputs or None}


def model_files(config_path: Optional[str] = None, models_dir: Optional[str] = None) -> Dict[str, Dict]:
    """Per model role of the profile: the file it would load on this CPU and why
    (`precision: auto` measures once and caches; see edge.precision)."""
    from edge.config import load_config
    from edge.manifest import load_manifest
    from edge.precision import resolve

    config = load_config(config_path)
    roles = [("emotion", config.models.emotion)]
    if config.models.severity.enabled:
        roles.append(("severity", config.models.severity))
    out = {}
    for role, section in roles:
        try:
            manifest = load_manifest(section.name, models_dir)
            choice = resolve(manifest, section.backend, section.precision, threads=config.threads)
            manifest.verified_path(choice.entry)  # present, a regular file, readable, intact
        except EdgeError as exc:
            out[role] = {"model": section.name, "backend": section.backend, "precision": section.precision,
                         "file": None, "why": str(exc)}
            continue
        out[role] = {"model": section.name, "backend": section.backend, "precision": section.precision,
                     "file": choice.entry["file"], "why": choice.reason}
    return out


def model_release(config_path: Optional[str] = None, models_dir: Optional[str] = None) -> Dict:
    """The signed release of the models folder a session would load (issue 24), and the
    profile's model store (edge update): current and previous sets."""
    from edge.config import load_config
    from edge.engine.models import verify_models
    from edge.updates import ModelStore

    config = load_config(config_path)
    store = ModelStore(config.models.store)
    out = {"store": str(store.root), **store.status(), "key": config.models.release_key}
    try:
        release = verify_models(config, models_dir)
    except EdgeError as exc:
        return dict(out, folder=None, release=None, verified=False, why=str(exc))
    return dict(out, folder=str(release.folder), release=release.label, verified=release.version is not None,
                signed_by=release.key_id)


def collect(config_path: Optional[str] = None, models_dir: Optional[str] = None) -> Dict:
    machine = describe_machine()
    return {
        "edge": __version__,
        "python": machine["python"],
        "machine": machine["machine"],
        "system": f"{machine['os']} (kernel {machine['kernel']})",
        "cpu": machine["cpu_model"],
        "cpu_int8_features": int8_summary(machine["int8_features"]),
        "cpu_fingerprint": machine["cpu_fingerprint"],
        "cpu_count": machine["cores"],
        "usable_cpus": machine["usable_cores"],
        "onnxruntime": _onnxruntime(),
        "tflite": _tflite(),
        "opencv": _opencv(),
        "cameras": _cameras(),
        "microphones": _microphones(config_path),
        "jetson_power_mode": _run(["nvpmodel", "-q"]),
        "pi_throttled": _run(["vcgencmd", "get_throttled"]),
        "model_files": model_files(config_path, models_dir),
        "model_release": model_release(config_path, models_dir),
    }


def run(args) -> int:
    report = collect(getattr(args, "config", None), getattr(args, "models_dir", None))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        if key == "model_files":
            for role, found in value.items():
                what = f"{found['model']} {found['backend']}/{found['precision']}"
                print(f"{'model ' + role:<18} {what} -> {found['file'] or 'none'} ({found['why']})")
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key:<18} {value if value is not None else '-'}")
    return 0
