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

# The public API (edge.engine), imported on first use so that `import edge` stays light
# for the CLI's quick commands (PEP 562).
__all__ = ["DEMO_WEIGHTS_NOTICE", "SCREENING_DISCLAIMER", "Screener", "ScreenerOptions", "Session",
           "SessionResult", "SourceRun", "Tick"]
_API = ("Screener", "ScreenerOptions", "Session", "SessionResult", "SourceRun", "Tick", "VoteResult", "PHQ8Result",
        "DataQuality", "ModelInfo", "RunningEstimate")


def __getattr__(name: str):
    if name in _API:
        from edge import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
