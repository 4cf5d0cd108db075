"""The stream engine: chunk-by-chunk equals one piece, tick timing, tracking, state carry."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from edge.capture.audio import AudioGap
from edge.capture.video import Frame
from edge.features.face import import_cv2
from edge.features.tick import TICK_FEATURE_COUNT, TICK_SAMPLES
from edge.models.haar import HaarFaceDetector
from edge.models.severity import SeverityStream
from edge.precision import load_emotion
from edge.stream.engine import StreamEngine
from edge.stream.faces import FaceTracker

ROOT = Path(__file__).resolve().parent.parent
DEMO_VIDEO = ROOT / "edge" / "samples" / "demo_face.mp4"
DEMO_WAV = ROOT / "edge" / "samples" / "demo_speech.wav"
SECONDS = 2.0


@pytest.fixture(scope="module")
def recording():
    """The first 2 s of the bundled demo session: 60 frames (30 fps) and 32000 samples."""
    cv2 = import_cv2()
    cap = cv2.VideoCapture(str(DEMO_VIDEO))
    frames = []
    while len(frames) < int(SECONDS * 30):
        ok, image = cap.read()
        assert ok
        frames.append(Frame(len(frames), len(frames) / 30.0, 0.0, image))
    cap.release()
    with wave.open(str(DEMO_WAV), "rb") as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768.0
    return frames, pcm[: int(SECONDS * 16000)]


@pytest.fixture(scope="module")
def classifier():
    return load_emotion("tflite", "int8")


def make_engine(classifier, backend="onnx", **kw):
    tracker = FaceTracker(HaarFaceDetector(min_size=60, downscale=0.5), detect_every=5)
    severity = SeverityStream.from_manifest(backend=backend, precision="fp32")
    return StreamEngine(classifier, tracker, severity, analysis_fps=10, **kw)


def run_whole(engine, frames, audio):
    ticks = []
    for frame in frames:
        ticks += engine.push_frame(frame)
    ticks += engine.push_audio(audio)
    return ticks + engine.finish()


def run_chunked(engine, frames, audio, seed):
    """Random-size audio chunks interleaved at random with the frames."""
    rng = np.random.default_rng(seed)
    ticks, f, a = [], 0, 0
    while f < len(frames) or a < len(audio):
        if a >= len(audio) or (f < len(frames) and rng.random() < 0.5):
            for _ in range(int(rng.integers(1, 7))):
                if f < len(frames):
                    ticks += engine.push_frame(frames[f])
                    f += 1
        else:
            n = int(rng.integers(1, 4000))
            ticks += engine.push_audio(audio[a:a + n])
            a += n
    return ticks + engine.finish()


@pytest.mark.parametrize("seed", [0, 1])
def test_chunk_by_chunk_gives_the_one_piece_outputs(recording, classifier, seed):
    frames, audio = recording
    whole = run_whole(make_engine(classifier), frames, audio)
    chunked = run_chunked(make_engine(classifier), frames, audio, seed)
    assert len(whole) == len(chunked) == 20
    assert [t.index for t in chunked] == list(range(20))
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a.features, b.features)
        assert a.severity == b.severity
        assert (a.frames, a.faces) == (b.frames, b.faces)


def test_ticks_are_100ms_with_the_configured_analysis_rate(recording, classifier):
    frames, audio = recording
    engine = make_engine(classifier)
    ticks = run_whole(engine, frames, audio)
    assert engine.frames_in == 60 and engine.frames_analysed == 20  # 10 of 30 fps
    assert all(t.frames == 1 for t in ticks)  # one analysed frame per 100 ms tick
    assert engine.face_frames == 20 and all(t.faces == 1 for t in ticks)
    assert engine.tracker.detections < engine.frames_analysed  # tracking between detections
    assert np.stack([t.features for t in ticks]).shape == (20, TICK_FEATURE_COUNT)
    assert [t.severity.steps for t in ticks] == list(range(1, 21))
    assert all(t.severity.note == "demo weights, not for screening" for t in ticks)
    assert engine.voiced_share() > 0.2  # the sample has speech


def test_carried_state_equals_one_shot_over_the_session(recording, classifier):
    frames, audio = recording
    engine = make_engine(classifier)
    ticks = run_whole(engine, frames, audio)
    one_shot = engine.severity.window_estimate(np.stack([t.features for t in ticks]))
    assert abs(one_shot.mu - ticks[-1].severity.mu) < 1e-3
    assert abs(one_shot.sigma - ticks[-1].severity.sigma) < 1e-3


def test_a_tick_waits_for_both_streams(recording, classifier):
    frames, audio = recording
    engine = make_engine(classifier)
    closed = []
    for frame in frames[:30]:  # 1 s of video, no audio yet
        closed += engine.push_frame(frame)
    assert closed == []
    closed += engine.push_audio(audio[: 5 * TICK_SAMPLES])
    assert [t.index for t in closed] == [0, 1, 2, 3, 4]


def test_no_face_and_audio_gaps(classifier):
    engine = make_engine(classifier)
    blank = np.full((480, 640, 3), 90, np.uint8)
    ticks = []
    for i in range(15):
        ticks += engine.push_frame(Frame(i, i / 30.0, 0.0, blank))
    ticks += engine.push_audio(AudioGap(TICK_SAMPLES * 2, "microphone lost"))
    ticks += engine.push_audio(np.zeros(TICK_SAMPLES * 3, np.float32))
    ticks += engine.finish()
    assert len(ticks) == 5
    assert engine.face_frames == 0 and all(t.emotions is None for t in ticks)
    assert [t.audio_gap for t in ticks] == [True, True, False, False, False]
    assert engine.audio_gap_samples == 2 * TICK_SAMPLES
    assert all(t.features[7] == 0.0 for t in ticks)  # face_present


def test_video_only_and_audio_only_sessions(recording, classifier):
    frames, audio = recording
    video_only = make_engine(classifier, has_audio=False)
    ticks = run_whole(video_only, frames, np.zeros(0, np.float32))
    assert len(ticks) == 20
    audio_only = make_engine(classifier, has_video=False)
    ticks = audio_only.push_audio(audio[:TICK_SAMPLES * 3 + 5]) + audio_only.finish()
    assert len(ticks) == 4 and audio_only.frames_analysed == 0


def face_box(tracker, gray):
    """The box for one analysed frame, as StreamEngine._analyse gets it: track between
    scheduled detections, detect when due or when the track is lost."""
    box = None
    if not tracker.needs_detection(gray):
        box, _ = tracker.track(gray)
    return box if box is not None else tracker.detect(gray)


def test_tracker_follows_a_moving_face_and_redetects_when_lost(recording):
    frames, _ = recording
    gray = [import_cv2().cvtColor(f.image, import_cv2().COLOR_BGR2GRAY) for f in frames]
    tracker = FaceTracker(HaarFaceDetector(min_size=60, downscale=0.5), detect_every=100)
    first = face_box(tracker, gray[0])
    assert first is not None
    boxes = [face_box(tracker, g) for g in gray[1::3]]
    assert tracker.detections == 1 and all(b is not None for b in boxes)
    reference = HaarFaceDetector(min_size=60, downscale=0.5).detect(gray[-1])[0]
    centre = lambda b: np.array([b[0] + b[2] / 2, b[1] + b[3] / 2])  # noqa: E731
    assert np.linalg.norm(centre(boxes[-1]) - centre(reference)) < 0.25 * reference[2]
    blank = np.full_like(gray[0], 90)
    assert face_box(tracker, blank) is None  # match fails -> re-detect -> no face
    assert tracker.detections == 2


def test_the_vote_keeps_only_its_frames_and_counts_the_rest(recording, classifier):
    """Constant memory: the engine keeps the first vote_frames face rows (what the vote
    reads) and counts the others; per-tick data leaves with each tick."""
    frames, audio = recording
    engine = make_engine(classifier, vote_frames=8)
    ticks = run_whole(engine, frames, audio)
    assert engine.face_frames == 20 and engine.vote_frames.count == 20
    assert engine.vote_frames.rows().shape == (8, 7)
    first = [t.emotions for t in ticks if t.faces][:8]  # one face a tick: the first 8 rows
    np.testing.assert_allclose(engine.vote_frames.rows(), np.stack(first), atol=1e-6)
    kept = {k: len(v) for k, v in vars(engine).items() if isinstance(v, (list, dict)) and len(v)}
    assert kept == {}, kept  # nothing per frame or per tick is left behind
