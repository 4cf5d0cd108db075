"""Load the models a config names (only their backends are imported: RSS matters).

The files are chosen (precision fp32, int8 or auto) by the loaders of edge.precision.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from edge.manifest import ModelManifest, load_manifest
from edge.manifest import models_dir as resolve_models_dir
from edge.models.release import Release, verify_release
from edge.precision import load_emotion, load_severity


def verify_models(config, models_dir: Optional[str] = None) -> Release:
    """The models folder (--models-dir, else $EDGE_MODELS_DIR, else the package's) checked
    against its signed release for the profile's `models.release_key`, before any model
    loads; one-line EdgeError when it is unsigned or wrongly signed (edge/models/release.py).
    Its folder is the resolved path (an update's `current` link is read once, here)."""
    folder = Path(resolve_models_dir(models_dir)).resolve()
    return verify_release(folder, config.models.release_key)


def emotion_flops(manifest: ModelManifest) -> int:
    """FLOPs of one face through the emotion model (manifest `flops.flops`), 0 if absent."""
    return int(manifest.data.get("flops", {}).get("flops", 0) or 0)


def severity_flops(manifest: ModelManifest) -> int:
    """FLOPs of one 100 ms step of the LSTM-MoE (manifest `flops.<config>.per_tick`)."""
    flops = manifest.data.get("flops", {})
    config_name = manifest.data.get("config", {}).get("name", "")
    per_tick = flops.get(config_name, {}).get("per_tick", {})
    return int(per_tick.get("flops_onnx") or per_tick.get("flops_fvcore") or 0)


def load_models(config, models_dir: Optional[str] = None):
    """(emotion classifier, severity stream or None, severity manifest or None) per config."""
    emotion = config.models.emotion
    classifier = load_emotion(emotion.backend, emotion.precision, models_dir, config.threads, name=emotion.name,
                              providers=emotion.providers)
    severity_cfg = config.models.severity
    if not severity_cfg.enabled:
        return classifier, None, None
    manifest = load_manifest(severity_cfg.name, models_dir)
    stream = load_severity(manifest, severity_cfg.backend, severity_cfg.precision, config.threads,
                           severity_cfg.context, providers=severity_cfg.providers)
    return classifier, stream, manifest
