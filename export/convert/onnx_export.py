"""PyTorch -> ONNX fp32 (TorchScript exporter) and ONNX int8 (onnxruntime static QDQ)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

OPSET = 17


def export_onnx(model: torch.nn.Module, sample: Sequence[torch.Tensor], path: Path,
                input_names: Sequence[str], output_names: Sequence[str],
                dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None) -> Path:
    """Export `model` in eval mode with the TorchScript exporter (opset 17)."""
    torch.onnx.export(model.eval(), tuple(sample), str(path), dynamo=False, opset_version=OPSET,
                      input_names=list(input_names), output_names=list(output_names),
                      dynamic_axes=dynamic_axes or {})
    onnx.checker.check_model(str(path))
    return path


class _ArrayReader(CalibrationDataReader):
    def __init__(self, input_name: str, batches: np.ndarray):
        self._batches: Iterator = iter([{input_name: b[None]} for b in batches])

    def get_next(self):
        return next(self._batches, None)


def quantize_onnx_static(fp32_path: Path, out_path: Path, input_name: str, calibration: np.ndarray) -> Path:
    """Static int8 QDQ (per-channel symmetric weights, activations calibrated on real data)."""
    prepared = out_path.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepared), str(out_path), _ArrayReader(input_name, calibration),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        prepared.unlink(missing_ok=True)
    return out_path
