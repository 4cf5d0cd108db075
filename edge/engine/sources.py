"""Source mode: a camera, a microphone or files feeding a push-mode Session.

    run = screener.run(video="edge/samples/demo_face.mp4", audio="edge/samples/demo_speech.wav")
    for tick in run:            # lazy: capture threads start on the first next()
        ...
    result = run.result         # SessionResult, also when the run was cut short

Each source is read by its own capture thread into a bounded queue (edge.capture);
this module takes from the queues and pushes into the Session, so push mode and source
mode run the same code on the same media. Files are taken in media-time order (neither
stream more than a tick ahead of the other); live audio is taken as it comes.

Stopping: `stop(reason)` from any thread ends the run after the current step; a
KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by `edge run`) ends it as
"interrupted". Either way the session is finished and its result kept (complete: False),
with a typed StopReason. A run that is never iterated is ended with `close(reason)`.

Audio tap: `on_audio(samples)` sees every 16 kHz mono float32 chunk the session gets
(what a caller's own measures need, e.g. the nightly job's voice measures), in order.

Before a run, `probe_sources(config, video, audio)` says which streams exist and open
now, with the reason when not and a file's length (a kiosk's "camera missing" screen).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Tuple

from edge.capture.audio import AudioGap, AudioReader, open_audio_source
from edge.capture.clock import SessionClock
from edge.capture.queues import END
from edge.capture.video import FileSource, VideoReader, check_opens, open_video_source
from edge.engine.results import SessionResult, StopKind, StopReason, Tick
from edge.engine.session import TICK_S
from edge.errors import EdgeError, SourceError, first_line
from edge.features.audio import SAMPLE_RATE_HZ

STALL_TIMEOUT_S = 10.0  # no data from any file source this long: the session ends (never hangs)
LIVE_VIDEO_GRACE_S = 0.5  # a live camera silent this long is treated as away (ticks go on)
FAST_FILE_CHUNK_MS = 500  # audio files read as fast as possible: larger chunks, less Python per second


@dataclass(frozen=True)
class StreamProbe:
    """One source as `probe_sources` found it: `ok` when it exists and opens now, else
    `reason` (one line); `live` for a camera or microphone; `length_s` for a file."""

    stream: str  # "video" | "audio"
    spec: Optional[str]
    ok: bool
    name: Optional[str] = None
    live: bool = False
    length_s: Optional[float] = None
    reason: Optional[str] = None


@dataclass(frozen=True)
class SourceProbe:
    """What `probe_sources` found: each stream asked for (None when not asked for)."""

    video: Optional[StreamProbe]
    audio: Optional[StreamProbe]

    @property
    def ok(self) -> bool:
        """Every stream asked for opens now (and at least one was asked for)."""
        streams = [p for p in (self.video, self.audio) if p is not None]
        return bool(streams) and all(p.ok for p in streams)

    @property
    def failed(self) -> Tuple[StreamProbe, ...]:
        return tuple(p for p in (self.video, self.audio) if p is not None and not p.ok)


def probe_sources(config, video: Optional[str], audio: Optional[str], pyaudio_module=None) -> SourceProbe:
    """Which of the sources `video` / `audio` (as `Screener.run` takes them) exist and open
    now; a live device is opened and released, a file's header read. Never raises an
    EdgeError: a source that does not open is `ok=False` with its one-line reason."""
    vcfg, acfg = config.video, config.audio
    video_probe = audio_probe = None
    if video:
        try:
            source = open_video_source(video, False, vcfg.width, vcfg.height, vcfg.fps, None, vcfg.max_pixels)
            check_opens(source)
            length = None
            if isinstance(source, FileSource) and source.frame_count and source.fps:
                length = source.frame_count / float(source.fps)
            video_probe = StreamProbe("video", video, True, source.name, source.live, length)
        except EdgeError as exc:
            video_probe = StreamProbe("video", video, False, reason=first_line(exc))
    if audio:
        try:
            source = open_audio_source(audio, acfg.device_rates_hz, acfg.chunk_ms, pyaudio_module)
            length = None if source.live else source.duration_s
            audio_probe = StreamProbe("audio", audio, True, source.name, source.live, length)
            if source.live:
                source.close()
        except EdgeError as exc:
            audio_probe = StreamProbe("audio", audio, False, reason=first_line(exc))
    return SourceProbe(video_probe, audio_probe)


class SourceRun:
    """One session fed from sources; see the module docstring. Made by `Screener.run()`.

    Opening the sources happens here, before any tick: a missing file or an absent
    device is a one-line EdgeError.
    """

    def __init__(self, screener, video: Optional[str], audio: Optional[str], fast: bool = False,
                 duration_s: Optional[float] = None, on_tick: Optional[Callable[[Tick], None]] = None,
                 capture_factory=None, pyaudio_module=None, on_frame: Optional[Callable] = None,
                 on_audio: Optional[Callable] = None):
        if video is None and audio is None:
            raise EdgeError("nothing to capture: give --video/--camera/--gst and/or --audio/--mic, "
                            "or set video.source / audio.source in the config")
        if duration_s is not None and not duration_s > 0:
            raise EdgeError(f"--duration must be > 0 seconds, got {duration_s}")
        config = screener.config
        vcfg = config.video
        self.fast = fast
        self.duration_s = duration_s
        self.on_audio = on_audio
        try:
            self.video_source = open_video_source(video, fast, vcfg.width, vcfg.height, vcfg.fps, capture_factory,
                                                  vcfg.max_pixels)
            if self.video_source is not None and capture_factory is None:
                check_opens(self.video_source)
        except EdgeError as exc:
            raise SourceError("video", str(exc)) from None
        # An audio file alone, read as fast as it goes, takes larger chunks (less Python per
        # second; chunking never changes a tick). Beside a video, audio keeps the tick-sized
        # chunks that hold the two streams within a tick of each other.
        chunk_ms = config.audio.chunk_ms
        if fast and video is None and audio and os.path.isfile(audio):
            chunk_ms = max(chunk_ms, FAST_FILE_CHUNK_MS)
        try:
            self.audio_source = open_audio_source(audio, config.audio.device_rates_hz, chunk_ms, pyaudio_module)
        except EdgeError as exc:
            raise SourceError("audio", str(exc)) from None
        self.clock = SessionClock()
        self.session = screener.session(video=self.video_source is not None, audio=self.audio_source is not None,
                                        on_tick=on_tick, video_fps=getattr(self.video_source, "fps", None),
                                        now_s=self.clock.now_s, on_frame=on_frame)
        session = self.session
        session.sources = {"video": getattr(self.video_source, "name", None),
                           "audio": getattr(self.audio_source, "name", None)}
        session.notes.extend(getattr(self.audio_source, "notes", []))
        session.extra_counters = self._reader_counters
        self.video_reader: Optional[VideoReader] = None
        self.audio_reader: Optional[AudioReader] = None
        self._stop_reason: Optional[StopReason] = None
        self._stop = threading.Event()
        self._started = False

    @property
    def has_video(self) -> bool:
        return self.video_source is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_source is not None

    @property
    def sources(self):
        """{"video": name or None, "audio": name or None}: what this run reads."""
        return dict(self.session.sources)

    @property
    def result(self) -> Optional[SessionResult]:
        """The SessionResult once the run ended (None while it runs)."""
        return self.session.result

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def stop(self, reason: str = "stopped", tag: Optional[str] = None, kind: StopKind = StopKind.STOPPED) -> None:
        """End the run from any thread; the session is kept as cut short. reason: the text
        summaries keep; tag: the application's own name for it (StopReason.tag); kind:
        STOPPED, or INTERRUPTED when the program itself is closing."""
        self._stop_reason = StopReason(kind, reason, tag)
        self._stop.set()

    def close(self, reason: str = "stopped before it started", kind: StopKind = StopKind.STOPPED) -> SessionResult:
        """End a run that was never iterated (e.g. its outputs cannot be written): its
        session is finished as cut short with `reason`, and the result returned."""
        if self._started:
            raise EdgeError("this run was started: stop() it and let the iteration end")
        self._started = True
        return self.session.finish(StopReason(kind, reason))

    def run(self) -> SessionResult:
        """Run to the end, dropping the ticks (on_tick still sees them); the result."""
        for _ in self:
            pass
        return self.session.result

    def __iter__(self) -> Iterator[Tick]:
        if self._started:
            raise EdgeError("a SourceRun can be iterated once")
        self._started = True
        reason, closed = StopReason(StopKind.INTERNAL_ERROR), False
        try:
            try:
                self._start_readers()
                reason = yield from self._feed()
            except KeyboardInterrupt:
                reason = StopReason(StopKind.INTERRUPTED)
            self._stop_readers()
            if self._camera_away():  # a live camera gone at the end: its last ticks close without it
                yield from self.session.advance_video(self._end_s() - 1e-6)  # the tick that ends there, not after
            yield from self.session.close_ticks()  # the last ticks go to the caller too
            self._close(reason)
            closed = True
        except KeyboardInterrupt:  # while the last ticks closed: still an interrupted session
            reason = StopReason(StopKind.INTERRUPTED)
        except GeneratorExit:  # the caller stopped iterating: keep what ran
            reason = self._stop_reason or StopReason(StopKind.STOPPED, "stopped by the caller")
            raise
        except Exception as exc:
            reason = StopReason.internal_error(exc)
            raise
        finally:
            if not closed:
                self._close(reason if not reason.complete else StopReason(StopKind.INTERRUPTED))

    # ----- running -------------------------------------------------------------------
    def _start_readers(self) -> None:
        config = self.session.config
        self.clock.start()
        if self.video_source is not None:
            self.video_reader = VideoReader(self.video_source, self.clock, config.video.queue_frames,
                                            self.fast, analysis_fps=config.video.analysis_fps).start()
        if self.audio_source is not None:
            self.audio_reader = AudioReader(self.audio_source, self.clock, config.audio.queue_seconds,
                                            self.fast).start()

    def _feed(self):
        """Take from the readers' queues and push into the session, yielding its ticks.
        Returns the StopReason."""
        session = self.session
        video_ended = self.video_reader is None
        audio_ended = self.audio_reader is None
        max_samples = None if self.duration_s is None else int(round(self.duration_s * SAMPLE_RATE_HZ))
        audio_taken = 0
        video_t = 0.0  # media time of the latest frame taken (s)
        live = any(s is not None and s.live for s in (self.video_source, self.audio_source))
        last_data = last_frame = time.monotonic()
        while not (video_ended and audio_ended):
            if self._stop.is_set():
                return self._stop_reason or StopReason(StopKind.STOPPED)
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
                    yield from session.end_audio()
                    break
                if max_samples is not None:
                    left = max(0, max_samples - audio_taken)
                    item = AudioGap(min(item.samples, left), item.reason) if isinstance(item, AudioGap) \
                        else item[:left]
                audio_taken += item.samples if isinstance(item, AudioGap) else len(item)
                if self.on_audio is not None and not isinstance(item, AudioGap) and len(item):
                    self.on_audio(item)
                yield from session.push_audio(item)
                if max_samples is not None and audio_taken >= max_samples:
                    audio_ended = True
                    yield from session.end_audio()
                    break
                want_audio = live or video_ended or audio_taken / float(SAMPLE_RATE_HZ) <= video_t + TICK_S
            if want_video:
                waited = time.perf_counter()
                frame = self.video_reader.queue.get(timeout_s=0.05)
                session.timer.add("capture_wait_ms", (time.perf_counter() - waited) * 1000.0)
                if frame is END:
                    video_ended = True
                    yield from session.end_video()
                    got = True
                elif frame is not None:
                    got = True
                    video_t = max(video_t, frame.t_s)
                    if self.duration_s is not None and frame.t_s >= self.duration_s:
                        video_ended = True
                        yield from session.end_video()
                    else:
                        yield from session.push(frame)
            if live and self.duration_s is not None and self.clock.now_s() >= self.duration_s:
                return StopReason(StopKind.DURATION_REACHED)
            now = time.monotonic()
            if got:
                last_data = now
                last_frame = now if not video_ended else last_frame
            if not video_ended and self.video_source.live and now - last_frame > LIVE_VIDEO_GRACE_S:
                # The camera is away (its reader is reopening it): let the ticks go on without it.
                yield from session.advance_video(self.clock.now_s() - LIVE_VIDEO_GRACE_S)
            if not got and not live and now - last_data > STALL_TIMEOUT_S:
                session.warnings.append(f"no data from any source for {STALL_TIMEOUT_S:.0f} s; session ended")
                return StopReason(StopKind.STALLED)
        reached = max(video_t, audio_taken / float(SAMPLE_RATE_HZ))
        if self.duration_s is not None and reached >= self.duration_s - TICK_S:
            return StopReason(StopKind.DURATION_REACHED)
        return StopReason(StopKind.SOURCES_ENDED)

    def _camera_away(self) -> bool:
        session = self.session
        return (self.video_source is not None and self.video_source.live and not session.engine.video_done
                and session.engine.video_ticks < int(self._end_s() / TICK_S))

    def _end_s(self) -> float:
        """Where a live session ends in media time: now, or --duration if that came first."""
        now = self.clock.now_s()
        return now if self.duration_s is None else min(now, self.duration_s)

    # ----- finishing -----------------------------------------------------------------
    def _reader_counters(self):
        counters = {}
        if self.video_reader is not None:
            counters["frames_dropped"] = self.video_reader.dropped
        if self.audio_reader is not None:
            counters["audio_samples_in"] = self.audio_reader.samples_in
            counters["audio_overflow_samples"] = self.audio_reader.overflow_samples
        return counters

    def _stop_readers(self) -> None:
        session = self.session
        for name, reader in (("video", self.video_reader), ("audio", self.audio_reader)):
            if reader is not None and name not in session.reader_gaps:
                reader.stop()
                session.warnings.extend(reader.warnings)
                session.reader_gaps[name] = [list(gap) if len(gap) == 3 else list(gap) + ["camera lost"]
                                             for gap in reader.gaps]

    def _close(self, reason: StopReason) -> None:
        self._stop_readers()
        session = self.session
        session.finish(reason)
        session.extra_counters = dict  # the result has them; no cycle keeps the readers alive
