"""LSTM-MoE to ONNX (fp32, weight-only int8) and TFLite (fp32 at T = 1, weight-only int8).

ONNX keeps each LSTM layer a fused LSTM op with dynamic batch and time axes, so one
file serves one tick or a whole window. TFLite unrolls the LSTM, so it is exported for
one step (T = 1): the device's tick. Int8 is weight-only on both (int8 weights, float
activations and arithmetic): static int8 of an LSTM lost the cell state on every route
tried (TOOLCHAIN.md), and dynamic-range int8 made answers depend on the CPU (issue 11).
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

from edge.models.severity import SeverityModel
from export.models.lstm_moe import LstmMoE

ONNX_OPSET = 17
INPUT_NAMES = ["features", "context", "h0", "c0"]
OUTPUT_NAMES = ["mu", "sigma", "h", "c"]


def example_inputs(model: LstmMoE, steps: int = 1, batch: int = 1) -> Tuple[torch.Tensor, ...]:
    h, c = model.initial_state(batch)
    return torch.zeros(batch, steps, model.config.feature_size), torch.zeros(batch, 1), h, c


def export_onnx(model: LstmMoE, path: Path) -> Path:
    """ONNX fp32 with (h, c) as inputs/outputs and dynamic batch and time axes."""
    model.eval()
    dynamic = {"features": {0: "batch", 1: "time"}, "context": {0: "batch"},
               "h0": {1: "batch"}, "c0": {1: "batch"}, "mu": {0: "batch", 1: "time"},
               "sigma": {0: "batch", 1: "time"}, "h": {1: "batch"}, "c": {1: "batch"}}
    with warnings.catch_warnings():
        # The exporter warns that an LSTM with batch_first and given state may differ in
        # batch size; the parity tests check the file at the sizes the device uses.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example_inputs(model, steps=3), str(path), dynamo=False,
                          opset_version=ONNX_OPSET, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes=dynamic, do_constant_folding=True)
    return path


# Inputs of these ops that hold weights, and the axis of their output channels.
_WEIGHT_INPUTS = {"LSTM": {1: 1, 2: 1}, "MatMul": {1: 1}}
_MIN_WEIGHTS = 256  # smaller matrices (the gates' 2-column heads) stay float: a few hundred bytes


def quantize_onnx_int8(src: Path, dst: Path) -> Path:
    """Weight-only int8: LSTM W/R and MatMul weights as int8 with one scale per output row
    (round to nearest), read through Cast * scale, which onnxruntime folds at session
    start. The arithmetic stays float32, so chunked and one-shot runs agree like the fp32
    file's and no CPU's int8 kernels are involved (onnxruntime's dynamic quantization
    re-quantized activations on every call: chunking moved mu by 0.30 on an AVX2 CPU)."""
    import onnx
    from onnx import numpy_helper

    from export.convert.onnx_weight_only import dequantized, store_int8, symmetric_int8

    graph = onnx.load(str(src))
    inits = {init.name: init for init in graph.graph.initializer}
    weights = {}
    for node in graph.graph.node:
        for index, axis in _WEIGHT_INPUTS.get(node.op_type, {}).items():
            name = node.input[index] if index < len(node.input) else ""
            if name in inits and int(np.prod(inits[name].dims)) >= _MIN_WEIGHTS:
                q, scale = symmetric_int8(numpy_helper.to_array(inits[name]), axis)
                weights[name] = (q, scale, axis)
    # The file's weights become exactly q * scale.
    for name, (q, scale, axis) in weights.items():
        inits[name].CopyFrom(numpy_helper.from_array(dequantized(q, scale, axis), name))
    store_int8(graph, weights)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(dst))
    return dst


def export_tflite(model: LstmMoE, path: Path) -> Path:
    """TFLite fp32 for one step (batch 1, T = 1), through litert-torch."""
    import litert_torch

    model.eval()
    converted = litert_torch.convert(model, example_inputs(model, steps=1))
    converted.export(str(path))
    return path


def quantize_tflite_int8(src: Path, dst: Path) -> Path:
    """Weight-only int8 with float activations (ai-edge-quantizer `weight_only_wi8_afp32`:
    int8 weights read through DEQUANTIZE, which the runtime evaluates once; the earlier
    `dynamic_wi8_afp32` quantized activations on every call with the CPU's int8 kernels)."""
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(str(src))
    q.load_quantization_recipe(recipe.weight_only_wi8_afp32())
    result = q.quantize()
    with tempfile.TemporaryDirectory() as tmp:
        result.export_model(os.path.join(tmp, "model.tflite"))
        Path(dst).write_bytes(Path(tmp, "model.tflite").read_bytes())
    return dst


def torch_stream(model: LstmMoE, features: np.ndarray, context: float) -> Tuple[np.ndarray, np.ndarray]:
    """Reference mu, sigma [T] of one whole sequence [T, D] in PyTorch (zero start state)."""
    model.eval()
    with torch.no_grad():
        h, c = model.initial_state(1)
        mu, sigma, _, _ = model(torch.from_numpy(features[None]), torch.tensor([[context]]), h, c)
    return mu[0].numpy(), sigma[0].numpy()


def file_stream(runner: SeverityModel, features: np.ndarray, chunk: int) -> Tuple[np.ndarray, np.ndarray]:
    """mu, sigma [T] of a sequence fed to a model file in chunks of `chunk` ticks, state carried."""
    h, c = runner.initial_state()
    mus, sigmas = [], []
    for start in range(0, len(features), chunk):
        mu, sigma, h, c = runner.run(features[start:start + chunk], h, c)
        mus.append(mu)
        sigmas.append(sigma)
    return np.concatenate(mus), np.concatenate(sigmas)


def stream_parity(model: LstmMoE, runner: SeverityModel, sessions, chunk: int = 7) -> Dict[str, float]:
    """Largest |file - PyTorch| of mu and sigma (PHQ-8 points) over whole streamed sessions."""
    worst_mu = worst_sigma = 0.0
    steps = 0
    for s in sessions:
        ref_mu, ref_sigma = torch_stream(model, s.features, s.context)
        runner.context = s.context
        mu, sigma = file_stream(runner, s.features, chunk)
        worst_mu = max(worst_mu, float(np.max(np.abs(mu - ref_mu))))
        worst_sigma = max(worst_sigma, float(np.max(np.abs(sigma - ref_sigma))))
        steps += len(mu)
    return {"max_abs_mu_diff": worst_mu, "max_abs_sigma_diff": worst_sigma, "sessions": len(sessions),
            "steps": steps, "chunk_ticks": chunk}
