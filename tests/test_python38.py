"""The device side on Python 3.8 with what a Jetson Nano gets from pip (JetPack 4.6:
onnxruntime 1.19, tflite-runtime instead of ai-edge-litert). vermin checks the syntax;
this runs the real commands. Skipped where no Python 3.8 interpreter is installed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE_IMAGE

# The Jetson Nano's set on Python 3.8 (deploy/constraints/jetson_nano.txt): the exact interpreter
# versions matter, int8 kernels and op support differ between tflite-runtime builds.
DEVICE_PACKAGES = ["numpy==1.24.4", "opencv-python-headless<5", "onnxruntime==1.19.2", "tflite-runtime==2.13.0",
                   "PyYAML", "prometheus_client==0.21.1", "PyNaCl==1.6.0"]  # PyNaCl: signed model releases
VENV = ROOT / ".cache" / "py38-device"


def _python38():
    for candidate in (shutil.which("python3.8"), str(Path.home() / ".pyenv/versions/3.8.18/bin/python")):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == "(3, 8)":
                return candidate
    return None


@pytest.fixture(scope="module")
def py38():
    interpreter = _python38()
    if interpreter is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    python = VENV / "bin" / "python"
    ready = VENV / ".ready"
    if not ready.exists() or ready.read_text() != "\n".join(DEVICE_PACKAGES):
        subprocess.run([interpreter, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DEVICE_PACKAGES], check=True, timeout=600)
        (VENV / ".ready").write_text("\n".join(DEVICE_PACKAGES))
    return python


def _edge(python, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([str(python), "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def test_face_on_python38_with_tflite_runtime(py38):
    proc = _edge(py38, "face", str(SAMPLE_IMAGE), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["model"]["backend"].startswith("tflite-runtime")
    assert result["faces"][0]["top"] == "happy"


def test_run_on_python38(py38):
    proc = _edge(py38, "run", "--config", "firmware_configs/desktop.yaml", "--video", "edge/samples/demo_face.mp4",
                 "--audio", "edge/samples/demo_speech.wav", "--fast", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
    assert summary["complete"] and summary["screening"]["emotion_vote"]["level"] == "No"
    assert summary["models"]["emotion"]["backend"].startswith("tflite-runtime")
