"""Face detection, the crop rule and mini-Xception preprocessing.

The same functions prepare faces for training/calibration in `export/` and for
inference on the device, so the two cannot drift apart.

Detectors (`edge.features.detectors.open_face_detector`): "haar" (OpenCV's cascade,
below) or "blazeface" (edge/features/blazeface.py); both have `detect(image, gray=None)`
returning boxes (x, y, w, h) in frame pixels, largest first.

Crop rule ("square_margin"): the detector's box is made square around its centre
(side = the longer of width and height), grown by `margin_ratio` of that side on each
edge, and cut from the grey frame; parts outside the frame repeat the border pixels.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError

Box = Tuple[int, int, int, int]  # x, y, width, height in frame pixels

DEFAULT_MARGIN_RATIO = 0.1
# uint8 pixels to the models' [-1, 1]: x * PIXEL_SCALE + PIXEL_OFFSET. The trainer uses these
# and writes them into the manifests (`preprocess.normalize`); the device reads them back.
PIXEL_SCALE = 1.0 / 127.5
PIXEL_OFFSET = -1.0


def import_cv2():
    try:
        import cv2
    except ImportError:
        raise EdgeError("OpenCV is not installed: `pip install opencv-python-headless<5`") from None
    return cv2


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grey image from a grey, BGR or BGRA uint8 image."""
    if image.ndim == 2:
        return image
    cv2 = import_cv2()
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


def square_crop(gray: np.ndarray, box: Box, margin_ratio: float = DEFAULT_MARGIN_RATIO) -> np.ndarray:
    """Cut the square, margin-grown crop of `box` from `gray` (see the crop rule)."""
    x, y, w, h = box
    side = max(w, h)
    grown = int(round(side * (1.0 + 2.0 * margin_ratio)))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = int(round(cx - grown / 2.0))
    y0 = int(round(cy - grown / 2.0))
    rows = np.clip(np.arange(y0, y0 + grown), 0, gray.shape[0] - 1)
    cols = np.clip(np.arange(x0, x0 + grown), 0, gray.shape[1] - 1)
    return gray[np.ix_(rows, cols)]


def preprocess_faces(crops: Sequence[np.ndarray], input_size: int, scale: float = PIXEL_SCALE,
                     offset: float = PIXEL_OFFSET) -> np.ndarray:
    """Grey uint8 crops -> float32 [N, 1, input_size, input_size], each pixel x as
    x * scale + offset ([-1, 1] with the defaults)."""
    cv2 = import_cv2()
    out = np.empty((len(crops), 1, input_size, input_size), dtype=np.float32)
    for i, crop in enumerate(crops):
        interpolation = cv2.INTER_AREA if min(crop.shape[:2]) > input_size else cv2.INTER_LINEAR
        resized = cv2.resize(crop, (input_size, input_size), interpolation=interpolation)
        out[i, 0] = resized
    out *= scale
    out += offset
    return out


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (ships with opencv-python-headless 4.x).

    `downscale` runs detection on a smaller copy of the frame (boxes are mapped back),
    which is the cheap knob for speed on a device.
    """

    name = "haar"

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
