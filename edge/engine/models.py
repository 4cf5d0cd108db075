"""Load the models a config names (only their backends are imported: RSS matters).

The files are chosen (precision fp32, int8 or auto) by the loaders of edge.precision.
"""
from __future__ import annotations

from typing import Optional

from edge.manifest import ModelManifest, load_manifest
from edge.precision import load_emotion, load_severity


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
