"""bench/layers.py (per-operator time, issue 23): the rewritten single-operator models, the
MAC counts, and `bench/latency.py --layers`. Times are never asserted, only that they exist."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from bench import latency, layers, schema
from edge.backends.tflite import import_interpreter
from edge.manifest import load_manifest

FACE = load_manifest("mini_xception")
FP32 = FACE.folder / "mini_xception_fp32.tflite"
INT8 = FACE.folder / "mini_xception_int8.tflite"
FAST = {"rounds": 1, "seconds_each": 0.001}


@pytest.fixture(scope="module")
def fp32_result():
    return layers.analyze_file(FP32, **FAST)


def _interpreter(data: bytes):
    cls, _ = import_interpreter()
    it = cls(model_content=data, num_threads=1)
    it.allocate_tensors()
    return it


def test_every_operator_of_the_shipped_fp32_file_has_a_row(fp32_result):
    graph = layers.Graph(FP32.read_bytes())
    ops = fp32_result["ops"]
    assert [r["index"] for r in ops] == list(range(len(graph.op_code))) and len(ops) == 34
    assert [r["op"] for r in ops][:3] == ["RESHAPE", "DEPTHWISE_CONV_2D", "CONV_2D"]
    assert fp32_result["kind"] == "float" and fp32_result["arithmetic"] == "fp32"
    for row in ops:
        assert row["time_us"] >= 0 and row["arithmetic"] == "fp32" and not row["constant"]
        assert (row["gmac_per_s"] is None) == (row["macs"] == 0)
    assert fp32_result["whole_us"] > 0 and fp32_result["sum_of_ops_us"] > 0


def test_whole_model_macs_equal_the_manifest_count(fp32_result):
    # fvcore's count of the convolutions' MACs (batch norm is folded into them in TFLite)
    assert fp32_result["macs"] == FACE.data["flops"]["macs_fvcore_conv"] == 10_163_392
    stem = fp32_result["ops"][2]  # 3x3 conv 8 -> 8 channels on 62x62 -> 60x60
    assert stem["macs"] == 60 * 60 * 8 * 3 * 3 * 8


def test_single_operator_models_reproduce_the_whole_models_intermediates(fp32_result):
    diffs = [r["max_abs_diff"] for r in fp32_result["ops"]]
    assert all(d is not None for d in diffs)
    assert max(diffs) <= 1e-5
    # chained from the input, the single-operator models give the whole model's answer
    assert fp32_result["replay_max_abs_diff"] is not None and fp32_result["replay_max_abs_diff"] <= 1e-6


def test_a_single_operator_model_computes_its_operator():
    """Not just the stored intermediate: a new input through the cut-out 1x1 conv equals
    numpy's product with the weights read back from the interpreter."""
    graph = layers.Graph(FP32.read_bytes())
    index = 4  # CONV_2D 1x1, 8 -> 16 channels
    x_t, w_t, b_t = graph.op_inputs[index]
    it = _interpreter(layers.sub_model(graph, [index], [x_t], graph.op_outputs[index]))
    assert [d["index"] for d in it.get_input_details()] == [x_t]
    x = np.random.default_rng(1).standard_normal((1, 60, 60, 8)).astype(np.float32)
    it.set_tensor(x_t, x)
    it.invoke()
    got = it.get_tensor(graph.op_outputs[index][0])
    w, b = it.get_tensor(w_t), it.get_tensor(b_t)
    want = x @ w.reshape(16, 8).T + b
    assert got.shape == want.shape and np.ptp(got) > 0
    # the convolution may carry a fused ReLU
    assert np.allclose(got, want, atol=1e-4) or np.allclose(got, np.maximum(want, 0), atol=1e-4)


def test_weight_only_int8_file_keeps_the_dequantize_inside_its_consumer():
    result = layers.analyze_file(INT8, **FAST)
    assert result["kind"] == "weight-only int8"
    const = [r for r in result["ops"] if r["constant"]]
    assert const and all(r["op"] == "DEQUANTIZE" and r["time_us"] is None for r in const)
    assert all(r["arithmetic"] == "int8" for r in const)
    convs = [r for r in result["ops"] if r["macs"]]
    assert all(r["arithmetic"] == "fp32" and r["max_abs_diff"] <= 1e-5 for r in convs)
    assert sum(r["weight_ops"] for r in result["ops"]) == len(const)  # each weight, once
    assert result["macs"] == FACE.data["flops"]["macs_fvcore_conv"]


@pytest.mark.parametrize("arithmetic", ["fp32", "int8"])
def test_peak_convolution_models_are_what_they_claim(arithmetic):
    data, macs = layers.conv_model(arithmetic, 8, 16, 1)
    assert macs == 8 * 8 * 16 * 16
    it = _interpreter(data)
    x_detail = it.get_input_details()[0]
    assert x_detail["dtype"] == (np.float32 if arithmetic == "fp32" else np.int8)
    rng = np.random.default_rng(2)
    if arithmetic == "fp32":
        x = rng.standard_normal((1, 8, 8, 16)).astype(np.float32)
    else:
        x = rng.integers(-100, 100, (1, 8, 8, 16)).astype(np.int8)
    it.set_tensor(x_detail["index"], x)
    it.invoke()
    out_detail = it.get_output_details()[0]
    got = it.get_tensor(out_detail["index"]).astype(np.float64)
    w = it.get_tensor(1).reshape(16, 16).astype(np.float64)
    if arithmetic == "fp32":
        np.testing.assert_allclose(got, x @ w.T, rtol=1e-4, atol=1e-4)
    else:
        (in_scale, _), (out_scale, _) = x_detail["quantization"], out_detail["quantization"]
        real = (x.astype(np.float64) * in_scale) @ (w * 0.01).T
        want = np.clip(np.round(real / out_scale), -128, 127)
        assert np.max(np.abs(got - want)) <= 1


def test_op_macs_of_each_kind():
    assert layers.op_macs(layers.CONV_2D, [(1, 10, 10, 4), (8, 3, 3, 4), (8,)], [(1, 8, 8, 8)]) == 8 * 8 * 8 * 36
    assert layers.op_macs(layers.DEPTHWISE_CONV_2D, [(1, 10, 10, 4), (1, 3, 3, 4)], [(1, 8, 8, 4)]) == 8 * 8 * 4 * 9
    assert layers.op_macs(layers.FULLY_CONNECTED, [(2, 32), (10, 32)], [(2, 10)]) == 2 * 10 * 32
    assert layers.op_macs(layers.ADD, [(1, 4), (1, 4)], [(1, 4)]) == 0


def test_rewritten_file_keeps_the_old_bytes_aligned():
    data = FP32.read_bytes()
    graph = layers.Graph(data)
    new = layers.sub_model(graph, [0], [0], graph.op_outputs[0])
    assert new[4:8] == b"TFL3" and new.endswith(data)
    assert (len(new) - len(data)) % layers.TAIL_ALIGN == 0
    root = struct.unpack_from("<I", new, 0)[0]
    assert root < len(new) - len(data)  # the new root, not the old one


def test_not_a_tflite_file_is_refused(tmp_path):
    with pytest.raises(ValueError):
        layers.Graph(b"\0" * 64)


def test_latency_layers_file_writes_the_section(tmp_path, capsys):
    out = tmp_path / "layers.json"
    assert latency.main(["--layers-file", str(FP32), "--rounds", "1", "--layers-seconds", "0.001",
                         "--quiet", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert schema.validate(doc) == []
    section = doc["layers"]
    assert section["threads"] == 1 and doc["rows"] == []
    assert section["peak"]["fp32"]["gmac_per_s"] > 0 and section["peak"]["int8"]["gmac_per_s"] > 0
    (entry,) = section["files"]
    assert entry["file"] == FP32.name and len(entry["ops"]) == 34
    text = capsys.readouterr().out
    assert "sum of ops" in text and "DEPTHWISE_CONV_2D" in text and "of peak" in text


def test_latency_layers_of_a_model_lists_its_tflite_files():
    files = layers.model_files(None, ["mini_xception"])
    names = [p.name for p, _ in files]
    assert names[:2] == ["mini_xception_fp32.tflite", "mini_xception_int8.tflite"]
    assert all(label["macs_manifest"] == 10_163_392 for _, label in files)
    assert [p.name for p, _ in layers.model_files(None, ["mini_xception"], ["int8"])] == [INT8.name]


@pytest.mark.parametrize("args", [["--layers", "--backend", "onnx"], ["--layers-file", "no/such.tflite"],
                                  ["--layers", "--layers-seconds", "0"]])
def test_latency_layers_bad_arguments(args):
    assert latency.main(args + ["--quiet"]) == 2
