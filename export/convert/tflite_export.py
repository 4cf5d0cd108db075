"""PyTorch -> TFLite with litert-torch: fp32, and full int8 through PT2E static quantization.

Why this route (see TOOLCHAIN.md): litert-torch keeps max-pool padding exact (-inf) and
its PT2E int8 output was the most accurate and smallest of the routes tried; onnx2tf
padded max-pool with zeros and rewrote its input. Every file is passed through
`compact_tflite` (internal names dropped, identical vectors shared; outputs unchanged).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from export.convert.tflite_compact import compact_tflite


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("litert_torch").setLevel(logging.ERROR)


def _write(edge_model, path: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.tflite"
        edge_model.export(str(raw))
        path.write_bytes(compact_tflite(raw.read_bytes()))
    return path


def export_tflite_fp32(model: torch.nn.Module, sample: Sequence[torch.Tensor], path: Path) -> Path:
    _quiet()
    import litert_torch

    return _write(litert_torch.convert(model.eval(), tuple(sample)), path)


def export_tflite_int8(model: torch.nn.Module, sample: Sequence[torch.Tensor], path: Path,
                       calibration: np.ndarray) -> Path:
    """Weights int8 per channel, activations int8 per tensor (calibrated with a histogram
    observer on `calibration`, one sample at a time); input int8, output float32."""
    return _write(convert_int8(model, sample, calibration), path)


def convert_int8(model: torch.nn.Module, sample: Sequence[torch.Tensor], calibration: np.ndarray):
    """The litert-torch model of `export_tflite_int8`, before it is written and compacted."""
    _quiet()
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model.eval(), tuple(sample)).module(), quantizer)
    with torch.no_grad():
        for item in calibration:
            prepared(torch.from_numpy(item[None]))
    converted = convert_pt2e(prepared, fold_quantize=False)
    return litert_torch.convert(converted, tuple(sample), quant_config=QuantConfig(pt2e_quantizer=quantizer))
