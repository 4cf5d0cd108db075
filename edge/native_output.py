"""Quiet the chatter of native libraries (PortAudio, LiteRT, OpenCV/FFmpeg).

Their C code prints to file descriptor 2 or through its own logger, around our one-line
messages: ALSA probing a box without a sound card, LiteRT's `INFO: Created TensorFlow
Lite XNNPACK delegate for CPU.` on every interpreter, OpenCV's decoder complaints.
Real failures still reach the user: the calls raise, and we say what to do.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, Optional, Union


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (what C code writes there)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # stderr replaced (tests, services)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(devnull)
        os.close(saved)


def set_opencv_log_level(cv2, level: Union[str, int] = "ERROR") -> Optional[int]:
    """Set OpenCV's own log level ("SILENT", "ERROR", ...) and return the previous one
    (None when this build has no cv2.utils.logging); pass it back as an int to restore."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        return None
    previous = log.getLogLevel()
    log.setLogLevel(level if isinstance(level, int) else getattr(log, "LOG_LEVEL_" + level))
    return previous
