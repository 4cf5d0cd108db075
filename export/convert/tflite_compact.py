"""Shrink a converted .tflite file without changing what it computes.

Where the bytes of litert-torch's int8 mini-Xception went (111 KB for 58 K weights):
  * tensor names, the PyTorch module paths: about 15 KB;
  * per-channel quantization: every weight and bias channel stores a float32 scale and
    an int64 zero point (always 0 for symmetric weights): 2,240 channels, about 27 KB;
  * a `shape_signature` copy of every static shape.
This pass drops internal tensor names (model inputs and outputs keep theirs, so the
signature still works), drops shape signatures equal to the shape, and writes each
distinct constant vector once: flatbuffers allows several tables to point at one
vector, so the hundreds of identical all-zero zero-point vectors share a few copies.
Parity tests run on the compacted file, never on the converter's original.
"""
from __future__ import annotations

from typing import Dict, Tuple

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema


class _DedupBuilder(flatbuffers.Builder):
    """A Builder that writes identical numpy vectors once and reuses their offset."""

    def __init__(self, size: int):
        super().__init__(size)
        self._vectors: Dict[Tuple[str, bytes], int] = {}

    def CreateNumpyVector(self, x):  # noqa: N802 - flatbuffers' own method name
        array = np.asarray(x)
        key = (array.dtype.str, array.tobytes())
        if key not in self._vectors:
            self._vectors[key] = super().CreateNumpyVector(array)
        return self._vectors[key]


def compact_tflite(data: bytes) -> bytes:
    """Return `data` (a .tflite flatbuffer) in fewer bytes (see the module docstring)."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    for graph in model.subgraphs:
        keep_names = set(graph.inputs) | set(graph.outputs)
        for index, tensor in enumerate(graph.tensors):
            if index not in keep_names:
                tensor.name = b""
            if tensor.shapeSignature is not None and list(tensor.shapeSignature) == list(tensor.shape):
                tensor.shapeSignature = None
    builder = _DedupBuilder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
