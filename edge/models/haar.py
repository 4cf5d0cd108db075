"""OpenCV's frontal-face Haar cascade: the light face detector (no model file of ours).

    detector = HaarFaceDetector(min_size=60, downscale=0.5)
    boxes = detector.detect(frame_bgr)        # [(x, y, w, h), ...], largest first

The cascade file ships with opencv-python-headless 4.x; edge.models.detectors picks this
detector or BlazeFace by name.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np

from edge.errors import EdgeError
from edge.features.face import Box, import_cv2, to_gray


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (ships with opencv-python-headless 4.x).

    `downscale` runs detection on a smaller copy of the frame (boxes are mapped back),
    which is the cheap knob for speed on a device.
    """

    name = "haar"
    framing_rule = "haar"  # its boxes are the emotion model's framing (edge.features.face)

    def __init__(self, cascade_path: Optional[str] = None, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 40, downscale: float = 1.0):
        cv2 = import_cv2()
        if not hasattr(cv2, "CascadeClassifier"):
            raise EdgeError(
                f"OpenCV {cv2.__version__} has no Haar cascades (removed in 5.x): "
                "install opencv-python-headless<5"
            )
        if cascade_path is None:
            cascade_path = str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
        self.cascade = cv2.CascadeClassifier(cascade_path)
        if self.cascade.empty():
            raise EdgeError(f"cannot load the Haar cascade {cascade_path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.downscale = downscale

    def detect(self, image: np.ndarray, gray: Optional[np.ndarray] = None) -> List[Box]:
        """Face boxes (x, y, w, h) in frame pixels, largest first.

        image: the grey, BGR or BGRA uint8 frame; gray: its grey version when the caller
        already has it (the cascade works on grey; this saves a conversion).
        """
        cv2 = import_cv2()
        if gray is None:
            gray = to_gray(image)
        small = gray
        if self.downscale != 1.0:
            small = cv2.resize(gray, None, fx=self.downscale, fy=self.downscale,
                               interpolation=cv2.INTER_AREA)
        min_side = max(8, int(self.min_size * self.downscale))
        found = self.cascade.detectMultiScale(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side))
        boxes = [tuple(int(round(v / self.downscale)) for v in box) for box in found]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes
