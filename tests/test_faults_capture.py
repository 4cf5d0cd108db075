"""Camera and microphone faults through a whole session (Screener.run, as `edge run` does):
the session goes on, records the gap or the problem, and never raises. A real camera or
sound card does not exist here, so fake cv2.VideoCapture / pyaudio stand-ins (the models
are tests/test_capture.py's) give the faults; everything after them is the real code."""
from __future__ import annotations

import subprocess
import threading
import time

import numpy as np
import pytest
from faults_helpers import ROOT, assert_one_line_error, edge_cmd, write_profile
from test_capture import FakePyAudio, FakeStream

from edge.config import parse_config
from edge.engine import Screener, ScreenerOptions


@pytest.fixture(scope="module")
def screener(tmp_path_factory):
    out = tmp_path_factory.mktemp("capture-out")
    return Screener(ScreenerOptions(parse_config({"output": {"dir": str(out), "database": None}})))


class Camera:
    """A fake cv2.VideoCapture at ~30 fps: `frames` images from `make(i)`, then nothing;
    `stall_at`: read() blocks `stall_s` once at that frame."""

    def __init__(self, frames=10 ** 6, make=None, stall_at=None, stall_s=0.0):
        self.left = frames
        self.make = make or (lambda i: np.full((120, 160, 3), 90, np.uint8))
        self.i = 0
        self.stall_at, self.stall_s = stall_at, stall_s

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.left > 0

    def read(self):
        if self.left <= 0:
            return False, None
        if self.i == self.stall_at:
            time.sleep(self.stall_s)
        self.left -= 1
        self.i += 1
        time.sleep(1 / 30)
        return True, self.make(self.i)

    def set(self, *args):
        return True

    def get(self, *args):
        return 0.0

    def release(self):
        self.left = 0


def cameras(*plan):
    """A capture factory giving the planned cameras in turn, then cameras that never open."""
    queue = list(plan)
    return lambda *args: queue.pop(0) if queue else Camera(0)


def run(screener, factory=None, video="camera:0", audio=None, duration_s=1.5, pyaudio_module=None):
    ticks = []
    source_run = screener.run(video, audio, duration_s=duration_s, capture_factory=factory,
                              pyaudio_module=pyaudio_module, on_tick=ticks.append)
    started = time.monotonic()
    result = source_run.run()
    return result, ticks, time.monotonic() - started


# ----- camera -------------------------------------------------------------------------
def test_a_camera_that_cannot_be_opened_at_start(tmp_path):
    """A real `edge run` on a camera index that does not exist here: one line, exit 2, no session."""
    proc = subprocess.run(edge_cmd("run", "--config", str(write_profile(tmp_path)), "--camera", "9",
                                   "--duration", "1"), cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, "camera 9 cannot be opened")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))


def test_a_camera_that_disappears_mid_session_and_comes_back(screener):
    result, ticks, _ = run(screener, cameras(Camera(15), Camera(0), Camera()), duration_s=2.0)
    assert result.complete and str(result.stop_reason) == "duration reached"
    gaps = result.quality.gaps.get("video")
    assert gaps and 0.3 < gaps[0][0] < 1.0 and gaps[0][1] > gaps[0][0]
    assert len(ticks) >= 18  # the ticks went on through the outage


def test_a_camera_that_disappears_for_good(screener):
    result, ticks, elapsed = run(screener, cameras(Camera(10)), duration_s=1.5)
    # Ticks close without video once the camera is silent for LIVE_VIDEO_GRACE_S (0.5 s).
    assert result.complete and len(ticks) >= 9 and elapsed < 10
    assert result.quality.gaps["video"][0][1] >= 1.0  # open to the end of the session


ODD_FRAMES = [
    ((120, 160), np.uint8), ((120, 160, 1), np.uint8), ((120, 160, 4), np.uint8), ((120, 160, 2), np.uint8),
    ((120, 160, 3), np.uint16), ((120, 160, 3), np.float32), ((120, 160, 3), np.float64),
    ((120, 160, 3), np.int8), ((120, 160, 3), np.bool_), ((0, 0, 3), np.uint8), ((1, 1, 3), np.uint8),
    ((2, 160, 3), np.uint8), ((120,), np.uint8), ((120, 160, 3, 1), np.uint8), ((1080, 1920, 3), np.uint8),
]


@pytest.mark.parametrize("shape, dtype", ODD_FRAMES, ids=lambda v: str(v))
def test_frames_of_the_wrong_size_or_type(screener, shape, dtype):
    result, ticks, _ = run(screener, cameras(Camera(make=lambda i: np.full(shape, 1, dtype))), duration_s=0.7)
    unusable = shape[-1:] == (2,) or dtype in (np.int8, np.bool_) or 0 in shape or len(shape) not in (2, 3)
    assert result.complete, result.stop_reason
    assert len(ticks) >= (2 if unusable else 6)  # unusable: ticks close as for an absent camera
    skipped = [w for w in result.warnings if "unusable shape or type" in w]
    assert bool(skipped) == unusable, result.warnings
    if not unusable:
        assert result.quality.frames_analysed >= 1


def test_frames_that_change_size_and_type_every_frame(screener):
    kinds = [((120, 160, 3), np.uint8), ((48, 64), np.uint8), ((240, 320, 4), np.uint8), ((0, 5, 3), np.uint8),
             ((60, 80, 3), np.float32), ((7, 3, 3), np.uint8)]

    def make(i):
        shape, dtype = kinds[i % len(kinds)]
        return np.random.default_rng(i).integers(0, 255, shape).astype(dtype)

    result, ticks, _ = run(screener, cameras(Camera(make=make)), duration_s=1.5)
    assert result.complete and len(ticks) >= 14


def test_a_camera_that_stalls(screener):
    """read() blocks for 2 s once: the ticks go on without video and the session ends on time."""
    result, ticks, elapsed = run(screener, cameras(Camera(stall_at=10, stall_s=2.0)), duration_s=2.5)
    assert result.complete and str(result.stop_reason) == "duration reached"
    assert len(ticks) >= 20 and elapsed < 8


# ----- microphone ---------------------------------------------------------------------
class SilentMic(FakePyAudio):
    def __init__(self, **kw):
        super().__init__(**kw)
        outer = self

        class Stream(FakeStream):
            def read(self, n, exception_on_overflow=True):
                time.sleep(n / self.rate)
                outer.reads += 1
                return b"\0\0" * n

        base = self.PyAudio

        class PyAudio(base):
            def open(self, rate, **kw):
                return Stream(outer, rate)

        self.PyAudio = PyAudio


class BurstyMic(FakePyAudio):
    """Reads return at once (a device delivering faster than real time): the queue overflows."""

    def __init__(self, **kw):
        super().__init__(**kw)
        outer = self

        class Stream(FakeStream):
            def read(self, n, exception_on_overflow=True):
                outer.reads += 1
                return (np.sin(np.arange(n) * 0.3) * 8000).astype("<i2").tobytes()

        base = self.PyAudio

        class PyAudio(base):
            def open(self, rate, **kw):
                return Stream(outer, rate)

        self.PyAudio = PyAudio


def test_microphone_silent_all_session(screener):
    result, ticks, _ = run(screener, None, video=None, audio="mic", duration_s=3.5, pyaudio_module=SilentMic())
    assert result.complete and len(ticks) >= 30
    assert result.quality.voiced_share == 0.0
    assert result.phq8.status == "abstained" and result.phq8.reason


def test_microphone_that_disappears_mid_session(screener):
    # A device that gives chunks as they are recorded (realtime): the time it is away is lost.
    result, ticks, _ = run(screener, None, video=None, audio="mic", duration_s=1.5,
                           pyaudio_module=FakePyAudio(fail_after=4, realtime=True))
    assert result.complete and len(ticks) >= 14
    assert result.quality.gaps.get("audio"), result.quality.gaps


def test_microphone_at_a_rate_it_does_not_support_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    from edge.cli import main

    fake = FakePyAudio(rates=(8000,))
    monkeypatch.setitem(sys.modules, "pyaudio", fake)
    code = main(["run", "--config", str(write_profile(tmp_path)), "--mic", "default", "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "supports none of" in err


def test_microphone_at_another_rate_is_resampled(screener):
    result, ticks, _ = run(screener, None, video=None, audio="mic", duration_s=1.0,
                           pyaudio_module=FakePyAudio(rates=(44100,)))
    assert result.complete and len(ticks) >= 9
    assert any("resampled" in n for n in result.notes)


def test_microphone_overflow_is_counted_in_the_session(screener, monkeypatch):
    from edge.engine import session as session_module

    real = session_module.Session.push_audio

    def slow_push(self, samples, timestamp_ms=None):  # the device runs ahead of a slow consumer
        time.sleep(0.02)
        return real(self, samples, timestamp_ms)

    monkeypatch.setattr(session_module.Session, "push_audio", slow_push)
    from edge import updated

    screener.config = updated(screener.config, {"audio.queue_seconds": 1})
    try:
        source_run = screener.run(None, "mic", duration_s=2.0, pyaudio_module=BurstyMic())
        stopper = threading.Timer(3.0, source_run.stop, args=("test over",))
        stopper.start()
        result = source_run.run()
        stopper.cancel()
    finally:
        screener.config = updated(screener.config, {"audio.queue_seconds": 30})
    assert result.quality.audio_overflow_samples > 0
    assert result.timings["counters"]["audio_overflow_samples"] == result.quality.audio_overflow_samples
