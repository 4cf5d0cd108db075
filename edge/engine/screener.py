"""The Screener: models, detector and interpreters loaded once, then any number of sessions.

    from edge import Screener, ScreenerOptions

    with Screener(ScreenerOptions.from_profile("firmware_configs/desktop.yaml")) as screener:
        # source mode: a camera, a microphone or files, as `edge run` does
        run = screener.run(video="edge/samples/demo_face.mp4", audio="edge/samples/demo_speech.wav", fast=True)
        for tick in run:                    # lazy: the sources are read as you iterate
            print(tick.t_s, tick.emotions)
        print(run.result.to_dict())

        # push mode: the caller owns the frames, the audio and the clock
        with screener.session(video=True, audio=False) as session:
            session.push_frame(image_bgr, timestamp_ms=0)
        print(session.result.vote.level)

        # before a run: which sources exist and open now (never raises)
        probe = screener.probe(video="camera:0", audio="mic")

One session runs at a time (the models keep no per-session state but the LSTM-MoE's
carried (h, c) and the face tracker, both reset when a session starts). Everything
heavy happens in `Screener(options)`, so a session starts in milliseconds. A program
that runs sessions for months calls `edge.engine.memory.release_memory()` between them,
when nothing waits (the kiosk does, once the result is on screen): RSS then stays flat.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence, Union

from edge import DEMO_WEIGHTS_NOTICE
from edge.capture.video import single_opencv_thread
from edge.config import EngineConfig, Profile, load_config, updated
from edge.engine.memory import bound_malloc_arenas
from edge.engine.models import emotion_flops, load_models, severity_flops, verify_models
from edge.engine.results import ModelInfo, Tick
from edge.engine.session import Session
from edge.errors import EdgeError
from edge.models.detectors import open_face_detector
from edge.stream.faces import FaceTracker
from edge.telemetry import LatencySamples, MetricsServer, StageTimer


@dataclass(frozen=True)
class ScreenerOptions:
    """What a Screener is made from (frozen; a Screener never changes it): the engine's
    part of a validated profile (edge.config.EngineConfig; a whole Profile is cut down to
    it), where the models live, and `detector` to override the profile's face.detector."""

    config: EngineConfig = field(default_factory=lambda: load_config(None).engine)
    models_dir: Optional[str] = None
    detector: Optional[str] = None
    bound_malloc_arenas: bool = True  # flat RSS over many sessions (edge.engine.memory)
    # OpenCV on one thread (process-wide): its worker pool busy-waits after each call (edge.capture.video)
    single_opencv_thread: bool = True

    def __post_init__(self) -> None:
        config: Union[EngineConfig, Profile] = self.config
        if isinstance(config, Profile):
            object.__setattr__(self, "config", config.engine)
        elif not isinstance(config, EngineConfig):
            raise TypeError(f"ScreenerOptions.config must be an edge.config Profile or EngineConfig, "
                            f"got {type(config).__name__}")

    @classmethod
    def from_profile(cls, path: Optional[str] = None, models_dir: Optional[str] = None,
                     detector: Optional[str] = None) -> ScreenerOptions:
        """Options from a profile YAML (None: the built-in defaults); one-line EdgeError if bad."""
        return cls(load_config(path).engine, models_dir, detector)


class Screener:
    """Loaded models for screening sessions; see the module docstring."""

    def __init__(self, options: ScreenerOptions):
        config = options.config
        if options.detector:
            config = updated(config, {"face.detector": options.detector}, "--detector")
        self.options = options
        self.config: EngineConfig = config
        if options.bound_malloc_arenas:
            bound_malloc_arenas()
        if options.single_opencv_thread:
            single_opencv_thread()
        # Every session's stages and frame ages, for /metrics: exact histograms, no percentile
        # windows (each session keeps its own), so nothing here grows with the sessions run.
        self.timer = StageTimer(window=0)
        self.frame_ages_ms = LatencySamples(capacity=0)
        self.last_result = None
        self.sessions_started = 0
        self.totals: Dict[str, float] = {}  # counters summed over finished sessions
        self._active: Optional[Session] = None
        self._lock = threading.Lock()
        started = time.perf_counter()
        with self.timer.stage("load_models_ms"):
            self.release = verify_models(config, options.models_dir)  # signed release first (issue 24)
            models_dir = str(self.release.folder)
            self.classifier, self.severity, self.severity_manifest = load_models(config, models_dir)
        fcfg = config.face
        with self.timer.stage("load_detector_ms"):
            self.detector = open_face_detector(fcfg.detector, models_dir, config.threads,
                                               fcfg.min_size, fcfg.downscale)
        self.tracker = FaceTracker(self.detector, fcfg.detect_every, fcfg.track_min_score)
        self.load_s = time.perf_counter() - started
        self.demo_weights = bool(self.severity_manifest is not None and self.severity_manifest.demo_weights)
        self.flops_per_call = {"infer_emotion_ms": emotion_flops(self.classifier.manifest)}
        if self.severity_manifest is not None:
            self.flops_per_call["infer_severity_ms"] = severity_flops(self.severity_manifest)

    # ----- sessions ------------------------------------------------------------------
    def session(self, video: bool = True, audio: bool = True, on_tick: Optional[Callable[[Tick], None]] = None,
                video_fps: Optional[float] = None, now_s: Optional[Callable[[], float]] = None,
                on_frame: Optional[Callable] = None) -> Session:
        """A push-mode session (edge.engine.session); the previous one must be finished."""
        if self.classifier is None:
            raise EdgeError("this Screener is closed; create a new one")
        with self._lock:
            if self._active is not None and self._active.result is None:
                raise EdgeError(f"session {self._active.session_id} is still running; finish it first")
            session = Session(self, video=video, audio=audio, on_tick=on_tick, video_fps=video_fps, now_s=now_s,
                              on_frame=on_frame)
            self._active = session
            self.sessions_started += 1
        return session

    def run(self, video: Optional[str] = None, audio: Optional[str] = None, fast: bool = False,
            duration_s: Optional[float] = None, on_tick: Optional[Callable[[Tick], None]] = None,
            capture_factory=None, pyaudio_module=None, on_frame: Optional[Callable] = None,
            on_audio: Optional[Callable] = None):
        """A source-mode session: `video` is "camera:N", "gst:<pipeline>", "picamera2" or a
        file, `audio` is "mic", "mic:N" or an audio file (either may be None). Returns a
        SourceRun: iterate it for ticks, then read `.result`. fast: read files as fast as
        possible instead of in real time; duration_s: stop after this much media.
        on_frame(frame, face_box): each frame before analysis (a live preview);
        on_audio(samples): each 16 kHz float32 chunk the session gets (an audio tap).
        Raises SourceError (`.stream` names it) when a source cannot be opened."""
        from edge.engine.sources import SourceRun

        return SourceRun(self, video, audio, fast=fast, duration_s=duration_s, on_tick=on_tick,
                         capture_factory=capture_factory, pyaudio_module=pyaudio_module, on_frame=on_frame,
                         on_audio=on_audio)

    def probe(self, video: Optional[str] = None, audio: Optional[str] = None, pyaudio_module=None):
        """Which of these sources (as `run` takes them) exist and open now: a SourceProbe
        with, per stream, `ok`, the one-line `reason` when not, `live` and a file's
        `length_s`. Never raises for a source that is missing."""
        from edge.engine.sources import probe_sources

        return probe_sources(self.config, video, audio, pyaudio_module)

    def _session_ended(self, session: Session) -> None:
        for name, value in session.counters().items():
            self.totals[name] = self.totals.get(name, 0) + value
        self.last_result = session.result
        with self._lock:
            if self._active is session:
                self._active = None

    @property
    def active_session(self) -> Optional[Session]:
        return self._active

    def live_counters(self) -> Dict[str, float]:
        """Counters over every session so far, the running one included (for /metrics)."""
        counters = dict(self.totals)
        active = self._active
        if active is not None and active.result is None:
            for name, value in active.counters().items():
                counters[name] = counters.get(name, 0) + value
        counters["sessions"] = self.sessions_started
        return counters

    def live_snapshot(self) -> Dict:
        """The running session's telemetry (or the last session's), {} before any."""
        active = self._active
        if active is not None and active.result is None:
            return active.telemetry.snapshot()
        return self.last_result.timings if self.last_result is not None else {}

    def serve_metrics(self, host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None,
                      server_names: Sequence[str] = ()) -> MetricsServer:
        """Serve /metrics (Prometheus) and /metrics.json for every session of this Screener;
        close() the server when done. Port 0 picks a free port (`.port`). A host that is not
        loopback needs a token (sent as `Authorization: Bearer ...`). server_names: host
        names (besides its addresses) a request's Host header may give; others get 403."""
        return MetricsServer(self, host, port, token, server_names)

    # ----- what ran ------------------------------------------------------------------
    def model_info(self) -> Dict[str, ModelInfo]:
        """Which files ran, through which backends (for results and reports)."""
        classifier = self.classifier
        release = self.release.label  # the signed model release they came from, or "unsigned"
        models = {"emotion": ModelInfo(classifier.manifest.name, classifier.file["file"],
                                       classifier.file["sha256"][:12], classifier.file["precision"],
                                       classifier.backend.description, chosen=classifier.precision_reason,
                                       release=release, crop=classifier.crop_rule, averaging=classifier.averaging)}
        detector = self.detector
        framing = getattr(detector, "framing_rule", None)  # how its boxes meet the emotion model's framing
        if hasattr(detector, "backend"):
            models["face_detector"] = ModelInfo(detector.name, detector.file["file"], detector.file["sha256"][:12],
                                                None, detector.backend.description, release=release, framing=framing)
        else:
            models["face_detector"] = ModelInfo(detector.name, framing=framing)
        if self.severity is not None:
            entry = self.severity.entry
            models["severity"] = ModelInfo(self.config.models.severity.name, entry["file"], entry["sha256"][:12],
                                           entry["precision"], self.severity.model.backend.description,
                                           DEMO_WEIGHTS_NOTICE if self.demo_weights else None,
                                           self.severity.precision_reason or None, release=release)
        return models

    # ----- lifetime ------------------------------------------------------------------
    def close(self) -> None:
        """Release the interpreters (a finished Screener cannot start sessions)."""
        self.classifier = None
        self.severity = None
        self.detector = None

    def __enter__(self) -> Screener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
