"""onnxruntime backend: CPU, with CUDA/TensorRT execution providers when present."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from edge.backends.base import Backend, TensorSpec
from edge.errors import EdgeError, first_line

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
              "tensor(int64)": "int64", "tensor(int32)": "int32"}


def _import_ort():
    try:
        import onnxruntime
    except ImportError:
        raise EdgeError("onnxruntime is not installed; `pip install onnxruntime` or use --backend tflite") from None
    return onnxruntime


class OnnxBackend(Backend):
    kind = "onnx"

    def __init__(self, path: Path, threads: int = 1, providers: Optional[Sequence[str]] = None):
        super().__init__()
        ort = _import_ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        have = ort.get_available_providers()
        wanted = list(providers) if providers else ["CPUExecutionProvider"]
        # Fall back to the CPU for any provider this build of onnxruntime lacks.
        chosen = [p for p in wanted if p in have] or ["CPUExecutionProvider"]
        if "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EdgeError(f"cannot load ONNX model {path}: {first_line(exc)}") from None
        self.providers = self.session.get_providers()
        self.inputs = [self._spec(i) for i in self.session.get_inputs()]
        self.outputs = [self._spec(o) for o in self.session.get_outputs()]
        self._input_names = [i.name for i in self.inputs]

    @staticmethod
    def _spec(node) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
        return TensorSpec(node.name, shape, _ORT_TYPES.get(node.type, node.type))

    def _run(self, arrays) -> List[np.ndarray]:
        feeds = {name: np.asarray(a, dtype=np.float32) for name, a in zip(self._input_names, arrays)}
        return self.session.run(None, feeds)

    @property
    def description(self) -> str:
        return f"onnxruntime {self._version()} ({', '.join(self.providers)})"

    @staticmethod
    def _version() -> str:
        return _import_ort().__version__
