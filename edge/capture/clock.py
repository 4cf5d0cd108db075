"""The one clock of a session: time.monotonic(), in seconds since the session started."""
from __future__ import annotations

import math
import time

_EPS = 1e-6


def analysis_slot(t_s: float, analysis_fps: float) -> int:
    """The analysis slot of a frame at media time `t_s`: a frame is analysed (face and
    emotion) when it is the first of a new slot of 1 / analysis_fps seconds. The stream
    engine decides with this, and a file reader uses it to decode only those frames."""
    return int(math.floor(t_s * analysis_fps + _EPS))


class SessionClock:
    """Seconds since `start()` on the monotonic clock (never jumps with wall-clock changes)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def start(self) -> None:
        self.t0 = time.monotonic()

    def now_s(self) -> float:
        return time.monotonic() - self.t0


class Backoff:
    """Retry delays for a device that went away: 0.25 s doubling up to `max_s`."""

    def __init__(self, first_s: float = 0.25, max_s: float = 4.0):
        self.first_s = first_s
        self.max_s = max_s
        self.next_s = first_s

    def delay(self) -> float:
        delay = self.next_s
        self.next_s = min(self.max_s, self.next_s * 2.0)
        return delay

    def reset(self) -> None:
        self.next_s = self.first_s
