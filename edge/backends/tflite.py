"""TFLite backend: ai-edge-litert (maintained) or tflite-runtime (older devices).

Both packages expose the same `Interpreter` API. XNNPACK is the default CPU delegate
of both; `threads` sets its thread count.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

import numpy as np

from edge.backends.base import Backend, TensorSpec, dequantize, quantize
from edge.errors import EdgeError, first_line
from edge.native_output import native_stderr_silenced


def import_interpreter() -> Tuple[type, str]:
    """The Interpreter class and the name+version of the package that provides it."""
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:
        pass
    else:
        return litert.Interpreter, "ai-edge-litert " + _version("ai-edge-litert")
    try:
        from tflite_runtime import interpreter as tflite_runtime
    except ImportError:
        raise EdgeError(
            "no TFLite interpreter installed: `pip install ai-edge-litert` "
            "(or tflite-runtime on older devices), or use --backend onnx"
        ) from None
    return tflite_runtime.Interpreter, "tflite-runtime " + _version("tflite-runtime")


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version
    except ImportError:  # pragma: no cover - Python < 3.8
        return "?"
    try:
        return version(dist)
    except Exception:
        return "?"


def _order_key(detail: dict, position: int):
    # Converters name signature inputs args_0, args_1, ...; keep that order when present.
    match = re.search(r"args_(\d+)", detail["name"])
    return (int(match.group(1)) if match else position, position)


class TFLiteBackend(Backend):
    kind = "tflite"

    def __init__(self, path: Path, threads: int = 1):
        super().__init__()
        interpreter_cls, self.package = import_interpreter()
        try:
            # LiteRT prints an INFO line per interpreter (the XNNPACK delegate); a real
            # failure raises, and its message goes into our EdgeError below.
            with native_stderr_silenced():
                self.interpreter = interpreter_cls(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgeError(f"cannot load TFLite model {path}: {first_line(exc)}") from None
        ins = self.interpreter.get_input_details()
        ins = [d for _, d in sorted((_order_key(d, i), d) for i, d in enumerate(ins))]
        self._in_details = ins
        self._out_details = self.interpreter.get_output_details()
        self.inputs = [self._spec(d) for d in ins]
        self.outputs = [self._spec(d) for d in self._out_details]

    @staticmethod
    def _spec(detail: dict) -> TensorSpec:
        scale, zero_point = detail["quantization"]
        return TensorSpec(detail["name"], tuple(int(s) for s in detail["shape"]),
                          np.dtype(detail["dtype"]).name, float(scale), int(zero_point))

    def _run(self, arrays) -> List[np.ndarray]:
        it = self.interpreter
        for detail, spec, array in zip(self._in_details, self.inputs, arrays):
            array = np.asarray(array, dtype=np.float32)
            if array.shape != spec.shape:
                array = array.reshape(spec.shape)
            it.set_tensor(detail["index"], quantize(array, spec) if spec.quantized else array)
        it.invoke()
        out = []
        for detail, spec in zip(self._out_details, self.outputs):
            value = it.get_tensor(detail["index"])
            out.append(dequantize(value, spec) if spec.quantized else value)
        return out

    @property
    def description(self) -> str:
        return self.package
