from __future__ import annotations

import abc
from typing import List, NamedTuple, Tuple

import numpy as np


class TensorSpec(NamedTuple):
    """One model input or output as the file declares it."""

    name: str
    shape: Tuple[int, ...]
    dtype: str  # numpy dtype name of the tensor inside the file
    scale: float = 0.0  # quantization scale; 0.0 when not quantized
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and self.dtype in ("int8", "uint8", "int16")


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    info = np.iinfo(spec.dtype)
    q = np.round(x / spec.scale) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    return ((q.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)


class Backend(abc.ABC):
    """Base of the runtimes: subclasses fill `inputs`, `outputs` and implement `_run`."""

    kind = ""

    def __init__(self) -> None:
        self.inputs: List[TensorSpec] = []
        self.outputs: List[TensorSpec] = []

    def run(self, *arrays: np.ndarray) -> List[np.ndarray]:
        """Run one inference on float32 inputs given in `inputs` order; float32 outputs."""
        if len(arrays) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(arrays)}")
        return self._run(arrays)

    @abc.abstractmethod
    def _run(self, arrays) -> List[np.ndarray]:
        """Run the file on already-checked inputs (the subclass's runtime call)."""

    @property
    def description(self) -> str:
        return self.kind
