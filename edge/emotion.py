"""The facial-emotion model on the device: manifest -> verified file -> backend.

    classifier = EmotionClassifier(backend="tflite", precision="int8")
    probs = classifier.classify(gray_frame, boxes)   # [n_faces, 7], labels in .labels

Labels are the FER2013 emotion names and stay so: an emotion is not a diagnosis.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from edge.backends import BACKENDS
from edge.errors import EdgeError
from edge.features.face import Box, preprocess_faces, square_crop
from edge.manifest import image_contract, load_manifest
from edge.precision import resolve

MODEL_NAME = "mini_xception"


class EmotionClassifier:
    def __init__(self, backend: str = "tflite", precision: str = "int8",
                 models_dir: Optional[str] = None, threads: int = 1, name: str = MODEL_NAME,
                 providers: Optional[Sequence[str]] = None):
        """`name`: the model folder; `precision`: fp32, int8 or auto (edge.precision);
        `providers`: onnxruntime execution providers in order of preference (absent ones
        fall back to the CPU)."""
        if backend not in BACKENDS:
            raise EdgeError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.manifest = load_manifest(name, models_dir)
        # precision "auto": the fastest file that agrees with fp32 on this CPU (measured once, cached)
        choice = resolve(self.manifest, backend, precision, threads)
        self.file, self.precision_reason = choice.entry, choice.reason
        self.backend = self.manifest.open(self.file, threads=threads, providers=providers)
        # The manifest says how faces are cut and scaled, and the order of the labels.
        contract = image_contract(self.manifest, layout="NCHW", color="gray")
        self.input_size = contract.input_size
        self.pixel_scale, self.pixel_offset = contract.scale, contract.offset
        self.margin_ratio = contract.margin_ratio
        self.labels = self.manifest.labels
        if not self.labels:
            raise EdgeError(f"manifest of {name} lists no labels; rebuild it with `make models`")

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
