"""Store float initializers of an ONNX graph as int8 + per-channel scale (weight-only int8).

Each weight w = q * scale (exactly, as export.convert.weight_quant or `symmetric_int8` made
it) becomes an int8 initializer q and a float scale, joined by Cast(q) * scale. Every
onnxruntime folds that constant subgraph into a float initializer when the session starts
(measured: same speed as the fp32 file), so Conv / LSTM / MatMul compute in float with the
fp32 file's kernels on every CPU (no U8S8 int8 kernels, issue 11). DequantizeLinear would
say the same thing, but onnxruntime keeps DequantizeLinear nodes unfolded for its QDQ
fusions and then ran it on every call, without weight pre-packing: 2.3x slower.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

QMAX = 127


def symmetric_int8(weight: np.ndarray, axis: int) -> Tuple[np.ndarray, np.ndarray]:
    """Round-to-nearest symmetric int8 along `axis` (one scale per slice): (q int8, scale float32)."""
    moved = np.moveaxis(weight, axis, 0)
    peak = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1).astype(np.float32)
    scale = np.where(peak > 0, peak / np.float32(QMAX), np.float32(1.0)).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    q = np.clip(np.round(weight / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantized(q: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """What the graph computes: float32(q) * scale, broadcast along `axis`."""
    shape = [1] * q.ndim
    shape[axis] = -1
    return q.astype(np.float32) * scale.reshape(shape).astype(np.float32)


def store_int8(model: onnx.ModelProto, weights: Dict[str, Tuple[np.ndarray, np.ndarray, int]]) -> int:
    """Replace initializers by int8 + Cast + Mul, in place.

    weights: {initializer name: (q int8, scale float32, axis)}; each initializer must equal
    `dequantized(q, scale, axis)` bit for bit (ValueError otherwise). Returns the count.
    """
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    nodes = []
    for name, (q, scale, axis) in sorted(weights.items()):
        current = numpy_helper.to_array(inits[name])
        if current.tobytes() != dequantized(q, scale, axis).tobytes():
            raise ValueError(f"initializer {name} is not exactly q * scale")
        graph.initializer.remove(inits[name])
        shape = [1] * q.ndim
        shape[axis] = -1
        graph.initializer.extend([
            numpy_helper.from_array(np.ascontiguousarray(q, np.int8), name + "_q"),
            numpy_helper.from_array(np.ascontiguousarray(scale.reshape(shape), np.float32), name + "_scale")])
        nodes += [helper.make_node("Cast", [name + "_q"], [name + "_qf"], name=name + "_cast",
                                   to=onnx.TensorProto.FLOAT),
                  helper.make_node("Mul", [name + "_qf", name + "_scale"], [name], name=name + "_scale")]
    # Cast/Mul nodes first: they only read initializers, so the graph stays topologically sorted.
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    return len(nodes)


def match_initializers(model: onnx.ModelProto, candidates: Iterable[Tuple[np.ndarray, np.ndarray, int]],
                       names: Optional[Iterable[str]] = None) -> Dict[str, Tuple[np.ndarray, np.ndarray, int]]:
    """{initializer name: (q, scale, axis)} for every candidate whose exact float value is an
    initializer (the exporter renames weights, so they are found by value)."""
    by_value = {}
    for q, scale, axis in candidates:
        value = dequantized(q, scale, axis)
        by_value[(value.shape, value.tobytes())] = (q, scale, axis)
    found = {}
    for init in model.graph.initializer:
        if names is not None and init.name not in names:
            continue
        array = numpy_helper.to_array(init)
        key = (array.shape, array.tobytes())
        if key in by_value:
            found[init.name] = by_value[key]
    return found
