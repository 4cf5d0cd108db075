"""The facial-emotion model's wrapper (mini-Xception): manifest -> verified file -> backend.

    manifest = load_manifest("mini_xception")
    classifier = EmotionClassifier(manifest, manifest.find_file("tflite", "int8"))
    probs = classifier.classify(gray_frame, boxes)   # [n_faces, 7], labels in .labels

Which file to open (by backend and precision, `auto` included) is the loader's choice:
edge.precision.load_emotion("tflite", "auto") picks it (measured once on this CPU, cached).

Labels are the FER2013 emotion names and stay so: an emotion is not a diagnosis.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from edge.errors import EdgeError
from edge.features.face import Box, preprocess_faces, square_crop
from edge.manifest import ModelManifest, image_contract

MODEL_NAME = "mini_xception"


class EmotionClassifier:
    def __init__(self, manifest: ModelManifest, entry: dict, threads: int = 1,
                 providers: Optional[Sequence[str]] = None):
        """`manifest`: the model's (its folder, e.g. MODEL_NAME); `entry`: the file of it to run
        (one of `manifest.files`, sha256 checked on opening); `providers`: onnxruntime execution
        providers in order of preference (absent ones fall back to the CPU)."""
        self.manifest = manifest
        self.file = entry
        self.precision_reason = ""  # why this file (edge.precision), when a loader chose it
        self.backend = manifest.open(entry, threads=threads, providers=providers)
        # The manifest says how faces are cut and scaled, and the order of the labels.
        contract = image_contract(self.manifest, layout="NCHW", color="gray")
        self.input_size = contract.input_size
        self.pixel_scale, self.pixel_offset = contract.scale, contract.offset
        self.margin_ratio = contract.margin_ratio
        self.labels = self.manifest.labels
        if not self.labels:
            raise EdgeError(f"manifest of {manifest.folder.name} lists no labels; rebuild it with `make models`")

    def crops(self, gray: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """Model inputs [n, 1, S, S] for the faces at `boxes` in the grey frame."""
        return preprocess_faces([square_crop(gray, b, self.margin_ratio) for b in boxes], self.input_size,
                                self.pixel_scale, self.pixel_offset)

    def infer(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities [n, n_labels] for preprocessed faces (one backend call each)."""
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate([self.backend.run(face[None])[0] for face in faces])

    def classify(self, gray: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        return self.infer(self.crops(gray, boxes))
