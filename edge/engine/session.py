"""One screening session over models that a Screener loaded once (push mode).

    with screener.session(video=True, audio=True) as session:
        for image, t_ms in frames:     ticks = session.push_frame(image, t_ms)
        for chunk, t_ms in audio:      ticks = session.push_audio(chunk, t_ms)
    result = session.result            # SessionResult (also returned by finish())

The caller owns the clock: frames carry their timestamp (ms since the session's start,
increasing), audio is 16 kHz mono float32 in [-1, 1] whose position is its sample count;
an audio timestamp ahead of that count is a gap and is filled with silence, marked. The
source mode (edge.engine.sources) feeds the same methods, so both modes give the same
ticks for the same media.
"""
from __future__ import annotations

import datetime
import math
import time
import uuid
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from edge.capture.audio import AudioGap
from edge.capture.video import Frame
from edge.engine.results import (
    DataQuality,
    RunningEstimate,
    SessionMedia,
    SessionResult,
    StopKind,
    StopReason,
    Tick,
    abstentions_of,
    emotions_by_label,
    rounded_box,
)
from edge.errors import EdgeError
from edge.features.audio import SAMPLE_RATE_HZ
from edge.features.tick import TICK_FEATURES, TICK_MS
from edge.screen import screen_session
from edge.stream.engine import StreamEngine, TickResult
from edge.telemetry import LatencySamples, RunTelemetry, StageTimer

TICK_S = TICK_MS / 1000.0
EARLY_END_TICKS = 5  # a stream that stops this many ticks before the session's end leaves a gap
# An audio timestamp this far ahead of the samples received is a gap (smaller is jitter).
AUDIO_GAP_MIN_MS = 50.0
_LEVEL = TICK_FEATURES.index("energy_dbfs_mean")
_VOICED = TICK_FEATURES.index("voiced_ratio")


def new_session_id() -> Tuple[str, str]:
    """(id, start time): an anonymous, sortable id, UTC time + 6 random hex digits (no
    name, no device), and the same time as ISO 8601."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6], now.strftime("%Y-%m-%dT%H:%M:%SZ")


class Session:
    """A session in push mode; see the module docstring. Made by `Screener.session()`.

    video / audio: whether frames / audio will come (a session may have one or both).
    on_tick: called with each Tick as it closes (also returned by the push methods).
    video_fps: the source's frame rate when known (for the share of frames with a face).
    on_frame: called as `on_frame(frame, face_box)` with each Frame before it is
    analysed (a kiosk's live preview); face_box is the face the tracker follows, (x, y, w,
    h) in frame pixels, or None when no face is followed.
    """

    def __init__(self, screener, video: bool = True, audio: bool = True,
                 on_tick: Optional[Callable[[Tick], None]] = None, video_fps: Optional[float] = None,
                 now_s: Optional[Callable[[], float]] = None, session_id: Optional[str] = None,
                 on_frame: Optional[Callable[[Frame, Optional[Tuple[int, int, int, int]]], None]] = None):
        if not (video or audio):
            raise EdgeError("a session needs video, audio or both")
        config = screener.config
        self.screener = screener
        self.config = config
        new_id, self.started_utc = new_session_id()
        self.session_id = session_id or new_id
        self.has_video = bool(video)
        self.has_audio = bool(audio)
        self.on_tick = on_tick
        self.on_frame = on_frame
        self.video_fps = video_fps
        self.timer = StageTimer(parent=screener.timer)
        self.telemetry = RunTelemetry(self.timer, screener.flops_per_call)
        screener.tracker.reset()
        if screener.severity is not None:
            screener.severity.reset()
        self.engine = StreamEngine(screener.classifier, screener.tracker, screener.severity,
                                   config.video.analysis_fps, has_video=self.has_video, has_audio=self.has_audio,
                                   timer=self.timer, now_s=now_s, keep_media=config.output.store_media,
                                   vote_frames=config.screen.vote_frames)
        self.engine.frame_ages_ms = LatencySamples(parent=screener.frame_ages_ms)
        self.telemetry.frame_ages_ms = self.engine.frame_ages_ms
        self.labels = list(screener.classifier.labels)
        # Filled by a source feeder (edge.engine.sources), or by the caller in push mode.
        self.sources: Dict[str, Optional[str]] = {"video": "push" if video else None,
                                                  "audio": "push" if audio else None}
        self.notes: List[str] = []
        self.warnings: List[str] = []
        self.reader_gaps: Dict[str, List] = {}
        self.extra_counters: Callable[[], Dict[str, float]] = dict
        self.result: Optional[SessionResult] = None
        self._frames_pushed = 0
        self._audio_samples = 0
        self._last_frame_ms = -math.inf

    # ----- input ---------------------------------------------------------------------
    def push_frame(self, image: np.ndarray, timestamp_ms: float, captured_s: Optional[float] = None) -> List[Tick]:
        """One BGR (or grey) uint8 frame at `timestamp_ms` since the session's start.

        Timestamps must increase. captured_s: when it was captured on the session clock
        (measures the frame's age at inference). Returns the ticks it closed."""
        self._check_open("video", self.has_video)
        if not timestamp_ms > self._last_frame_ms:
            raise ValueError(f"frame timestamps must increase: {timestamp_ms} ms after {self._last_frame_ms} ms")
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(f"a frame must be a uint8 grey, BGR or BGRA image, got {image.dtype} {image.shape}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        self._last_frame_ms = float(timestamp_ms)
        frame = Frame(self._frames_pushed, timestamp_ms / 1000.0,
                      timestamp_ms / 1000.0 if captured_s is None else captured_s, image)
        return self.push(frame)

    def push(self, frame: Frame) -> List[Tick]:
        """A Frame as the capture readers make them (the source mode's path)."""
        self._frames_pushed += 1
        if self.on_frame is not None and frame.image is not None:
            box = self.screener.tracker.box
            self.on_frame(frame, None if box is None else tuple(int(v) for v in box))
        with self.timer.stage("total_frame_ms"):
            return self._emit(self.engine.push_frame(frame))

    def push_audio(self, samples, timestamp_ms: Optional[float] = None) -> List[Tick]:
        """16 kHz mono float32 samples in [-1, 1] (or an AudioGap). timestamp_ms: where
        the chunk starts; a start later than the samples so far by AUDIO_GAP_MIN_MS or
        more is a gap, filled with silence and marked. Returns the ticks it closed."""
        self._check_open("audio", self.has_audio)
        ticks: List[Tick] = []
        if timestamp_ms is not None and not isinstance(samples, AudioGap):
            missing_ms = timestamp_ms - self._audio_samples * 1000.0 / SAMPLE_RATE_HZ
            if missing_ms >= AUDIO_GAP_MIN_MS:
                ticks += self.push_audio(AudioGap(int(round(missing_ms * SAMPLE_RATE_HZ / 1000.0)), "audio gap"))
        if isinstance(samples, AudioGap):
            self._audio_samples += int(samples.samples)
        else:
            samples = np.asarray(samples, np.float32).reshape(-1)
            if not np.all(np.isfinite(samples)):
                raise ValueError("audio samples contain NaN or inf")
            self._audio_samples += len(samples)
        return ticks + self._emit(self.engine.push_audio(samples))

    def advance_video(self, t_s: float) -> List[Tick]:
        """No frame before `t_s` will come (a live camera is away): ticks close without it."""
        return self._emit(self.engine.advance_video(t_s))

    def end_video(self) -> List[Tick]:
        return self._emit(self.engine.end_video())

    def end_audio(self) -> List[Tick]:
        return self._emit(self.engine.end_audio())

    def _check_open(self, stream: str, expected: bool) -> None:
        if self.result is not None:
            raise EdgeError(f"session {self.session_id} is finished; start a new one")
        if not expected:
            raise EdgeError(f"this session was started without {stream}")

    # ----- ticks ---------------------------------------------------------------------
    def _emit(self, closed: List[TickResult]) -> List[Tick]:
        ticks = [self._tick(t) for t in closed]
        if ticks:
            if self.telemetry.first_result_s != self.telemetry.first_result_s:  # NaN: the first tick
                self.telemetry.first_result_s = time.perf_counter() - self.telemetry.wall_start
            self.telemetry.media_s = self.engine.next_tick * TICK_S
            self.telemetry.counters.update(self.counters())
            if self.on_tick is not None:
                for tick in ticks:
                    self.on_tick(tick)
        return ticks

    def _tick(self, t: TickResult) -> Tick:
        estimate = None
        if t.severity is not None:
            estimate = RunningEstimate(t.severity.mu, t.severity.sigma, t.severity.band, t.severity.note)
        return Tick(t.index, t.t_s, t.frames, t.faces, emotions_by_label(t.emotions, self.labels),
                    rounded_box(t.face_box), t.faces_in_view,
                    None if t.brightness is None else round(t.brightness, 1),
                    float(t.features[_VOICED]) if self.has_audio else 0.0,
                    float(t.features[_LEVEL]) if self.has_audio else -100.0,
                    t.audio_gap, estimate, t.features)

    # ----- the record ----------------------------------------------------------------
    @property
    def media_s(self) -> float:
        return self.engine.next_tick * TICK_S

    def counters(self) -> Dict[str, float]:
        engine = self.engine
        tracker = self.screener.tracker
        counters = {"frames_in": engine.frames_in, "frames_analysed": engine.frames_analysed,
                    "frames_with_face": engine.face_frames, "frames_dropped": 0,
                    "face_detections": tracker.detections, "face_track_reuses": tracker.reuses,
                    "ticks": engine.ticks}
        if self.has_audio:
            counters.update(audio_samples_in=self._audio_samples, audio_overflow_samples=0,
                            audio_gap_samples=engine.audio_gap_samples)
        counters.update(self.extra_counters())
        return counters

    def close_ticks(self) -> List[Tick]:
        """End both streams and close every remaining tick (finish() does it too)."""
        if self.engine.video_done and self.engine.audio_done:
            return []  # already closed
        started = time.perf_counter()
        ticks = self._emit(self.engine.finish())
        self.timer.add("finish_ms", (time.perf_counter() - started) * 1000.0)
        return ticks

    def finish(self, stop_reason: Optional[StopReason] = None) -> SessionResult:
        """Close every remaining tick and build the result (once; later calls return it).

        stop_reason: why the session ends (default: its sources ended, a complete session);
        the result is complete when the kind is SOURCES_ENDED or DURATION_REACHED."""
        if self.result is not None:
            return self.result
        stop = stop_reason or StopReason(StopKind.SOURCES_ENDED)
        try:
            self.close_ticks()
        except (Exception, KeyboardInterrupt) as exc:  # keep the session record whatever happens here
            if stop.complete:
                stop = StopReason(StopKind.INTERRUPTED, "interrupted while closing") \
                    if isinstance(exc, KeyboardInterrupt) else StopReason.internal_error(exc, " while closing")
            self.warnings.append(f"closing the last ticks failed: {type(exc).__name__}: {exc}")
        self.result = self._result(stop)
        self.screener._session_ended(self)
        return self.result

    def _expected_frames(self) -> int:
        """Frames the whole session would have had analysed: its duration at the analysis
        rate (or the video's own rate when that is lower)."""
        if not self.has_video:
            return 0
        rate = min(float(self.config.video.analysis_fps), float(self.video_fps or 1e9))
        return int(round(self.engine.ticks * TICK_S * rate))

    def _gaps(self) -> Dict[str, List]:
        """Outages the readers recorded, plus a stream that ended while the other went on."""
        engine = self.engine
        gaps: Dict[str, List] = {}
        for name, present, reached in (("video", self.has_video, engine.video_ticks),
                                       ("audio", self.has_audio, engine.audio_ticks)):
            if not present:
                continue
            found = [list(gap) for gap in self.reader_gaps.get(name, [])]
            # Live streams stop a tick or two apart at the end of a session: not a gap.
            other_present = self.has_audio if name == "video" else self.has_video
            if other_present and engine.ticks - reached >= EARLY_END_TICKS:
                other = "audio" if name == "video" else "video"
                found.append([round(reached * TICK_S, 1), round(engine.ticks * TICK_S, 1),
                              f"{name} ended before the {other}"])
            if found:
                gaps[name] = found
        return gaps

    def _result(self, stop_reason: StopReason) -> SessionResult:
        engine = self.engine
        screener = self.screener
        counters = self.counters()
        self.telemetry.counters.update(counters)
        screening = screen_session(engine.vote_frames.rows(), engine.frames_analysed, engine.ticks,
                                   engine.voiced_share(), engine.last_estimate, self.config.screen,
                                   has_audio=self.has_audio, demo_weights=screener.demo_weights,
                                   labels=self.labels, expected_frames=self._expected_frames(),
                                   face_frames=engine.face_frames, has_video=self.has_video)
        vote, phq8 = screening.vote, screening.phq8
        quality = DataQuality(
            face_share=screening.face_share, voiced_share=screening.voiced_share,
            frames_in=int(counters["frames_in"]), frames_analysed=engine.frames_analysed,
            frames_with_face=engine.face_frames, frames_dropped=int(counters.get("frames_dropped", 0)),
            audio_gap_s=engine.audio_gap_samples / float(SAMPLE_RATE_HZ),
            audio_overflow_samples=int(counters.get("audio_overflow_samples", 0)), gaps=self._gaps())
        return SessionResult(
            session_id=self.session_id, started_utc=self.started_utc, profile=self.config.profile,
            complete=stop_reason.complete, stop_reason=stop_reason, duration_s=engine.ticks * TICK_S,
            sources=dict(self.sources), models=screener.model_info(), vote=vote, phq8=phq8, quality=quality,
            abstentions=abstentions_of(vote, phq8), notes=list(self.notes), warnings=list(self.warnings),
            timings=self.telemetry.snapshot(), demo_weights=screener.demo_weights, media=self._media())

    def _media(self) -> Optional[SessionMedia]:
        if not self.engine.keep_media:
            return None
        return SessionMedia(tuple(self.engine.media_crops), tuple(self.engine.media_audio))

    # ----- context manager -----------------------------------------------------------
    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self.result is None:
            if kind is None:
                self.finish()
            elif kind is KeyboardInterrupt:
                self.finish(StopReason(StopKind.INTERRUPTED))
            else:
                self.finish(StopReason.internal_error(value))
