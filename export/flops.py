"""FLOP counting: fvcore on the PyTorch model, cross-checked on the exported ONNX graph.

Convention: fvcore counts one fused multiply-add as one "flop", i.e. it counts MACs.
We report MACs and FLOPs = 2 x MACs, and say so wherever a number is printed.
"""
from __future__ import annotations

import logging
import warnings
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import onnx
import torch
from fvcore.nn import FlopCountAnalysis
from onnx import shape_inference


def fvcore_macs(model: torch.nn.Module, inputs: Sequence[torch.Tensor],
                handles: Dict[str, object] = None) -> Dict[str, object]:
    """MACs counted by fvcore, by operator, with the operators it skipped."""
    analysis = FlopCountAnalysis(model.eval(), tuple(inputs))
    for name, handle in (handles or {}).items():
        analysis.set_op_handle(name, handle)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # fvcore traces the model with torch.jit; its TracerWarnings are about Python
        # control flow that is constant for the counted input, not about the count.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        total = int(analysis.total())
    return {"macs": total, "by_operator": {k: int(v) for k, v in analysis.by_operator().items()},
            "skipped": dict(analysis.unsupported_ops())}


def lstm_macs_handle(inputs, outputs) -> int:
    """fvcore handle for `aten::lstm`: MACs of every layer and direction over all steps.

    Per step and layer: the gate matmuls 4H x (n_in + H) plus 3H for the cell update
    (f*c, i*g, o*tanh(c)), the same convention as `onnx_macs`. Sizes are read from the
    op's own inputs (input shape, weight shapes, batch_first), not from the module.
    """
    x_shape = inputs[0].type().sizes()
    has_biases = inputs[3].toIValue()
    batch_first = inputs[8].toIValue()
    steps, batch = (x_shape[1], x_shape[0]) if batch_first else (x_shape[0], x_shape[1])
    weights = [v.type().sizes() for v in inputs[2].node().inputs()]
    per_layer_direction = 4 if has_biases else 2
    macs = 0
    for i in range(0, len(weights), per_layer_direction):
        w_ih, w_hh = weights[i], weights[i + 1]
        hidden = w_hh[1]
        macs += w_ih[0] * w_ih[1] + w_hh[0] * w_hh[1] + 3 * hidden
    return int(steps * batch * macs)


LSTM_HANDLES = {"aten::lstm": lstm_macs_handle}


def _dims(value_info) -> list:
    # A symbolic dimension (dynamic batch) counts as 1: MACs are per single input.
    return [d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim]


def onnx_macs(model_path: str, input_shapes: Optional[Mapping[str, Sequence[int]]] = None) -> Dict[str, int]:
    """An independent MAC count from the ONNX graph (Conv, Gemm/MatMul, LSTM), by op type.

    input_shapes fixes dynamic axes (e.g. {"features": [1, 5000, 40]}) before shape
    inference; without it a dynamic axis would count as 0.
    """
    model = onnx.load(model_path)
    for graph_input in model.graph.input:
        if input_shapes and graph_input.name in input_shapes:
            dims = graph_input.type.tensor_type.shape.dim
            for dim, value in zip(dims, input_shapes[graph_input.name]):
                dim.Clear()
                dim.dim_value = int(value)
    if input_shapes:
        # Shapes stored at export time would pin the old sizes.
        del model.graph.value_info[:]
        for graph_output in model.graph.output:
            graph_output.type.tensor_type.shape.Clear()
    model = shape_inference.infer_shapes(model)
    graph = model.graph
    shapes = {vi.name: _dims(vi) for vi in list(graph.value_info) + list(graph.input) + list(graph.output)}
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    counts: Dict[str, int] = {}
    for node in graph.node:
        macs = 0
        if node.op_type == "Conv":
            out = shapes[node.output[0]]
            w = shapes[node.input[1]]
            macs = int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            # Output elements x the reduced dimension (Gemm may transpose A or B).
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            reduced = a[-2] if trans_a else a[-1]
            macs = int(np.prod(out)) * int(reduced)
        elif node.op_type == "LSTM":
            x, w = shapes[node.input[0]], shapes[node.input[1]]
            batch_major = any(at.name == "layout" and at.i == 1 for at in node.attribute)
            steps, batch = (x[1], x[0]) if batch_major else (x[0], x[1])
            directions, four_h, n_in = w
            hidden = four_h // 4
            # Gate matmuls (input and recurrent) plus the elementwise cell update (3 per unit).
            macs = steps * batch * directions * (four_h * (n_in + hidden) + 3 * hidden)
        if macs:
            counts[node.op_type] = counts.get(node.op_type, 0) + macs
    counts["total"] = sum(counts.values())
    return counts
