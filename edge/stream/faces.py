"""Face tracking between detections: detect every N analysed frames, track in between.

The detector (Haar on a downscaled frame, or BlazeFace) is the expensive stage. Between detections
the face is followed by template matching: the face patch from the last detection,
scaled to TEMPLATE_SIDE pixels, is searched (normalised cross-correlation) in a window
around the last box, and the box moves to the best match (its size is kept). A match
weaker than `min_score` means the face is lost and forces a re-detection; with no face
known, every analysed frame is a detection.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from edge.features.face import Box, import_cv2

TEMPLATE_SIDE = 24  # pixels of the face template: cheap to match, enough to lock on
SEARCH_MARGIN = 0.5  # search window: the box grown by this share of its side on each edge


class FaceTracker:
    """The largest face of each analysed frame, detecting only every `detect_every` frames."""

    def __init__(self, detector, detect_every: int = 5, min_score: float = 0.6):
        self.detector = detector
        self.detect_every = max(1, int(detect_every))
        self.min_score = float(min_score)
        self.detections = 0
        self.reuses = 0
        self.faces_seen = 0  # faces the latest detection found (the largest is followed)
        self.box: Optional[Box] = None
        self._since = 0
        self._template: Optional[np.ndarray] = None
        self._scale = 1.0

    def needs_detection(self, gray: np.ndarray) -> bool:
        """True when this frame must run the detector (schedule, or no face known)."""
        return self.box is None or self._since + 1 >= self.detect_every

    def detect(self, gray: np.ndarray, image: Optional[np.ndarray] = None) -> Optional[Box]:
        """Run the detector on this frame and restart tracking from its largest face.

        gray: the grey frame (tracking works on it); image: the frame as captured (BGR),
        for a detector that wants colour (BlazeFace); None gives it the grey frame.
        """
        boxes = self.detector.detect(gray if image is None else image, gray)
        self.detections += 1
        self.faces_seen = len(boxes)
        self._since = 0
        self.box = tuple(int(v) for v in boxes[0]) if boxes else None  # largest first
        self._template = None
        if self.box is not None:
            cv2 = import_cv2()
            x, y, w, h = self.box
            self._scale = TEMPLATE_SIDE / float(max(w, h))
            patch = _clipped(gray, self.box)
            if patch is not None:
                self._template = cv2.resize(patch, None, fx=self._scale, fy=self._scale,
                                            interpolation=cv2.INTER_AREA)
        return self.box

    def track(self, gray: np.ndarray) -> Tuple[Optional[Box], float]:
        """Follow the last box by template matching: (box or None when lost, score)."""
        self._since += 1
        if self.box is None or self._template is None:
            return None, 0.0
        cv2 = import_cv2()
        x, y, w, h = self.box
        margin = int(round(SEARCH_MARGIN * max(w, h)))
        window_box = (x - margin, y - margin, w + 2 * margin, h + 2 * margin)
        window = _clipped(gray, window_box)
        if window is None:
            return None, 0.0
        x0, y0 = max(0, window_box[0]), max(0, window_box[1])
        small = cv2.resize(window, None, fx=self._scale, fy=self._scale, interpolation=cv2.INTER_AREA)
        th, tw = self._template.shape[:2]
        if small.shape[0] < th or small.shape[1] < tw:
            return None, 0.0
        scores = cv2.matchTemplate(small, self._template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if not np.isfinite(best) or best < self.min_score:
            return None, float(best) if np.isfinite(best) else 0.0
        self.box = (int(round(x0 + bx / self._scale)), int(round(y0 + by / self._scale)), w, h)
        self.reuses += 1
        return self.box, float(best)

    def reset(self) -> None:
        """Forget the face and the counters: the next session starts from a detection."""
        self.box = None
        self._template = None
        self._since = 0
        self.detections = 0
        self.reuses = 0
        self.faces_seen = 0


def _clipped(gray: np.ndarray, box: Box) -> Optional[np.ndarray]:
    x, y, w, h = box
    height, width = gray.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return gray[y0:y1, x0:x1]
