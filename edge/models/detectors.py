"""Choose a face detector by name: BlazeFace (the default) or OpenCV's Haar cascade.

Kept apart from both detectors' modules so that neither imports the other.
"""
from __future__ import annotations

from typing import Optional

from edge.errors import EdgeError
from edge.models.haar import HaarFaceDetector

FACE_DETECTORS = ("haar", "blazeface")


DEFAULT_DETECTOR = "blazeface"  # the profiles' choice; see firmware_configs/README.md


def open_face_detector(name: str = DEFAULT_DETECTOR, models_dir: Optional[str] = None, threads: int = 1,
                       min_size: int = 40, downscale: float = 1.0):
    """The face detector called `name` (one of FACE_DETECTORS).

    min_size: smallest face side in frame pixels (both). downscale: the frame scale the
    Haar cascade runs at (BlazeFace always sees the whole frame at 128x128). models_dir
    and threads: where the BlazeFace model lives and its inference threads.
    """
    if name == "haar":
        return HaarFaceDetector(min_size=min_size, downscale=downscale)
    if name == "blazeface":
        from edge.models.blazeface import BlazeFaceDetector  # imports a TFLite interpreter: only when asked

        return BlazeFaceDetector(models_dir=models_dir, threads=threads, min_size=min_size)
    raise EdgeError(f"unknown face detector {name!r}; choose one of: {', '.join(FACE_DETECTORS)}")
