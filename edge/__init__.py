"""Edge runtime of the depression-screening package (device side: no torch).

A screening aid, not a diagnosis.
"""
import os

__version__ = "0.1.0"

# OpenCV's FFmpeg backend reads this once, when cv2 is first imported: without it a
# truncated MP4 prints `moov atom not found` before our own one-line error. setdefault
# keeps a user's own setting (e.g. to debug a stream).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

SCREENING_DISCLAIMER = "Screening aid only, not a diagnosis."
DEMO_WEIGHTS_NOTICE = "demo weights, not for screening"
