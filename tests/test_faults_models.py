"""Broken model files under `edge run`: missing, truncated, wrong sha256, another model's
file behind a forged manifest entry, the interpreter package absent. Each is refused at
start in one line naming the file (exit 2), before any session output is written."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faults_helpers import DEMO_VIDEO, DEMO_WAV, ROOT, assert_one_line_error, write_profile

from edge.manifest import sha256_of

MODELS = ROOT / "edge" / "models"


@pytest.fixture
def models(tmp_path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(str(MODELS), str(target))
    return target


def _entry(models: Path, name: str, backend: str, precision: str):
    manifest_path = models / name / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        if entry["format"] == backend and entry["precision"] == precision:
            return manifest_path, manifest, entry
    raise AssertionError((name, backend, precision))


def _forge(manifest_path: Path, manifest: dict, entry: dict, file: Path) -> None:
    """Make the manifest vouch for `file` as it now is (size and sha256)."""
    entry["sha256"] = sha256_of(file)
    entry["bytes"] = file.stat().st_size
    manifest_path.write_text(json.dumps(manifest))


def _run(tmp_path: Path, models: Path, backend: str = "tflite", precision: str = "int8", prelude: str = ""):
    prof = write_profile(tmp_path, models={"emotion": {"backend": backend, "precision": precision},
                                           "severity": {"backend": backend, "precision": "fp32"}})
    args = ["run", "--config", str(prof), "--models-dir", str(models), "--video", DEMO_VIDEO, "--audio", DEMO_WAV,
            "--fast", "--duration", "0.5"]
    code = prelude + "import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=str(ROOT), capture_output=True, text=True,
                          timeout=120)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json")), "a session ran"
    return proc


@pytest.mark.parametrize("backend, precision", [("tflite", "int8"), ("onnx", "fp32")])
def test_a_missing_model_file(tmp_path, models, backend, precision):
    _, _, entry = _entry(models, "mini_xception", backend, precision)
    (models / "mini_xception" / entry["file"]).unlink()
    proc = _run(tmp_path, models, backend, precision)
    assert_one_line_error(proc, entry["file"], "missing")


@pytest.mark.parametrize("forged", [False, True])
@pytest.mark.parametrize("name, backend, precision", [("mini_xception", "tflite", "int8"),
                                                      ("mini_xception", "onnx", "fp32"),
                                                      ("lstm_moe", "tflite", "fp32"),
                                                      ("lstm_moe", "onnx", "fp32")])
def test_a_truncated_model_file(tmp_path, models, name, backend, precision, forged):
    manifest_path, manifest, entry = _entry(models, name, backend, precision)
    file = models / name / entry["file"]
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 3])
    if forged:  # the manifest agrees: the interpreter itself meets the broken file
        _forge(manifest_path, manifest, entry, file)
    proc = _run(tmp_path, models, backend, precision if name == "mini_xception" else "int8")
    assert_one_line_error(proc, entry["file"])
    if not forged:
        assert "does not match its manifest" in proc.stderr


def test_a_wrong_sha256(tmp_path, models):
    manifest_path, manifest, entry = _entry(models, "mini_xception", "tflite", "int8")
    entry["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    assert_one_line_error(_run(tmp_path, models), entry["file"], "does not match its manifest")


@pytest.mark.parametrize("backend, precision, other", [
    ("tflite", "int8", "lstm_moe_edge_int8_t1.tflite"),
    ("tflite", "fp32", "lstm_moe_edge_fp32_t1.tflite"),
    ("onnx", "fp32", "lstm_moe_edge_fp32.onnx"),
    ("onnx", "int8", "lstm_moe_edge_int8.onnx"),
])
def test_another_models_file_behind_a_forged_manifest_entry(tmp_path, models, backend, precision, other):
    """The LSTM's file renamed as the face model, the manifest forged to match its sha256:
    the loader compares the file's real inputs and outputs with the manifest's contract."""
    manifest_path, manifest, entry = _entry(models, "mini_xception", backend, precision)
    file = models / "mini_xception" / entry["file"]
    shutil.copyfile(str(models / "lstm_moe" / other), str(file))
    _forge(manifest_path, manifest, entry, file)
    assert_one_line_error(_run(tmp_path, models, backend, precision), entry["file"])


def test_the_face_model_as_the_lstm(tmp_path, models):
    manifest_path, manifest, entry = _entry(models, "lstm_moe", "tflite", "fp32")
    file = models / "lstm_moe" / entry["file"]
    shutil.copyfile(str(models / "mini_xception" / "mini_xception_fp32.tflite"), str(file))
    _forge(manifest_path, manifest, entry, file)
    assert_one_line_error(_run(tmp_path, models, "tflite", "int8"), entry["file"])


def test_a_missing_face_detector_file(tmp_path, models):
    manifest = json.loads((models / "blazeface" / "manifest.json").read_text())
    name = manifest["files"][0]["file"]
    (models / "blazeface" / name).unlink()
    assert_one_line_error(_run(tmp_path, models), name)


@pytest.mark.parametrize("backend, packages", [("tflite", ["ai_edge_litert", "tflite_runtime"]),
                                               ("onnx", ["onnxruntime"])])
def test_the_interpreter_package_missing(tmp_path, models, backend, packages):
    """The package is made unimportable in the child (sys.modules[name] = None is what an
    absent package looks like to `import`)."""
    prelude = "import sys; " + " ".join(f"sys.modules[{p!r}] = None;" for p in packages) + " "
    precision = "int8" if backend == "tflite" else "fp32"
    proc = _run(tmp_path, models, backend, precision, prelude=prelude)
    needle = "onnxruntime" if backend == "onnx" else "ai-edge-litert"
    assert_one_line_error(proc, needle)
