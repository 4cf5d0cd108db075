"""`edge face` and `edge models` as a user runs them, good input and bad."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SAMPLE_IMAGE, SHIPPED_MODELS


def edge(*args, env=None):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True,
                          text=True, env=full_env, timeout=120)


def error_lines(proc):
    """stderr without the TFLite runtime's own INFO banner."""
    return [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("INFO:")]


@pytest.mark.parametrize("backend,precision",
                         [("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32")])
def test_face_json_finds_the_smiling_astronaut(backend, precision):
    proc = edge("face", str(SAMPLE_IMAGE), "--backend", backend, "--precision", precision, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["faces"]) == 1
    face = result["faces"][0]
    assert face["top"] == "happy"
    assert set(face["emotions"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert sum(face["emotions"].values()) == pytest.approx(1.0, abs=0.01)
    assert {"decode_ms", "detect_ms", "preprocess_ms", "infer_ms"} <= set(result["latency_ms"])
    assert "not a diagnosis" in result["notice"]


def test_face_text_output_names_emotions_not_conditions():
    proc = edge("face", str(SAMPLE_IMAGE))
    assert proc.returncode == 0, proc.stderr
    assert "happy" in proc.stdout and "not a diagnosis" in proc.stdout
    for word in ("Depressed", "Anxiety", "depression"):
        assert word not in proc.stdout


def test_models_lists_the_shipped_models():
    proc = edge("models")
    assert proc.returncode == 0, proc.stderr
    assert "mini_xception" in proc.stdout and "mini_xception_int8.tflite" in proc.stdout
    data = json.loads(edge("models", "--json").stdout)
    assert data["mini_xception"]["labels"][3] == "happy"


@pytest.mark.parametrize("args,message", [
    (["face", "missing.jpg"], "does not exist"),
    (["face", str(SAMPLE_IMAGE), "--backend", "tensorrt"], "invalid choice: 'tensorrt'"),
    (["face", str(SAMPLE_IMAGE), "--models-dir", "/nonexistent"], "does not exist"),
])
def test_bad_input_gives_one_line_and_exit_2(args, message):
    proc = edge(*args)
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_corrupt_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    proc = edge("face", str(bad))
    assert proc.returncode == 2 and "cannot be decoded" in error_lines(proc)[0]


@pytest.mark.parametrize("via", ["flag", "env"])
def test_tampered_model_file_is_refused_by_sha256(tmp_path, via):
    models = tmp_path / "models"
    shutil.copytree(SHIPPED_MODELS / "mini_xception", models / "mini_xception")
    target = models / "mini_xception" / "mini_xception_int8.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    if via == "flag":
        proc = edge("face", str(SAMPLE_IMAGE), "--models-dir", str(models))
    else:
        proc = edge("face", str(SAMPLE_IMAGE), env={"EDGE_MODELS_DIR": str(models)})
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and "does not match its manifest" in lines[0] and "mini_xception_int8.tflite" in lines[0]


def test_models_dir_override_is_used(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(SHIPPED_MODELS / "mini_xception", models / "mini_xception")
    shutil.copytree(SHIPPED_MODELS / "blazeface", models / "blazeface")  # the default detector
    proc = edge("face", str(SAMPLE_IMAGE), "--json", env={"EDGE_MODELS_DIR": str(models)})
    assert proc.returncode == 0, proc.stderr
    proc = edge("models", "--models-dir", str(models))
    assert str(models) in proc.stdout and "lstm_moe" not in proc.stdout and "blazeface" in proc.stdout


def test_missing_interpreter_package_is_a_clear_error(monkeypatch):
    import builtins

    from edge.backends.tflite import import_interpreter
    from edge.errors import EdgeError

    real_import = builtins.__import__

    def no_tflite(name, *args, **kwargs):
        if name.startswith(("ai_edge_litert", "tflite_runtime")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tflite)
    with pytest.raises(EdgeError, match="no TFLite interpreter installed"):
        import_interpreter()


def test_tflite_runtime_is_used_when_litert_is_absent(monkeypatch):
    """Older devices (Jetson Nano, Python 3.8) only have tflite_runtime: same API."""
    import builtins
    import types

    from edge.backends import tflite

    fake = types.ModuleType("tflite_runtime")
    fake_interp = types.ModuleType("tflite_runtime.interpreter")
    fake_interp.Interpreter = object
    fake.interpreter = fake_interp
    monkeypatch.setitem(sys.modules, "tflite_runtime", fake)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake_interp)
    real_import = builtins.__import__

    def no_litert(name, *args, **kwargs):
        if name.startswith("ai_edge_litert"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    cls, package = tflite.import_interpreter()
    assert cls is object and package.startswith("tflite-runtime")
