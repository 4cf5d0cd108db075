"""The facial-emotion model's wrapper (mini-Xception): manifest -> verified file -> backend.

    manifest = load_manifest("mini_xception")
    classifier = EmotionClassifier(manifest, manifest.find_file("tflite", "int8"))
    probs = classifier.classify(gray_frame, boxes)   # [n_faces, 7], labels in .labels

Boxes come from a detector in the model's framing (edge.features.face: Haar's boxes, or
BlazeFace's mapped to them); each is cut by the manifest's crop rule, and a reading is the
mean of the model's probabilities over the views of `averaging` (the face and its mirror by
default: edge.features.face.face_views), which keeps readings steady under box jitter.

Which file to open (by backend and precision, `auto` included) is the loader's choice:
edge.precision.load_emotion("tflite", "auto") picks it (measured once on this CPU, cached).

Labels are the FER2013 emotion names and stay so: an emotion is not a diagnosis.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from edge.errors import EdgeError
from edge.features.face import AVERAGING, DEFAULT_AVERAGING, Box, face_views, preprocess_faces, square_crop
from edge.manifest import ModelManifest, image_contract

MODEL_NAME = "mini_xception"


class EmotionClassifier:
    def __init__(self, manifest: ModelManifest, entry: dict, threads: int = 1,
                 providers: Optional[Sequence[str]] = None, averaging: str = DEFAULT_AVERAGING):
        """`manifest`: the model's (its folder, e.g. MODEL_NAME); `entry`: the file of it to run
        (one of `manifest.files`, sha256 checked on opening); `providers`: onnxruntime execution
        providers in order of preference (absent ones fall back to the CPU); `averaging`: the
        views averaged into one reading (edge.features.face.AVERAGING)."""
        if averaging not in AVERAGING:
            raise EdgeError(f"unknown averaging {averaging!r}; choose one of: {', '.join(AVERAGING)}")
        self.averaging = averaging
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

    @property
    def crop_rule(self) -> str:
        """The crop rule as results report it, e.g. "square_margin 0.1"."""
        return f"square_margin {self.margin_ratio:g}"

    def crops(self, gray: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """Model inputs [n, 1, S, S] for the faces at `boxes` in the grey frame."""
        return preprocess_faces([square_crop(gray, b, self.margin_ratio) for b in boxes], self.input_size,
                                self.pixel_scale, self.pixel_offset)

    def infer(self, faces: np.ndarray, averaging: Optional[str] = None) -> np.ndarray:
        """Probabilities [n, n_labels] for preprocessed faces [n, 1, S, S]: per face the mean
        over the views of `averaging` (default: this classifier's), one backend call a view."""
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        views = face_views(faces, self.averaging if averaging is None else averaging)
        out = np.empty((len(faces), len(self.labels)), dtype=np.float32)
        for i, face_views_i in enumerate(views):
            out[i] = np.mean([self.backend.run(view[None])[0][0] for view in face_views_i], axis=0)
        return out

    def classify(self, gray: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        return self.infer(self.crops(gray, boxes))
