"""One screening session end to end: sources -> engine -> screening -> outputs.

    runner = SessionRunner(config, video="edge/samples/demo_face.mp4",
                           audio="edge/samples/demo_speech.wav", fast=True)
    summary = runner.run()     # also writes the summary JSON and the database row

The summary and the database row are written in a `finally`: a session cut short
(Ctrl-C, SIGTERM, a source that failed, an internal error) keeps what it had, marked
`complete: false` with the reason.
"""
from __future__ import annotations

import datetime
import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from edge import DEMO_WEIGHTS_NOTICE, SCREENING_DISCLAIMER
from edge.capture.audio import AudioGap, AudioReader, open_audio_source
from edge.capture.clock import SessionClock
from edge.capture.queues import END
from edge.capture.video import VideoReader, check_opens, open_video_source
from edge.errors import EdgeError
from edge.features.audio import SAMPLE_RATE_HZ
from edge.features.face import open_face_detector
from edge.features.tick import TICK_MS, write_session_features
from edge.screen import screen_session
from edge.store import ResultStore
from edge.stream.engine import StreamEngine, TickResult
from edge.stream.faces import FaceTracker
from edge.stream.models import emotion_flops, load_models, severity_flops
from edge.telemetry import MetricsServer, RunTelemetry, StageTimer

STALL_TIMEOUT_S = 10.0  # no data from any file source this long: the session ends (never hangs)
LIVE_VIDEO_GRACE_S = 0.5  # a live camera silent this long is treated as away (ticks go on)
TICK_S = TICK_MS / 1000.0
EARLY_END_TICKS = 5  # a stream that stops this many ticks before the session's end leaves a gap
STALLED = "sources stalled"


def tick_record(tick: TickResult, labels) -> Dict:
    """One tick as a JSON-ready dict (the --json / tick_jsonl line).

    The first tick carries the screening-aid notice. A tick's PHQ-8 figures are the
    running estimate so far, marked `provisional`: only the session summary, after its
    checks (enough face, voice and time), gives a reading.
    """
    record = {"tick": tick.index, "t_s": round(tick.t_s, 3), "frames": tick.frames, "faces": tick.faces}
    if tick.index == 0:
        record["notice"] = SCREENING_DISCLAIMER
    if tick.emotions is not None:
        record["emotions"] = {label: round(float(p), 4) for label, p in zip(labels, tick.emotions)}
    if tick.severity is not None:
        record["phq8_mu"] = round(tick.severity.mu, 2)
        record["phq8_sigma"] = round(tick.severity.sigma, 2)
        record["phq8_band"] = tick.severity.band
        record["provisional"] = True
        if tick.severity.note:
            record["note"] = tick.severity.note
    if tick.audio_gap:
        record["audio_gap"] = True
    return record


def _writable_dir(path: Path, what: str, create: bool) -> None:
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise EdgeError(f"{what}: folder {path} does not exist; create it or choose another path")
    except OSError as exc:
        raise EdgeError(f"{what}: folder {path} cannot be created ({exc.strerror or exc}); "
                        "choose another path") from None
    if not os.access(str(path), os.W_OK | os.X_OK):
        raise EdgeError(f"{what}: folder {path} is not writable; choose another path")


def check_outputs(out, save_features: Optional[str]) -> None:
    """One-line EdgeError now, before the session, when an output cannot be written later:
    output.dir (summary, tick lines), the database's folder, the --save-features folder."""
    _writable_dir(Path(out.dir), "output.dir", create=True)
    if out.database:
        _writable_dir(Path(out.database).parent, "output.database", create=True)
        if Path(out.database).is_dir():
            raise EdgeError(f"output.database: {out.database} is a folder; give a file path")
    if save_features:
        target = Path(save_features)
        if target.is_dir():
            raise EdgeError(f"--save-features: {save_features} is a folder; give a file path (.npz)")
        _writable_dir(target.parent if str(target.parent) else Path("."), "--save-features", create=False)


class SessionRunner:
    """Runs one session; see the module docstring. Sources are specs as in the config
    ("camera:0", "gst:...", "picamera2", a file, "mic", "mic:N", or None for none)."""

    def __init__(self, config, video: Optional[str], audio: Optional[str], fast: bool = False,
                 duration_s: Optional[float] = None, models_dir: Optional[str] = None,
                 save_features: Optional[str] = None, on_tick: Optional[Callable[[Dict], None]] = None,
                 capture_factory=None, pyaudio_module=None):
        if video is None and audio is None:
            raise EdgeError("nothing to capture: give --video/--camera/--gst and/or --audio/--mic, "
                            "or set video.source / audio.source in the config")
        if duration_s is not None and duration_s <= 0:
            raise EdgeError(f"--duration must be > 0 seconds, got {duration_s}")
        check_outputs(config.output, save_features)
        self.started = time.perf_counter()
        self.config = config
        self.fast = fast
        self.duration_s = duration_s
        self.save_features = save_features
        self.on_tick = on_tick
        now = datetime.datetime.now(datetime.timezone.utc)
        self.session_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        self.started_utc = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        # Sources first: a bad file or an absent device is a one-line error before any model loads.
        vcfg = config.video
        self.video_source = open_video_source(video, fast, vcfg.width, vcfg.height, vcfg.fps, capture_factory)
        if self.video_source is not None and capture_factory is None:
            check_opens(self.video_source)
        self.audio_source = open_audio_source(audio, config.audio.device_rates_hz, config.audio.chunk_ms,
                                              pyaudio_module)
        self.timer = StageTimer()
        with self.timer.stage("load_models_ms"):
            self.classifier, self.severity, severity_manifest = load_models(config, models_dir)
        flops = {"infer_emotion_ms": emotion_flops(self.classifier.manifest)}
        if severity_manifest is not None:
            flops["infer_severity_ms"] = severity_flops(severity_manifest)
        self.demo_weights = bool(severity_manifest is not None and severity_manifest.demo_weights)
        self.telemetry = RunTelemetry(self.timer, flops)
        fcfg = config.face
        with self.timer.stage("load_detector_ms"):
            self.detector = open_face_detector(fcfg.detector, models_dir, config.threads,
                                               fcfg.min_size, fcfg.downscale)
        self.tracker = FaceTracker(self.detector, fcfg.detect_every, fcfg.track_min_score)
        self.clock = SessionClock()
        self.engine = StreamEngine(self.classifier, self.tracker, self.severity, vcfg.analysis_fps,
                                   has_video=self.video_source is not None,
                                   has_audio=self.audio_source is not None, timer=self.timer,
                                   now_s=self.clock.now_s, keep_media=config.output.store_media)
        self.telemetry.frame_ages_ms = self.engine.frame_ages_ms  # the same samples: live on /metrics
        self.video_reader: Optional[VideoReader] = None
        self.audio_reader: Optional[AudioReader] = None
        self.warnings: List[str] = []
        self.complete = False
        self.stop_reason = ""
        self.metrics: Optional[MetricsServer] = None
        self._tick_file = None
        self.summary: Dict = {}

    # ----- running -------------------------------------------------------------------
    def _emit(self, ticks: List[TickResult]) -> None:
        for tick in ticks:
            if self.telemetry.first_result_s != self.telemetry.first_result_s:  # NaN: first tick
                self.telemetry.first_result_s = time.perf_counter() - self.started
            if self._tick_file is None and self.on_tick is None:
                continue  # nobody reads tick lines in this run
            record = tick_record(tick, self.classifier.labels)
            if self._tick_file is not None:
                self._tick_file.write(json.dumps(record) + "\n")
            if self.on_tick is not None:
                self.on_tick(record)
        self.telemetry.media_s = self.engine.next_tick * TICK_S
        if ticks:  # /metrics shows the counters while the session runs, not only at the end
            for name, value in self._counters().items():
                self.telemetry.set(name, value)

    def run(self) -> Dict:
        """Run until the sources end, --duration passes or the process is interrupted."""
        out = self.config.output
        tel = self.config.telemetry
        try:
            if tel.http_port is not None:
                self.metrics = MetricsServer(self.telemetry, tel.http_host, tel.http_port)
            if out.tick_jsonl:
                try:
                    self._tick_file = open(Path(out.dir) / f"{self.session_id}.ticks.jsonl", "w")
                except OSError as exc:  # checked at start; the folder went away since
                    self.warnings.append(f"tick lines not written to {out.dir}: {exc}")
            self.clock.start()
            if self.video_source is not None:
                self.video_reader = VideoReader(self.video_source, self.clock, self.config.video.queue_frames,
                                                self.fast).start()
            if self.audio_source is not None:
                self.audio_reader = AudioReader(self.audio_source, self.clock, self.config.audio.queue_seconds,
                                                self.fast).start()
            self._loop()
            self.complete = self.stop_reason != STALLED
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
        except Exception as exc:
            self.stop_reason = f"internal error: {type(exc).__name__}: {exc}"
            raise
        finally:
            self._finish()
        return self.summary

    def _loop(self) -> None:
        engine = self.engine
        video_ended = self.video_reader is None
        audio_ended = self.audio_reader is None
        max_samples = None if self.duration_s is None else int(round(self.duration_s * SAMPLE_RATE_HZ))
        audio_taken = 0
        video_t = 0.0  # media time of the latest frame taken (s)
        live = any(s is not None and s.live for s in (self.video_source, self.audio_source))
        last_data = last_frame = time.monotonic()
        while not (video_ended and audio_ended):
            got = False
            # Files are taken in media-time order: neither stream runs more than a tick
            # ahead of the other, so with --fast neither reader waits long on a full queue.
            # Live audio is taken as it comes: it is small and must never back up.
            audio_t = audio_taken / float(SAMPLE_RATE_HZ)
            want_audio = not audio_ended and (live or video_ended or audio_t <= video_t + TICK_S)
            want_video = not video_ended and (live or audio_ended or video_t <= audio_t + TICK_S)
            while want_audio:
                item = self.audio_reader.queue.get(timeout_s=0 if want_video else 0.05)
                if item is None:
                    break
                got = True
                if item is END:
                    audio_ended = True
                    self._emit(engine.end_audio())
                    break
                if max_samples is not None:
                    left = max(0, max_samples - audio_taken)
                    item = AudioGap(min(item.samples, left), item.reason) if isinstance(item, AudioGap) \
                        else item[:left]
                audio_taken += item.samples if isinstance(item, AudioGap) else len(item)
                self._emit(engine.push_audio(item))
                if max_samples is not None and audio_taken >= max_samples:
                    audio_ended = True
                    self._emit(engine.end_audio())
                    break
                want_audio = live or video_ended or audio_taken / float(SAMPLE_RATE_HZ) <= video_t + TICK_S
            if want_video:
                waited = time.perf_counter()
                frame = self.video_reader.queue.get(timeout_s=0.05)
                self.timer.add("capture_wait_ms", (time.perf_counter() - waited) * 1000.0)
                if frame is END:
                    video_ended = True
                    self._emit(engine.end_video())
                    got = True
                elif frame is not None:
                    got = True
                    video_t = max(video_t, frame.t_s)
                    if self.duration_s is not None and frame.t_s >= self.duration_s:
                        video_ended = True
                        self._emit(engine.end_video())
                    else:
                        with self.timer.stage("total_frame_ms"):
                            self._emit(engine.push_frame(frame))
            if live and self.duration_s is not None and self.clock.now_s() >= self.duration_s:
                self.stop_reason = "duration reached"
                return
            now = time.monotonic()
            if got:
                last_data = now
                last_frame = now if not video_ended else last_frame
            if not video_ended and self.video_source.live and now - last_frame > LIVE_VIDEO_GRACE_S:
                # The camera is away (its reader is reopening it): let the ticks go on without it.
                self._emit(engine.advance_video(self.clock.now_s() - LIVE_VIDEO_GRACE_S))
            if not got and not live and now - last_data > STALL_TIMEOUT_S:
                self.warnings.append(f"no data from any source for {STALL_TIMEOUT_S:.0f} s; session ended")
                self.stop_reason = STALLED
                return
        self.stop_reason = "sources ended" if self.duration_s is None else "sources ended or duration reached"

    # ----- finishing -----------------------------------------------------------------
    def _finish(self) -> None:
        for reader in (self.video_reader, self.audio_reader):
            if reader is not None:
                reader.stop()
                self.warnings.extend(reader.warnings)
        try:
            self._emit(self.engine.finish())
        except (Exception, KeyboardInterrupt) as exc:  # keep the session record whatever happens here
            self.complete = False
            self.stop_reason = self.stop_reason or "interrupted while closing"
            self.warnings.append(f"closing the last ticks failed: {type(exc).__name__}: {exc}")
        if self._tick_file is not None:
            self._tick_file.close()
        if self.metrics is not None:
            self.metrics.close()
        self.summary = self._summarise()
        self._write_outputs()

    def _counters(self) -> Dict:
        engine = self.engine
        counters = {"frames_in": engine.frames_in, "frames_analysed": engine.frames_analysed,
                    "frames_with_face": engine.face_frames,
                    "frames_dropped": self.video_reader.dropped if self.video_reader else 0,
                    "face_detections": self.tracker.detections, "face_track_reuses": self.tracker.reuses,
                    "ticks": engine.ticks}
        if self.audio_reader is not None:
            counters["audio_samples_in"] = self.audio_reader.samples_in
            counters["audio_overflow_samples"] = self.audio_reader.overflow_samples
            counters["audio_gap_samples"] = engine.audio_gap_samples
        return counters

    def _expected_frames(self) -> int:
        """Frames the whole session would have had analysed: its duration at the analysis
        rate (or the video's own rate when that is lower)."""
        if self.video_source is None:
            return 0
        rate = min(float(self.config.video.analysis_fps), float(getattr(self.video_source, "fps", 0.0) or 1e9))
        return int(round(self.engine.ticks * TICK_S * rate))

    def _gaps(self) -> Dict[str, List]:
        """Outages recorded by the readers, plus a stream that ended while the other went
        on (a video shorter than the audio, a truncated file): [start_s, end_s, reason]."""
        engine = self.engine
        gaps: Dict[str, List] = {}
        for name, reader, reached in (("video", self.video_reader, engine.video_ticks),
                                      ("audio", self.audio_reader, engine.audio_ticks)):
            if reader is None:
                continue
            found = [list(gap) if len(gap) == 3 else list(gap) + ["camera lost"] for gap in reader.gaps]
            # Live streams stop a tick or two apart at the end of a session: not a gap.
            if engine.ticks - reached >= EARLY_END_TICKS:
                other = "audio" if name == "video" else "video"
                found.append([round(reached * TICK_S, 1), round(engine.ticks * TICK_S, 1),
                              f"{name} ended before the {other}"])
            if found:
                gaps[name] = found
        return gaps

    def _summarise(self) -> Dict:
        engine = self.engine
        for name, value in self._counters().items():
            self.telemetry.set(name, value)
        severity = engine.severity_trace[-1] if engine.severity_trace else None
        face_probs = np.stack(engine.face_probs) if engine.face_probs else np.zeros((0, 7), np.float32)
        screening = screen_session(face_probs, engine.frames_analysed, engine.ticks, engine.voiced_share(),
                                   severity, self.config.screen, has_audio=self.audio_source is not None,
                                   demo_weights=self.demo_weights, labels=self.classifier.labels,
                                   expected_frames=self._expected_frames())
        gaps = self._gaps()
        notes = list(getattr(self.audio_source, "notes", []))
        models = {"emotion": {"name": self.classifier.manifest.name, "file": self.classifier.file["file"],
                              "backend": self.classifier.backend.description},
                  "face_detector": {"name": self.detector.name}}
        if hasattr(self.detector, "backend"):
            models["face_detector"].update(file=self.detector.file["file"],
                                           backend=self.detector.backend.description)
        if self.severity is not None:
            models["severity"] = {"name": self.config.models.severity.name,
                                  "backend": self.severity.model.backend.description}
            if self.demo_weights:
                models["severity"]["note"] = DEMO_WEIGHTS_NOTICE
        return {
            "session_id": self.session_id,
            "started_utc": self.started_utc,
            "profile": self.config.profile,
            "notice": SCREENING_DISCLAIMER,
            "complete": self.complete,
            "stop_reason": self.stop_reason,
            "duration_s": round(engine.ticks * TICK_S, 1),
            "sources": {"video": getattr(self.video_source, "name", None),
                        "audio": getattr(self.audio_source, "name", None)},
            "models": models,
            "screening": screening,
            "gaps": gaps,
            "notes": notes,
            "warnings": self.warnings,
            "telemetry": self.telemetry.snapshot(),
        }

    def _write_outputs(self) -> None:
        """Features, summary JSON and database row, each on its own: one that fails becomes
        a warning and the others are still written."""
        out = self.config.output
        summary = self.summary
        if self.save_features:
            try:
                context = self.config.models.severity.context
                write_session_features(Path(self.save_features), self.engine.features(), context)
                summary["features_file"] = self.save_features
            except (OSError, ValueError) as exc:
                self.warnings.append(f"features not written to {self.save_features}: {exc}")
        summary_path = Path(out.dir) / f"{self.session_id}.json"
        summary["summary_file"] = str(summary_path)
        if out.database:
            summary["database"] = out.database
            try:
                store = ResultStore(out.database)
                try:
                    store.save_session(summary)
                    if out.store_media:
                        store.save_media(self.session_id, self.engine.media_crops, self.engine.media_audio)
                finally:
                    store.close()
            except (EdgeError, OSError, sqlite3.Error) as exc:
                del summary["database"]
                self.warnings.append(f"database row not written to {out.database}: {exc}")
        try:
            summary_path.parent.mkdir(parents=True, exist_ok=True)
            summary_path.write_text(json.dumps(summary, indent=2))
        except OSError as exc:
            del summary["summary_file"]
            self.warnings.append(f"summary not written to {out.dir}: {exc}")
