"""The real pyaudio and `edge doctor` on a machine without a camera or sound card (CI)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _edge(*args):
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_mic_without_a_sound_card_is_one_clean_line():
    """PortAudio's ALSA/JACK backends print dozens of lines when there is no card; the user
    sees only ours."""
    pyaudio = pytest.importorskip("pyaudio")
    pa = pyaudio.PyAudio()
    try:
        has_input = any(pa.get_device_info_by_index(i).get("maxInputChannels", 0) > 0
                        for i in range(pa.get_device_count()))
    finally:
        pa.terminate()
    if has_input:
        pytest.skip("this machine has a microphone")
    proc = _edge("run", "--config", "firmware_configs/desktop.yaml", "--mic", "--duration", "1")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and "microphone" in lines[0] and "--audio FILE" in lines[0], proc.stderr


def test_doctor_reports_backends_cameras_and_microphones():
    proc = _edge("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["tflite"]["available"] and report["onnxruntime"]["available"]
    assert "v4l2_devices" in report["cameras"] and "pyaudio" in report["microphones"]
    assert report["usable_cpus"] >= 1


def test_face_json_prints_nothing_on_stderr():
    """LiteRT's XNNPACK INFO line and OpenCV's logs stay out of the user's terminal."""
    proc = _edge("face", "edge/samples/astronaut.jpg", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["faces"]
    assert proc.stderr == ""


def test_a_run_and_a_truncated_mp4_print_only_our_lines(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "profile.yaml"
    config.write_text(f"output:\n  dir: {out}\n  database: null\n")
    proc = _edge("run", "--config", str(config), "--video", "edge/samples/demo_face.mp4",
                 "--audio", "edge/samples/demo_speech.wav", "--fast", "--duration", "1")
    assert proc.returncode == 0 and proc.stderr == ""
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((ROOT / "edge" / "samples" / "demo_face.mp4").read_bytes()[:20000])
    proc = _edge("run", "--config", str(config), "--video", str(truncated), "--fast")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("edge: error: video"), proc.stderr
