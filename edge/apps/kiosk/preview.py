"""The capture screen's live preview: mirrored, downscaled JPEG frames with the face box.

The session's on_frame hook only keeps a reference to the newest frame and the box the
tracker follows (no copy, no work on the analysis path). A frame is encoded when a
viewer asks for it, once per new frame whoever asks, and at most `fps` times a second
per viewer. Frames live in memory only and are dropped when the session ends: nothing
is stored. The CPU time spent encoding and sending is counted (`cpu_s`) so the cost can
be measured on the device itself.
"""
from __future__ import annotations

import threading
import time
from typing import Optional, Tuple

JPEG_QUALITY = 70
BOX_COLOUR_BGR = (80, 200, 60)


class Preview:
    """The newest frame of the running session and its JPEG form; see the module docstring."""

    def __init__(self, width: int = 320, fps: float = 10.0):
        self.width = int(width)
        self.fps = float(fps)
        self.frames_encoded = 0
        self.cpu_s = 0.0  # encoding + sending, on the viewers' threads
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._image = None
        self._box: Optional[Tuple[int, int, int, int]] = None
        self._seq = 0
        self._jpeg: Optional[bytes] = None
        self._jpeg_seq = -1
        self._live = False
        self.generation = 0  # one per session: a viewer's stream ends with its session

    # ----- the session side ---------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._live = True
            self._image = None
            self._jpeg = None
            self.generation += 1

    def offer(self, image, box) -> None:
        """The session's newest frame (BGR) and the followed face (pixels) or None."""
        with self._lock:
            self._image = image
            self._box = None if box is None else tuple(int(v) for v in box)
            self._seq += 1
            self._changed.notify_all()

    def stop(self) -> None:
        """The session ended: forget the frame, let the viewers' streams end."""
        with self._lock:
            self._live = False
            self._image = None
            self._jpeg = None
            self._changed.notify_all()

    @property
    def live(self) -> bool:
        return self._live

    # ----- the viewer side ----------------------------------------------------------
    def current(self, generation: int) -> bool:
        """True while the session `generation` (`self.generation` when a viewer came) runs."""
        return self._live and self.generation == generation

    def next_jpeg(self, after_seq: int, timeout_s: float = 1.0,
                  generation: Optional[int] = None) -> Tuple[Optional[bytes], int]:
        """The JPEG of the first frame newer than `after_seq` (waits up to timeout_s) and
        its number; (None, after_seq) when none came, or when the session ended (or, with
        `generation`, when that session is no longer the one running)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if generation is None:
                generation = self.generation
            while self.current(generation) and self._seq <= after_seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, after_seq
                self._changed.wait(left)
            if not self.current(generation) or self._image is None:
                return None, after_seq
            if self._jpeg_seq != self._seq:
                started = time.thread_time()
                self._jpeg = self._encode(self._image, self._box)
                self._jpeg_seq = self._seq
                self.frames_encoded += 1
                self.cpu_s += time.thread_time() - started
            return self._jpeg, self._seq

    def _encode(self, image, box) -> Optional[bytes]:
        import cv2  # the engine has it loaded already (a device dependency)

        height, width = image.shape[:2]
        scale = self.width / float(width)
        small = cv2.resize(image, (self.width, max(1, int(round(height * scale)))), interpolation=cv2.INTER_AREA)
        small = cv2.flip(small, 1)  # a mirror: the visitor moves left, the picture moves left
        if box is not None:
            x, y, w, h = (int(round(v * scale)) for v in box)
            x = self.width - x - w
            cv2.rectangle(small, (x, y), (x + w, y + h), BOX_COLOUR_BGR, 2)
        ok, data = cv2.imencode(".jpg", small, [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY])
        return data.tobytes() if ok else None

    def add_cpu(self, seconds: float) -> None:
        with self._lock:
            self.cpu_s += seconds
