"""The public engine API (edge.Screener): models loaded once, push and source mode giving
the same ticks, typed results, audio-only and video-only sessions, the README's example."""
from __future__ import annotations

import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

import edge
from edge.config import parse_config
from edge.engine import PHQ8Result, Screener, ScreenerOptions, SessionResult, Tick, VoteResult
from edge.errors import EdgeError
from edge.features.face import import_cv2

ROOT = Path(__file__).resolve().parent.parent
DEMO_VIDEO = str(ROOT / "edge" / "samples" / "demo_face.mp4")
DEMO_WAV = str(ROOT / "edge" / "samples" / "demo_speech.wav")


@pytest.fixture(scope="module")
def screener():
    config = parse_config({"output": {"database": None}})
    with Screener(ScreenerOptions(config)) as loaded:
        yield loaded


def demo_frames():
    cv2 = import_cv2()
    capture = cv2.VideoCapture(DEMO_VIDEO)
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames, fps


def demo_audio():
    with wave.open(DEMO_WAV, "rb") as f:
        assert f.getframerate() == 16000 and f.getnchannels() == 1
        return np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768.0


def test_push_mode_and_source_mode_give_the_same_ticks(screener):
    source_run = screener.run(video=DEMO_VIDEO, audio=DEMO_WAV, fast=True)
    from_sources = list(source_run)
    frames, fps = demo_frames()
    audio = demo_audio()
    rng = np.random.default_rng(0)
    pushed = []  # by callback: the ticks that close when the session ends come this way too
    with screener.session(video=True, audio=True, video_fps=fps, on_tick=pushed.append) as session:
        a = 0
        for i, image in enumerate(frames):  # every frame, with audio in random-size pieces between
            returned = session.push_frame(image, timestamp_ms=i * 1000.0 / fps)
            n = min(int(rng.integers(200, 1000)), len(audio) - a)
            returned += session.push_audio(audio[a:a + n], timestamp_ms=a / 16.0)
            assert returned == pushed[len(pushed) - len(returned):]  # returned and called back alike
            a += n
        session.push_audio(audio[a:], timestamp_ms=a / 16.0)
    result = session.result
    assert isinstance(result, SessionResult) and result.complete
    assert len(from_sources) == len(pushed) == 50
    for a_tick, b_tick in zip(from_sources, pushed):
        assert isinstance(a_tick, Tick)
        np.testing.assert_array_equal(a_tick.features, b_tick.features)
        assert (a_tick.frames, a_tick.faces, a_tick.phq8) == (b_tick.frames, b_tick.faces, b_tick.phq8)
    assert source_run.result.vote == result.vote and source_run.result.phq8 == result.phq8


def test_results_are_typed_and_serialise(screener):
    run = screener.run(video=DEMO_VIDEO, audio=DEMO_WAV, fast=True)
    result = run.run()
    assert isinstance(result.vote, VoteResult) and result.vote.status == "ok" and result.vote.level == "No"
    assert isinstance(result.phq8, PHQ8Result) and result.phq8.status == "ok"
    low, high = result.phq8.interval
    assert 0 <= low <= result.phq8.mu <= high <= 24 and result.phq8.band
    assert result.phq8.note == edge.DEMO_WEIGHTS_NOTICE and result.demo_weights
    assert result.quality.frames_in == 150 and result.quality.frames_analysed == 50
    assert result.models["emotion"].sha256 and result.models["severity"].file
    data = result.to_dict()
    assert data["screening"]["phq8"]["interval"] == [low, high]
    assert data["notice"] == edge.SCREENING_DISCLAIMER and data["abstentions"] == []


def test_many_sessions_on_one_load(screener):
    """Models load once; each session starts from a zero LSTM state and a fresh tracker."""
    first = screener.run(video=DEMO_VIDEO, audio=DEMO_WAV, fast=True, duration_s=1.0).run()
    again = screener.run(video=DEMO_VIDEO, audio=DEMO_WAV, fast=True, duration_s=1.0).run()
    assert first.session_id != again.session_id
    assert first.phq8 == again.phq8 and first.quality.frames_with_face == again.quality.frames_with_face
    assert first.timings["counters"]["face_detections"] == again.timings["counters"]["face_detections"]


def test_one_session_at_a_time(screener):
    session = screener.session(video=False, audio=True)
    with pytest.raises(EdgeError, match="still running"):
        screener.session(video=False, audio=True)
    session.finish()
    with pytest.raises(EdgeError, match="is finished"):
        session.push_audio(np.zeros(160, np.float32))


def test_audio_only_session_is_first_class(screener):
    result = screener.run(video=None, audio=DEMO_WAV, fast=True).run()
    assert result.complete and result.duration_s == 5.0
    assert result.vote.status == "abstained" and result.vote.reason.startswith("no video")
    # The estimate comes from the audio alone (the LSTM-MoE's visual inputs zero), and says so.
    assert result.phq8.status == "ok" and result.phq8.input == "audio only: visual inputs zero"
    assert result.to_dict()["screening"]["phq8"]["input"] == result.phq8.input
    assert result.abstentions == [f"emotion vote: {result.vote.reason}"]
    assert result.sources == {"video": None, "audio": DEMO_WAV}


def test_a_session_with_no_audio_says_why(screener):
    result = screener.run(video=DEMO_VIDEO, audio=None, fast=True).run()
    assert result.complete and result.vote.status == "ok"
    assert result.phq8.status == "abstained" and "no audio" in result.phq8.reason
    assert result.quality.voiced_share == 0.0


def test_a_camera_that_stops_half_way_gives_a_typed_result(screener):
    """Push mode: video stops at 2.5 s while audio goes on to 5 s."""
    frames, fps = demo_frames()
    audio = demo_audio()
    with screener.session(video=True, audio=True, video_fps=fps) as session:
        for i, image in enumerate(frames[:75]):
            session.push_frame(image, i * 1000.0 / fps)
        session.end_video()
        session.push_audio(audio)
    result = session.result
    assert result.quality.gaps["video"] == [[2.5, 5.0, "video ended before the audio"]]
    assert result.quality.face_share == 0.5 and result.duration_s == 5.0
    assert result.vote.status == "abstained" and "25 analysed frames with a face" in result.vote.reason
    assert result.abstentions == [f"emotion vote: {result.vote.reason}"]
    assert result.phq8.status == "ok" and result.complete


def test_a_live_camera_decoding_only_analysed_frames_gives_the_same_readings(screener):
    """The live path grabs every frame but decodes only those that open an analysis slot:
    a session fed from it counts every frame and gives the readings of one fed every frame
    decoded (the path before issue 23), tick for tick."""
    from edge.capture.clock import Backoff
    from edge.capture.queues import END
    from edge.capture.video import Frame, VideoReader, open_video_source

    frames, fps = demo_frames()
    jitter_s = [0.0, 0.004, 0.011, 0.002, 0.007]  # a camera's frames do not come on the dot
    times = [i / fps + jitter_s[i % 5] for i in range(len(frames))]

    class Clock:
        t = 0.0

        def now_s(self):
            return self.t

    class Camera:  # OpenCV's grab()/retrieve(); frame i comes at times[i]
        def __init__(self):
            self.grabbed, self.decoded = 0, 0

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return self.grabbed < len(frames)

        def grab(self):
            if self.grabbed >= len(frames):
                return False
            clock.t = times[self.grabbed]
            self.grabbed += 1
            return True

        def retrieve(self):
            self.decoded += 1
            return True, frames[self.grabbed - 1].copy()

        def set(self, *args):
            return True

        def release(self):
            pass

    clock, camera = Clock(), Camera()
    cameras = [camera]
    source = open_video_source("camera:0", capture_factory=lambda *a: cameras.pop(0) if cameras else camera)
    reader = VideoReader(source, clock, queue_frames=len(frames) + 1, backoff=Backoff(0.01, 0.02),
                         analysis_fps=screener.config.video.analysis_fps).start()
    live = []
    while len(live) < len(frames):
        item = reader.queue.get(timeout_s=5.0)
        assert item is not None and item is not END
        live.append(item)
    reader.stop()
    assert camera.decoded == 50 and sum(f.image is not None for f in live) == 50  # 10 of 30 a second

    def session_of(feed):
        ticks = []  # by callback: the ticks that close when the session ends come this way too
        with screener.session(video=True, audio=False, video_fps=fps, on_tick=ticks.append) as session:
            for frame in feed:
                session.push(frame)
        return ticks, session.result

    live_ticks, live_result = session_of(live)
    every_ticks, every_result = session_of(Frame(i, t, t, image) for i, (t, image) in enumerate(zip(times, frames)))
    assert live_result.quality.frames_in == every_result.quality.frames_in == len(frames)
    assert live_result.quality.frames_analysed == every_result.quality.frames_analysed == 50
    assert live_result.quality.frames_with_face > 40 and len(live_ticks) == 50
    assert [t.to_dict() for t in live_ticks] == [t.to_dict() for t in every_ticks]
    assert live_result.vote.to_dict() == every_result.vote.to_dict()
    assert live_result.phq8.to_dict() == every_result.phq8.to_dict()


def test_push_mode_checks_its_inputs(screener):
    with screener.session(video=True, audio=True) as session:
        session.push_frame(np.zeros((48, 64, 3), np.uint8), 0.0)
        with pytest.raises(ValueError, match="increase"):
            session.push_frame(np.zeros((48, 64, 3), np.uint8), 0.0)
        with pytest.raises(ValueError, match="uint8"):
            session.push_frame(np.zeros((48, 64, 3), np.float32), 10.0)
        with pytest.raises(ValueError, match="NaN"):
            session.push_audio(np.full(160, np.nan, np.float32))
        ticks = session.push_audio(np.zeros(1600, np.float32), timestamp_ms=0)
        ticks += session.push_audio(np.zeros(1600, np.float32), timestamp_ms=500)  # 400 ms missing
    assert session.result.quality.audio_gap_s == pytest.approx(0.4)


def test_the_readme_example_runs(tmp_path):
    """The README's Python example, as written, on the bundled sample."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "Screener" in b)
    script = tmp_path / "example.py"
    script.write_text(example)
    proc = subprocess.run([sys.executable, str(script)], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Screening aid only, not a diagnosis." in proc.stdout

