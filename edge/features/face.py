"""The crop rule and mini-Xception preprocessing of detected faces.

The same functions prepare faces for training/calibration in `export/` and for
inference on the device, so the two cannot drift apart.

Detectors (`edge.models.detectors.open_face_detector`): "haar" (OpenCV's cascade,
edge/models/haar.py) or "blazeface" (edge/models/blazeface.py); both have
`detect(image, gray=None)` returning boxes (x, y, w, h) in frame pixels, largest first.

Crop rule ("square_margin"): the detector's box is made square around its centre
(side = the longer of width and height), grown by `margin_ratio` of that side on each
edge, and cut from the grey frame; parts outside the frame repeat the border pixels.
"""
from __future__ import annotations

from typing import Sequence, Tuple

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
