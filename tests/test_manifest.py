"""The manifest drives the model: the device reads the input contract, label order and audio
contract from it, and refuses one it cannot honour in one line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.errors import EdgeError
from edge.manifest import PACKAGE_MODELS_DIR, load_manifest
from edge.models.severity import SeverityStream
from edge.precision import load_emotion


def copy_model(tmp_path: Path, name: str, change) -> str:
    folder = tmp_path / name
    shutil.copytree(PACKAGE_MODELS_DIR / name, folder)
    data = json.loads((folder / "manifest.json").read_text())
    change(data)
    (folder / "manifest.json").write_text(json.dumps(data))
    return str(tmp_path)


def test_an_unknown_schema_version_is_refused(tmp_path):
    models = copy_model(tmp_path, "mini_xception", lambda d: d.update(schema_version=7))
    with pytest.raises(EdgeError, match="schema_version 7") as info:
        load_manifest("mini_xception", models)
    assert "\n" not in str(info.value)


def test_label_order_and_scaling_come_from_the_manifest(tmp_path):
    def reorder(data):
        data["labels"] = list(reversed(data["labels"]))
        data["preprocess"]["normalize"] = {"scale": 2.0 / 255.0, "offset": -0.5}

    classifier = load_emotion("onnx", "fp32", copy_model(tmp_path, "mini_xception", reorder))
    assert classifier.labels[0] == "neutral" and classifier.labels[-1] == "angry"
    faces = classifier.crops(np.full((100, 100), 255, np.uint8), [(10, 10, 60, 60)])
    assert faces.shape == (1, 1, 64, 64) and np.allclose(faces, 1.5)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["preprocess"].update(color="rgb"), "wants rgb NCHW input"),
    (lambda d: d["preprocess"].pop("normalize"), "normalize.scale/offset"),
    (lambda d: d["preprocess"]["crop"].update(rule="face_mesh"), "unknown crop rule"),
    (lambda d: d["preprocess"].update(input_size=[64, 48]), "must be a square"),
])
def test_a_face_contract_this_runtime_cannot_honour_is_refused(tmp_path, change, message):
    with pytest.raises(EdgeError, match=message) as info:
        load_emotion("onnx", "fp32", copy_model(tmp_path, "mini_xception", change))
    assert "\n" not in str(info.value)


def test_a_severity_model_for_other_audio_is_refused(tmp_path):
    models = copy_model(tmp_path, "lstm_moe", lambda d: d["preprocess"]["audio"].update(sample_rate_hz=8000))
    with pytest.raises(EdgeError, match="audio sample_rate_hz is 8000, but this runtime computes 16000"):
        SeverityStream.from_manifest("onnx", "fp32", models)
