"""Device profiles in firmware_configs/ and `edge config check` (edge/apps/config_check.py)."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest
import yaml

from edge.apps.config_check import check_file, run
from tests.conftest import ROOT

PROFILES = sorted((ROOT / "firmware_configs").glob("*.yaml"))
DEVICE_PROFILES = ("desktop", "jetson_nano", "raspberry_pi", "wearable_gateway")


def _check(files, capsys, models_dir=None):
    # --template: the shipped profiles name the device's MQTT CA and password files (/etc/edge).
    code = run(types.SimpleNamespace(files=[str(f) for f in files], models_dir=models_dir, template=True))
    return code, capsys.readouterr().out.splitlines()


def test_every_device_has_a_profile():
    assert {p.stem for p in PROFILES} >= set(DEVICE_PROFILES)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_profile_passes_config_check(profile, capsys):
    code, lines = _check([profile], capsys)
    assert (code, lines) == (0, [f"{profile}: ok"])


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_profile_names_itself_and_states_its_model_files(profile):
    text = profile.read_text()
    data = yaml.safe_load(text)
    assert data["profile"] == profile.stem
    # The desktop profile mirrors the schema defaults, key by key; the care team's server runs no models.
    if profile.stem not in ("desktop", "care_team"):
        # Each device profile says which files it uses, and that the timings were not taken on it.
        assert "NOT on a" in text
        assert "demo weights" in text.lower()
        for section in ("emotion", "severity"):
            assert data["models"][section]["name"] in text.split("profile:")[0]


def test_device_profiles_fit_their_device():
    load = {p.stem: yaml.safe_load(p.read_text()) for p in PROFILES}
    jetson, pi, gateway = load["jetson_nano"], load["raspberry_pi"], load["wearable_gateway"]
    assert jetson["video"]["source"].startswith("gst:nvarguscamerasrc")
    assert jetson["video"]["source"].split("!")[-1].split()[0] == "appsink"
    assert jetson["models"]["emotion"]["providers"][-1] == "CPUExecutionProvider"
    assert pi["video"]["source"] == "picamera2"
    assert gateway["video"]["source"] is None and gateway["mqtt"]["enabled"] is True
    assert gateway["mqtt"]["tls"] is True and "password" not in gateway["mqtt"]


def test_bad_profiles_one_line_per_error_and_exit_2(tmp_path, capsys):
    many = tmp_path / "many.yaml"
    many.write_text("threads: 0\nvideo:\n  fps: x\n  bogus: 1\nmodels:\n  emotion:\n    precision: int4\nnope: 1\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("video: [unclosed\n")
    missing = tmp_path / "missing.yaml"
    good = ROOT / "firmware_configs" / "desktop.yaml"
    code, lines = _check([many, broken, missing, good], capsys)
    assert code == 2
    assert lines[-1] == f"{good}: ok"
    many_lines = [line for line in lines if line.startswith(f"{many}: ")]
    assert len(many_lines) == 5, lines
    for key in ("'nope'", "'threads'", "'video.bogus'", "'video.fps'", "'models.emotion.precision'"):
        assert sum(key in line for line in many_lines) == 1, (key, many_lines)
    assert [line for line in lines if line.startswith(f"{broken}: ")][0].startswith(f"{broken}: not valid YAML")
    assert any(line.startswith(f"{missing}: does not exist") for line in lines)
    assert len(lines) == 5 + 1 + 1 + 1


def test_model_files_must_exist_for_backend_and_precision(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("models:\n  severity:\n    backend: onnx\n    precision: fp32\n")
    assert check_file(str(profile)) == []
    # No model is called 'nothere': one line naming the key and the model.
    profile.write_text("models:\n  severity:\n    name: nothere\n")
    errors = check_file(str(profile))
    assert len(errors) == 1 and "key 'models.severity.name'" in errors[0] and "nothere" in errors[0]


def test_model_file_that_fails_its_sha256_is_reported(tmp_path):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(ROOT / "edge" / "models", models)
    (models / "mini_xception" / "mini_xception_int8.tflite").write_bytes(b"not a model")
    profile = tmp_path / "p.yaml"
    profile.write_text("models:\n  emotion:\n    backend: tflite\n    precision: int8\n")
    errors = check_file(str(profile), str(models))
    assert len(errors) == 1 and "does not match its manifest" in errors[0]
    # precision auto checks every file of that backend, so it sees the corrupt one too.
    profile.write_text("models:\n  emotion:\n    backend: tflite\n    precision: auto\n")
    assert any("mini_xception_int8.tflite" in e for e in check_file(str(profile), str(models)))
    # A backend without that precision: one line naming what exists.
    manifest = (ROOT / "edge/models/lstm_moe/manifest.json").read_text()
    (models / "lstm_moe" / "manifest.json").write_text(manifest.replace('"precision": "int8"', '"precision": "int16"'))
    profile.write_text("models:\n  emotion:\n    precision: fp32\n  severity:\n    precision: int8\n")
    errors = check_file(str(profile), str(models))
    assert len(errors) == 1 and "has no tflite/int8 file" in errors[0]


def test_semantic_checks_beyond_the_schema(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("video:\n  source: 'gst:videotestsrc ! fakesink'\naudio:\n  source: 'mic:left'\n"
                       "kiosk:\n  host: 0.0.0.0\nmqtt:\n  ca_file: /etc/ca.pem\n")
    errors = check_file(str(profile))
    keys = sorted(e.split("key '")[1].split("'")[0] for e in errors)
    assert keys == ["audio.source", "kiosk.token", "mqtt.ca_file", "video.source"], errors


def test_config_check_reads_no_runtime():
    """The check runs on a build host: it must not import a model runtime, OpenCV or numpy."""
    code = ("import sys, types\nfrom edge.apps.config_check import run\n"
            "run(types.SimpleNamespace(files=['firmware_configs/desktop.yaml'], models_dir=None))\n"
            "heavy = ('cv2', 'onnxruntime', 'ai_edge_litert', 'tflite_runtime', 'numpy')\n"
            "bad = [m for m in heavy if m in sys.modules]\n"
            "sys.exit(1 if bad else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_edge_config_check_on_the_command_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("threads: 0\nnope: 1\n")
    profiles = [str(p.relative_to(ROOT)) for p in PROFILES]
    proc = subprocess.run([sys.executable, "-m", "edge", "config", "check", "--template", *profiles, str(bad),
                           "--models-dir", str(ROOT / "edge" / "models")], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[:len(profiles)] == [f"{p}: ok" for p in profiles]
    assert len(lines) == len(profiles) + 2 and all(line.startswith(f"{bad}: ") for line in lines[len(profiles):])
    proc = subprocess.run([sys.executable, "-m", "edge", "config", "check", "--template", *profiles], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
