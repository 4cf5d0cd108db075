"""Load the models a config names (only their backends are imported: RSS matters)."""
from __future__ import annotations

from typing import Optional

from edge.backends import open_backend
from edge.emotion import EmotionClassifier
from edge.manifest import ModelManifest, load_manifest
from edge.stream.severity import SeverityStream


class NamedEmotionClassifier(EmotionClassifier):
    """EmotionClassifier for the model folder a config names (the shipped one is mini_xception)."""

    def __init__(self, name: str, backend: str, precision: str, models_dir: Optional[str] = None,
                 threads: int = 1):
        self.manifest = load_manifest(name, models_dir)
        self.file = self.manifest.find_file(backend, precision)
        self.backend = open_backend(backend, self.manifest.verified_path(self.file), threads=threads)
        pre = self.manifest.preprocess
        self.input_size = int(pre["input_size"][0])
        self.margin_ratio = float(pre["crop"]["margin_ratio"])
        self.labels = self.manifest.labels


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
    classifier = NamedEmotionClassifier(emotion.name, emotion.backend, emotion.precision, models_dir,
                                        config.threads)
    severity_cfg = config.models.severity
    if not severity_cfg.enabled:
        return classifier, None, None
    manifest = load_manifest(severity_cfg.name, models_dir)
    entry = manifest.find_file(severity_cfg.backend, severity_cfg.precision)
    stream = SeverityStream.from_file(manifest, entry, config.threads, severity_cfg.context)
    return classifier, stream, manifest
