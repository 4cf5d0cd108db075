"""Store the conv filters of an fp32 .tflite as int8 + DEQUANTIZE (weight-only int8).

Input: the fp32 file converted from a fake-quantized PyTorch model (export.convert.
weight_quant), whose filters are exactly q * scale, and the table of those (q, scale).
Each matching CONV_2D / DEPTHWISE_CONV_2D filter becomes an int8 tensor with per-channel
scales, read through a DEQUANTIZE op into the float tensor the conv already used. The
runtime dequantizes a constant once when it prepares the graph, so the convolutions run
in float (the same kernels as the fp32 file) and the answers do not depend on the CPU's
int8 kernels. We write the integers ourselves rather than through ai-edge-quantizer's
weight-only recipe, which would re-derive scales from the rounded weights (moving the
GPTQ grid) and which needs the tensor names that `compact_tflite` drops.
"""
from __future__ import annotations

from typing import Dict, Tuple

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

# TFLite filter layouts: CONV_2D [O, kh, kw, I], DEPTHWISE_CONV_2D [1, kh, kw, C].
_LAYOUT = {schema.BuiltinOperator.CONV_2D: ((0, 2, 3, 1), 0),
           schema.BuiltinOperator.DEPTHWISE_CONV_2D: ((1, 2, 3, 0), 3)}


def _opcode_index(model, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _buffer_array(model, tensor) -> np.ndarray:
    data = model.buffers[tensor.buffer].data
    if data is None or tensor.type != schema.TensorType.FLOAT32:
        return None
    return np.frombuffer(bytes(bytearray(data)), dtype=np.float32).reshape(list(tensor.shape))


def int8_filters(data: bytes, table: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> Tuple[bytes, int]:
    """Return (new .tflite bytes, number of filters stored as int8). Every entry of `table`
    must match exactly one conv filter of the file (bit-exact float values), else ValueError."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    graph = model.subgraphs[0]
    candidates = {}
    for name, (q, scale) in table.items():
        for builtin, (axes, qdim) in _LAYOUT.items():
            values = (q.astype(np.float32) * scale.reshape((-1,) + (1,) * (q.ndim - 1))).transpose(axes)
            candidates[(builtin, values.shape, values.tobytes())] = (name, q.transpose(axes), scale, qdim)
    dequantize = _opcode_index(model, schema.BuiltinOperator.DEQUANTIZE)
    new_ops, done = [], set()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin in _LAYOUT:
            filt = graph.tensors[op.inputs[1]]
            values = _buffer_array(model, filt)
            key = None if values is None else (builtin, values.shape, values.tobytes())
            if key in candidates:
                name, q, scale, qdim = candidates[key]
                new_ops.append(_dequantize_op(model, graph, op.inputs[1], q, scale, qdim, dequantize))
                done.add(name)
        new_ops.append(op)
    missing = set(table) - done
    if missing:
        raise ValueError(f"no conv filter in the .tflite matches {sorted(missing)}")
    graph.operators = new_ops
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), len(done)


def _dequantize_op(model, graph, float_index: int, q: np.ndarray, scale: np.ndarray, qdim: int, opcode: int):
    """Add an int8 constant holding `q` and a DEQUANTIZE from it into tensor `float_index`,
    whose own constant buffer is emptied."""
    float_tensor = graph.tensors[float_index]
    buf = schema.BufferT()
    buf.data = np.ascontiguousarray(q, dtype=np.int8).reshape(-1).view(np.uint8)
    model.buffers.append(buf)
    model.buffers[float_tensor.buffer].data = None  # the float copy is not stored any more
    float_tensor.buffer = 0  # buffer 0 is TFLite's empty sentinel: a computed tensor
    quant = schema.QuantizationParametersT()
    quant.scale = np.asarray(scale, dtype=np.float32)
    quant.zeroPoint = np.zeros(len(scale), dtype=np.int64)
    quant.quantizedDimension = qdim
    tensor = schema.TensorT()
    tensor.shape = np.asarray(q.shape, dtype=np.int32)
    tensor.type = schema.TensorType.INT8
    tensor.buffer = len(model.buffers) - 1
    tensor.name = b""
    tensor.quantization = quant
    graph.tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = np.asarray([len(graph.tensors) - 1], dtype=np.int32)
    op.outputs = np.asarray([float_index], dtype=np.int32)
    return op
