"""Inference backends behind one small interface (load, input/output spec, run).

    backend = open_backend("tflite", path, threads=1)
    (probs,) = backend.run(face_batch)

Inputs and outputs are float32 numpy arrays; a file with quantized (int8/uint8) I/O is
quantized and dequantized inside the backend with the file's own scale and zero point.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from edge.backends.base import Backend, TensorSpec
from edge.errors import EdgeError

BACKENDS = ("onnx", "tflite")


def open_backend(
    kind: str, path: Path, threads: int = 1, providers: Optional[Sequence[str]] = None
) -> Backend:
    """Load `path` with backend `kind` ('onnx' or 'tflite') using `threads` CPU threads."""
    if kind == "onnx":
        from edge.backends.onnx import OnnxBackend

        return OnnxBackend(path, threads=threads, providers=providers)
    if kind == "tflite":
        from edge.backends.tflite import TFLiteBackend

        return TFLiteBackend(path, threads=threads)
    raise EdgeError(f"unknown backend {kind!r}; choose one of: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "TensorSpec", "open_backend"]
