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
"interrupted". Either way the session is finished and its result kept (complete: False).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterator, Optional

from edge.capture.audio import AudioGap, AudioReader, open_audio_source
from edge.capture.clock import SessionClock
from edge.capture.queues import END
from edge.capture.video import VideoReader, check_opens, open_video_source
from edge.engine.results import SessionResult, Tick
from edge.engine.session import TICK_S
from edge.errors import EdgeError
from edge.features.audio import SAMPLE_RATE_HZ

STALL_TIMEOUT_S = 10.0  # no data from any file source this long: the session ends (never hangs)
LIVE_VIDEO_GRACE_S = 0.5  # a live camera silent this long is treated as away (ticks go on)
STALLED = "sources stalled"


class SourceRun:
    """One session fed from sources; see the module docstring. Made by `Screener.run()`.

    Opening the sources happens here, before any tick: a missing file or an absent
    device is a one-line EdgeError.
    """

    def __init__(self, screener, video: Optional[str], audio: Optional[str], fast: bool = False,
                 duration_s: Optional[float] = None, on_tick: Optional[Callable[[Tick], None]] = None,
                 capture_factory=None, pyaudio_module=None, on_frame: Optional[Callable] = None):
        if video is None and audio is None:
            raise EdgeError("nothing to capture: give --video/--camera/--gst and/or --audio/--mic, "
                            "or set video.source / audio.source in the config")
        if duration_s is not None and not duration_s > 0:
            raise EdgeError(f"--duration must be > 0 seconds, got {duration_s}")
        config = screener.config
        vcfg = config.video
        self.fast = fast
        self.duration_s = duration_s
        self.video_source = open_video_source(video, fast, vcfg.width, vcfg.height, vcfg.fps, capture_factory)
        if self.video_source is not None and capture_factory is None:
            check_opens(self.video_source)
        self.audio_source = open_audio_source(audio, config.audio.device_rates_hz, config.audio.chunk_ms,
                                              pyaudio_module)
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
        self._stop_reason: Optional[str] = None
        self._stop = threading.Event()
        self._started = False

    @property
    def result(self) -> Optional[SessionResult]:
        """The SessionResult once the run ended (None while it runs)."""
        return self.session.result

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def stop(self, reason: str = "stopped") -> None:
        """End the run from any thread; the session is kept as cut short with `reason`."""
        self._stop_reason = reason
        self._stop.set()

    def run(self) -> SessionResult:
        """Run to the end, dropping the ticks (on_tick still sees them); the result."""
        for _ in self:
            pass
        return self.session.result

    def __iter__(self) -> Iterator[Tick]:
        if self._started:
            raise EdgeError("a SourceRun can be iterated once")
        self._started = True
        complete, reason, closed = False, "internal error", False
        try:
            try:
                self._start_readers()
                reason = yield from self._feed()
                complete = reason in ("sources ended", "duration reached")
            except KeyboardInterrupt:
                reason = "interrupted"
            self._stop_readers()
            if self._camera_away():  # a live camera gone at the end: its last ticks close without it
                yield from self.session.advance_video(self._end_s() - 1e-6)  # the tick that ends there, not after
            yield from self.session.close_ticks()  # the last ticks go to the caller too
            self._close(reason, complete)
            closed = True
        except KeyboardInterrupt:  # while the last ticks closed: still an interrupted session
            reason, complete = "interrupted", False
        except GeneratorExit:  # the caller stopped iterating: keep what ran
            reason = self._stop_reason or "stopped by the caller"
            raise
        except Exception as exc:
            reason = f"internal error: {type(exc).__name__}: {exc}"
            raise
        finally:
            if not closed:
                self._close(reason, False)

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
        Returns the stop reason."""
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
                return self._stop_reason or "stopped"
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
                return "duration reached"
            now = time.monotonic()
            if got:
                last_data = now
                last_frame = now if not video_ended else last_frame
            if not video_ended and self.video_source.live and now - last_frame > LIVE_VIDEO_GRACE_S:
                # The camera is away (its reader is reopening it): let the ticks go on without it.
                yield from session.advance_video(self.clock.now_s() - LIVE_VIDEO_GRACE_S)
            if not got and not live and now - last_data > STALL_TIMEOUT_S:
                session.warnings.append(f"no data from any source for {STALL_TIMEOUT_S:.0f} s; session ended")
                return STALLED
        reached = max(video_t, audio_taken / float(SAMPLE_RATE_HZ))
        if self.duration_s is not None and reached >= self.duration_s - TICK_S:
            return "duration reached"
        return "sources ended"

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

    def _close(self, reason: str, complete: bool) -> None:
        self._stop_readers()
        session = self.session
        if self._stop_reason and not complete and reason == "stopped":
            reason = self._stop_reason
        session.finish(stop_reason=reason, complete=complete)
        session.extra_counters = dict  # the result has them; no cycle keeps the readers alive
