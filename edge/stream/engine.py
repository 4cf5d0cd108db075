"""The stream engine: frames and audio in, one fused 100 ms tick at a time out.

    engine = StreamEngine(classifier, tracker, severity, analysis_fps=10)
    for frame in frames:  ticks = engine.push_frame(frame)     # Frame from edge.capture.video
    for chunk in audio:   ticks += engine.push_audio(chunk)    # 16 kHz float32 or AudioGap
    ticks += engine.finish()

Time is media time: a frame carries its session time `t_s`, audio its sample count.
Tick k covers [k * 100 ms, (k + 1) * 100 ms). A frame is analysed (face + emotion)
when it is the first in a new slot of 1 / analysis_fps seconds. Tick k is closed (tick
vector assembled, LSTM-MoE advanced one step with its carried state) once both streams
have passed its end, or ended. Because every decision depends only on timestamps and
sample counts, a session fed in any chunking, in any interleaving of the two streams,
gives the same ticks (tests/test_stream_engine.py checks it).

Memory is constant over a session of any length: what the session summary needs is
kept as running aggregates (counts, the voiced sum, the last severity estimate) and the
first `vote_frames` face rows the vote rule reads; tick vectors leave with their
TickResult (the caller streams them to disk when it wants them).
"""
from __future__ import annotations

import collections
import math
import time
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np

from edge.capture.audio import AudioGap
from edge.capture.clock import analysis_slot
from edge.features.face import to_gray
from edge.features.tick import (
    TICK_FEATURES,
    TICK_MS,
    TICK_SAMPLES,
    TickFeatureAssembler,
    VisualTick,
)
from edge.models.severity import SeverityEstimate
from edge.telemetry import LatencySamples, StageTimer

_EPS = 1e-6
_VOICED = TICK_FEATURES.index("voiced_ratio")


class TickResult(NamedTuple):
    """One closed tick: index, start time (s), the tick vector, frames analysed, faces
    seen, the mean emotion probabilities of its faces (or None), the severity estimate
    after it (or None without a severity model), whether its audio was a gap, the last
    face box (x, y, w, h in frame fractions, or None), the most faces one detection saw
    in the tick, and the mean grey level (0..255) of its analysed frames (None without)."""

    index: int
    t_s: float
    features: np.ndarray
    frames: int
    faces: int
    emotions: Optional[np.ndarray]
    severity: Optional[SeverityEstimate]
    audio_gap: bool
    face_box: Optional[np.ndarray] = None
    faces_in_view: int = 0
    brightness: Optional[float] = None


class VoteFrames:
    """The first `capacity` face rows of a session, in order (what the vote rule reads),
    in one preallocated array; later rows are counted, not kept."""

    def __init__(self, capacity: int, width: int = 7) -> None:
        self._rows = np.zeros((max(1, int(capacity)), width), np.float32)
        self.count = 0  # every row offered, kept or not

    def append(self, row: np.ndarray) -> None:
        if self.count < len(self._rows):
            self._rows[self.count] = row
        self.count += 1

    def rows(self) -> np.ndarray:
        return self._rows[:min(self.count, len(self._rows))]


class _SampleFifo:
    """Pending audio samples as a queue of chunks: push and take are O(chunk), where one
    growing array would copy everything pending on every chunk (O(n^2) over a session)."""

    def __init__(self) -> None:
        self._chunks: collections.deque = collections.deque()
        self._offset = 0  # samples of the first chunk already taken
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, samples: np.ndarray) -> None:
        if len(samples):
            self._chunks.append(samples)
            self._size += len(samples)

    def take(self, n: int) -> np.ndarray:
        """Up to `n` samples from the front (fewer when fewer are pending)."""
        parts = []
        want = n
        while want > 0 and self._chunks:
            head = self._chunks[0]
            part = head[self._offset:self._offset + want]
            parts.append(part)
            want -= len(part)
            self._offset += len(part)
            if self._offset >= len(head):
                self._chunks.popleft()
                self._offset = 0
        taken = n - want
        self._size -= taken
        if not parts:
            return np.zeros(0, np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class _VisualAccumulator:
    def __init__(self) -> None:
        self.frames = 0
        self.probs: List[np.ndarray] = []
        self.boxes: List[np.ndarray] = []
        self.faces_in_view = 0
        self.brightness_sum = 0.0


class StreamEngine:
    """Analyses frames, fuses per tick and advances the severity stream (see module doc).

    classifier: an EmotionClassifier (crops/infer); tracker: a FaceTracker; severity: a
    SeverityStream or None. has_video/has_audio: which streams will come (a tick waits
    for each stream that is expected and not finished). now_s: the session clock, to
    measure a frame's age at inference. keep_media: keep face crops and audio (only
    for `store_media: true`).
    """

    def __init__(self, classifier, tracker, severity=None, analysis_fps: float = 10.0,
                 has_video: bool = True, has_audio: bool = True, timer: Optional[StageTimer] = None,
                 now_s: Optional[Callable[[], float]] = None, keep_media: bool = False,
                 vote_frames: int = 1200):
        self.classifier = classifier
        self.tracker = tracker
        self.severity = severity
        self.analysis_fps = float(analysis_fps)
        self.has_video = has_video
        self.has_audio = has_audio
        self.timer = timer or StageTimer()
        self.now_s = now_s
        self.keep_media = keep_media
        self.assembler = TickFeatureAssembler()
        self.next_tick = 0
        self.video_done = not has_video
        self.audio_done = not has_audio
        self._latest_video_tick = -1
        self._last_slot = -1
        self._visual: Dict[int, _VisualAccumulator] = {}
        self._audio = _SampleFifo()  # samples from tick `next_tick` on
        self._audio_total = 0
        self._gap_ranges: List[List[int]] = []  # [start, end) sample ranges that were gaps
        # Session record (for screening and the summary): running aggregates only.
        self.frames_in = 0
        self.frames_analysed = 0
        self.face_frames = 0
        self.vote_frames = VoteFrames(vote_frames, len(getattr(classifier, "labels", ())) or 7)
        self.frame_ages_ms = LatencySamples()
        self.last_estimate: Optional[SeverityEstimate] = None
        self._voiced_sum = 0.0
        self._audio_ticks_heard = 0  # ticks whose audio was not (even partly) a gap
        self.audio_gap_samples = 0
        self.media_crops: List[np.ndarray] = []
        self.media_audio: List[np.ndarray] = []

    # ----- video ---------------------------------------------------------------------
    def push_frame(self, frame) -> List[TickResult]:
        """Take one Frame (index, t_s, captured_s, image); returns the ticks it closed.
        A frame whose image is None was only grabbed, not decoded (a file reader skips
        decoding frames that will not be analysed): it counts, but is not analysed."""
        self.frames_in += 1
        if frame.decode_ms:  # grab_ms: a file frame that was not decoded (it is not analysed)
            self.timer.add("decode_ms" if frame.image is not None else "grab_ms", frame.decode_ms)
        tick = int(math.floor(frame.t_s * 1000.0 / TICK_MS + _EPS))
        if tick < self.next_tick:  # late frame of a closed tick: count it in the open one
            tick = self.next_tick
        slot = analysis_slot(frame.t_s, self.analysis_fps)
        if slot > self._last_slot and frame.image is not None:
            self._last_slot = slot
            self._analyse(frame, self._visual.setdefault(tick, _VisualAccumulator()))
        self._latest_video_tick = max(self._latest_video_tick, tick)
        return self._close_ready()

    def _analyse(self, frame, acc: _VisualAccumulator) -> None:
        timer = self.timer
        acc.frames += 1
        self.frames_analysed += 1
        with timer.stage("gray_ms"):
            gray = to_gray(frame.image)
        acc.brightness_sum += float(gray[::8, ::8].mean())
        box = None
        if not self.tracker.needs_detection(gray):
            with timer.stage("track_ms"):
                box, _ = self.tracker.track(gray)
        if box is None:  # on schedule, or the tracked face was lost
            with timer.stage("detect_ms"):
                box = self.tracker.detect(gray, frame.image)
            acc.faces_in_view = max(acc.faces_in_view, self.tracker.faces_seen)
        if box is None:
            return
        with timer.stage("preprocess_ms"):
            faces = self.classifier.crops(gray, [box])
        with timer.stage("infer_emotion_ms"):
            probs = self.classifier.infer(faces)[0]
        if self.now_s is not None:
            self.frame_ages_ms.append((self.now_s() - frame.captured_s) * 1000.0)
        height, width = gray.shape[:2]
        x, y, w, h = box
        acc.probs.append(np.asarray(probs, np.float32))
        acc.boxes.append(np.array([x / width, y / height, w / width, h / height], np.float32))
        self.face_frames += 1
        self.vote_frames.append(probs)
        if self.keep_media:
            self.media_crops.append(np.clip((faces[0, 0] + 1.0) * 127.5, 0, 255).astype(np.uint8))

    def advance_video(self, t_s: float) -> List[TickResult]:
        """A live camera is away: no frame before `t_s` will come, so ticks may close
        without it (a frame that still comes late counts in the open tick)."""
        tick = int(math.floor(t_s * 1000.0 / TICK_MS + _EPS))
        self._latest_video_tick = max(self._latest_video_tick, tick)
        return self._close_ready()

    def end_video(self) -> List[TickResult]:
        self.video_done = True
        return self._close_ready()

    # ----- audio ---------------------------------------------------------------------
    def push_audio(self, chunk) -> List[TickResult]:
        """Take 16 kHz mono float32 samples or an AudioGap; returns the ticks it closed."""
        if isinstance(chunk, AudioGap):
            start = self._audio_total
            samples = np.zeros(int(chunk.samples), np.float32)
            self._gap_ranges.append([start, start + len(samples)])
            self.audio_gap_samples += len(samples)
        else:
            samples = np.asarray(chunk, np.float32).reshape(-1)
            if self.keep_media:
                self.media_audio.append((np.clip(samples, -1, 1) * 32767).astype(np.int16))
        self._audio.push(samples)
        self._audio_total += len(samples)
        return self._close_ready()

    def end_audio(self) -> List[TickResult]:
        self.audio_done = True
        return self._close_ready()

    # ----- fusion --------------------------------------------------------------------
    def _end_tick(self) -> int:
        """Tick count of the whole session once both streams ended."""
        return max(self.video_ticks, self.audio_ticks)

    def _closable(self, k: int) -> bool:
        if self.video_done and self.audio_done:
            return k < self._end_tick()
        if not self.video_done and k >= self._latest_video_tick:
            return False
        return self.audio_done or self._audio_total >= (k + 1) * TICK_SAMPLES

    def _close_ready(self) -> List[TickResult]:
        closed = []
        while self._closable(self.next_tick):
            closed.append(self._close_tick(self.next_tick))
            self.next_tick += 1
        return closed

    def _tick_audio(self, k: int):
        if not self.has_audio:
            return None, False
        samples = self._audio.take(TICK_SAMPLES)
        if len(samples) < TICK_SAMPLES:  # end of stream (or a stream that stopped early): silence
            samples = np.concatenate([samples, np.zeros(TICK_SAMPLES - len(samples), np.float32)])
        start, end = k * TICK_SAMPLES, (k + 1) * TICK_SAMPLES
        gap = any(a < end and b > start for a, b in self._gap_ranges)
        # Ticks only move forward: a range that ends here cannot touch a later tick.
        while self._gap_ranges and self._gap_ranges[0][1] <= end:
            self._gap_ranges.pop(0)
        return samples, gap

    def _close_tick(self, k: int) -> TickResult:
        with self.timer.stage("fusion_ms"):
            return self._fuse_tick(k)

    def _fuse_tick(self, k: int) -> TickResult:
        timer = self.timer
        acc = self._visual.pop(k, None) or _VisualAccumulator()
        probs = np.stack(acc.probs) if acc.probs else np.zeros((0, 7), np.float32)
        boxes = np.stack(acc.boxes) if acc.boxes else np.zeros((0, 4), np.float32)
        samples, gap = self._tick_audio(k)
        with timer.stage("audio_features_ms"):
            # Audio features are the larger part of a tick's assembly; the visual part is a few means.
            vector = self.assembler.tick(VisualTick(acc.frames, probs, boxes), samples)
        estimate = None
        if self.severity is not None:
            with timer.stage("infer_severity_ms"):
                estimate = self.severity.step(vector)
            self.last_estimate = estimate
        if self.has_audio and not gap:  # a gap (start, outage) is not silence: not in the share
            self._voiced_sum += float(vector[_VOICED])
            self._audio_ticks_heard += 1
        return TickResult(k, k * TICK_MS / 1000.0, vector, acc.frames, len(acc.probs),
                          probs.mean(axis=0) if len(probs) else None, estimate, gap,
                          boxes[-1].copy() if len(boxes) else None, acc.faces_in_view,
                          acc.brightness_sum / acc.frames if acc.frames else None)

    def finish(self) -> List[TickResult]:
        """End both streams and close every remaining tick."""
        started = time.perf_counter()
        self.video_done = True
        self.audio_done = True
        closed = self._close_ready()
        self.timer.add("finish_ms", (time.perf_counter() - started) * 1000.0)
        return closed

    # ----- session record ------------------------------------------------------------
    @property
    def ticks(self) -> int:
        """Ticks closed so far."""
        return self.next_tick

    @property
    def video_ticks(self) -> int:
        """Ticks that the video reached (up to its latest frame)."""
        return self._latest_video_tick + 1

    @property
    def audio_ticks(self) -> int:
        """Ticks that the audio reached (gaps included)."""
        return -(-self._audio_total // TICK_SAMPLES)

    def voiced_share(self) -> float:
        """Share of the 10 ms audio frames that were voiced, over the ticks that were heard
        (ticks with a gap: the microphone starting, lost, or overflowing, are left out)."""
        return self._voiced_sum / self._audio_ticks_heard if self._audio_ticks_heard else 0.0
