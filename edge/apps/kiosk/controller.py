"""The kiosk's one state machine: welcome -> capture -> result -> welcome, session after
session on one Screener (models loaded once).

Phases (`state()["phase"]`):
    welcome          consent and the Start button
    camera_missing   the sources could not be opened; retried every PROBE_EVERY_S
    capture          a session runs (progress, prompt, face, voice, hints)
    saving           the capture ended; the result is being saved (well under a second)
    result           the readings, or why there are none; back to welcome after result_seconds

The state lives here, on the server: a page that reloads picks the live session up from
it, and two taps on Start give one session (`start()` is guarded by the lock). Every
change bumps `version` and wakes the event streams (`wait_change`).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edge import EdgeError, SessionWriter, SourceError, SourceProbe, StopKind, first_line, release_memory
from edge.apps.kiosk.preview import Preview
from edge.apps.kiosk.views import STOPPED_BY_VISITOR, WALKED_AWAY, LiveView, result_view

PROBE_EVERY_S = 2.0  # the sources are tried again this often while they are missing


def _log(message: str) -> None:
    print(f"edge kiosk: {message}", file=sys.stderr, flush=True)


_DEVICE_NAMES = {"video": "The camera", "audio": "The microphone"}


def _missing_text(streams: Sequence[str], error: str) -> str:
    """What the page says when the sources cannot be opened: `streams` are those that
    failed ("video", "audio"; none: nothing is configured)."""
    if len(streams) == 1:
        what = f"{_DEVICE_NAMES[streams[0]]} is not available"
    elif streams:
        what = "The camera and the microphone are not available"
    else:
        what = "The camera or microphone is not available"
    return f"{what}. Trying again every {PROBE_EVERY_S:.0f} seconds. Staff: {error}"


class KioskController:
    """Sessions for the kiosk page; see the module docstring.

    screener: a loaded edge.Screener. kiosk: the profile's `kiosk` section. video /
    audio: source specs as `Screener.run` takes them (files are replayed in real time, as
    if live).
    """

    def __init__(self, screener, kiosk, video: Optional[str], audio: Optional[str],
                 now: Callable[[], float] = time.time):
        config = screener.config
        self.screener = screener
        self.config = config
        self.kiosk = kiosk
        self.video = video
        self.audio = audio
        self.now = now
        self.preview = Preview(self.kiosk.preview_width, self.kiosk.preview_fps) if self.kiosk.preview else None
        self.sessions_run = 0
        self.last_session_id: Optional[str] = None
        self.last_timings: Dict[str, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._phase = "welcome"
        self._message: Optional[str] = None
        self._live: Optional[LiveView] = None
        self._run = None
        self._session_id: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self._result: Optional[Dict] = None
        self._reset_at = 0.0
        self._next_probe = 0.0
        self._capture_ended = 0.0
        self._file_lengths: Optional[Tuple[Optional[float], ...]] = None
        # What the welcome screen says (fixed for the process's life).
        self._info = {"capture_seconds": round(self._expected_s(), 1),
                      "result_seconds": float(self.kiosk.result_seconds),
                      "store_media": bool(config.output.store_media), "preview": bool(self.kiosk.preview),
                      "demo_weights": bool(screener.demo_weights)}
        self._closing = False
        self._stop_requested: Optional[str] = None
        self._ticker = threading.Thread(target=self._tick_loop, name="kiosk timer", daemon=True)

    # ----- lifetime ------------------------------------------------------------------
    def begin(self) -> None:
        """Try the sources once (camera missing: the page says so and it is retried), then
        start the timer that resets the result screen and retries missing sources."""
        probe = self._probe()
        with self._lock:
            if probe is not None:
                self._set_missing(*probe)
        self._ticker.start()

    def close(self, reason: str = "interrupted: the kiosk was stopped", timeout_s: float = 30.0) -> None:
        """Stop a running session (kept as cut short, with `reason`), wait until it is
        saved, and end the event streams."""
        with self._lock:
            self._closing = True
            run, thread = self._run, self._thread
            if run is not None:
                self._stop_requested = reason
                run.stop(reason, kind=StopKind.INTERRUPTED)
            self._bump()
        if thread is not None:
            thread.join(timeout_s)

    @property
    def closing(self) -> bool:
        return self._closing

    # ----- what the page asks --------------------------------------------------------
    def start(self) -> Tuple[bool, Dict]:
        """Start a session unless one runs already: (started, state). A second tap while
        one is starting or running gets the running one, never a second session."""
        with self._lock:
            if self._closing:
                return False, self._state()
            if self._phase in ("capture", "saving"):
                return False, self._state()
            try:
                run = self.screener.run(self.video, self.audio, fast=False,
                                        duration_s=float(self.kiosk.capture_seconds), on_frame=self._on_frame)
            except SourceError as exc:
                self._set_missing([exc.stream], first_line(exc))
                return False, self._state()
            self._run = run
            self._session_id = run.session_id
            self._stop_requested = None
            self._result = None
            self._live = LiveView(self._expected_s(), self.kiosk.prompts, self.kiosk.min_brightness,
                                  self.kiosk.walk_away_seconds, has_video=run.has_video, has_audio=run.has_audio)
            try:
                writer = SessionWriter(self.config.output, run.session_id, None, self.config.models.severity.context)
            except EdgeError:
                run.close("outputs cannot be written", kind=StopKind.OUTPUT_FAILED)
                self._run = None
                raise
            if self.preview is not None:
                self.preview.start()
            self._phase = "capture"
            self._message = None
            self._thread = threading.Thread(target=self._session_main, args=(run, writer), name="kiosk session",
                                            daemon=True)
            self._thread.start()
            self.sessions_run += 1
            self._bump()
            _log(f"session {run.session_id} started")
            return True, self._state()

    def stop(self, reason: str = STOPPED_BY_VISITOR) -> Dict:
        """The visitor's Stop button: the session ends now and gives no result."""
        with self._lock:
            if self._phase == "capture" and self._run is not None:
                self._stop_requested = reason
                self._run.stop(reason, tag=STOPPED_BY_VISITOR)
            return self._state()

    def reset(self) -> Dict:
        """The result screen's Done button (or its timeout): back to the welcome screen."""
        with self._lock:
            if self._phase == "result":
                self._to_welcome()
            return self._state()

    def state(self) -> Dict:
        with self._lock:
            return self._state()

    def wait_change(self, seen_version: int, timeout_s: float) -> Tuple[Dict, int]:
        """The state once its version differs from `seen_version` (or after timeout_s)."""
        with self._lock:
            if self._version == seen_version and not self._closing:
                self._changed.wait(timeout_s)
            return self._state(), self._version

    # ----- inside --------------------------------------------------------------------
    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()

    def _state(self) -> Dict:
        state: Dict = {"phase": self._phase, "version": self._version, "session_id": self._session_id,
                       "server_time_ms": int(self.now() * 1000), "kiosk": self._info}
        if self._phase == "camera_missing":
            state["message"] = self._message
            state["retry_in_s"] = round(max(0.0, self._next_probe - time.monotonic()), 1)
        if self._phase in ("capture", "saving") and self._live is not None:
            state["capture"] = self._live.state()
            state["preview"] = self.preview is not None
        if self._phase == "saving":
            state["capture"]["progress"] = 1.0
        if self._phase == "result" and self._result is not None:
            state["result"] = self._result
            state["reset_in_s"] = round(max(0.0, self._reset_at - time.monotonic()), 1)
            state["capture_ended_ms"] = int(self._capture_ended * 1000)
        return state

    def _set_missing(self, streams: Sequence[str], error: str) -> None:
        if self._phase != "camera_missing":
            _log(f"sources not available: {error}")
        self._phase = "camera_missing"
        self._message = _missing_text(streams, error)
        self._next_probe = time.monotonic() + PROBE_EVERY_S
        self._bump()

    def _to_welcome(self) -> None:
        self._phase = "welcome"
        self._result = None
        self._live = None
        self._session_id = None
        self._bump()

    def _expected_s(self) -> float:
        """capture_seconds, or the recording's length when a file is shorter."""
        expected = float(self.kiosk.capture_seconds)
        if self._file_lengths is None:
            probe = self.screener.probe(self._file(self.video), self._file(self.audio))
            self._file_lengths = tuple(p.length_s for p in (probe.video, probe.audio) if p is not None and p.ok)
        for length in self._file_lengths:
            if length:
                expected = min(expected, length)
        return expected

    @staticmethod
    def _file(spec: Optional[str]) -> Optional[str]:
        return spec if spec and os.path.isfile(spec) else None

    def _probe(self) -> Optional[Tuple[List[str], str]]:
        """None when the sources open now, else (the streams that failed, one line why)."""
        if self.video is None and self.audio is None:
            return [], "no video or audio source configured"
        probe: SourceProbe = self.screener.probe(self.video, self.audio)
        if probe.ok:
            return None
        return [p.stream for p in probe.failed], "; ".join(p.reason for p in probe.failed)

    def _on_frame(self, frame, face_box) -> None:
        if self.preview is not None:
            self.preview.offer(frame.image, face_box)

    def _session_main(self, run, writer: SessionWriter) -> None:
        live = self._live
        last_tick_at = self.now()
        try:
            for tick in run:
                writer.tick(tick)
                last_tick_at = self.now()
                with self._lock:
                    live.add(tick)
                    if live.walked_away() and self._stop_requested is None:
                        self._stop_requested = f"{WALKED_AWAY}: no face for {live.walk_away_s:g} s"
                        run.stop(self._stop_requested, tag=WALKED_AWAY)
                    self._bump()
        except Exception as exc:  # an internal error: keep what ran, say so, go on with the next visitor
            _log(f"session {run.session_id} failed: {type(exc).__name__}: {first_line(exc)}")
        finally:
            with self._lock:
                self._capture_ended = last_tick_at
                self._phase = "saving"
                self._bump()
            if self.preview is not None:
                self.preview.stop()
            result = run.result
            lost: List[str] = []
            if result is not None:
                lost = writer.close(result)
                if lost:
                    _log(f"session {result.session_id} NOT saved: {', '.join(lost)} lost")
                else:
                    _log(f"session {result.session_id} saved ({'complete' if result.complete else result.stop_reason}"
                         f", {result.duration_s:.1f} s)")
            with self._lock:
                self._run = None
                self._thread = None if self._thread is threading.current_thread() else self._thread
                if result is not None:
                    self._result = result_view(result, lost)
                    self.last_timings = {"result_ready_ms": round((self.now() - self._capture_ended) * 1000.0, 1)}
                    self._result["result_ready_ms"] = self.last_timings["result_ready_ms"]
                    self.last_session_id = result.session_id
                    self._phase = "result"
                    self._reset_at = time.monotonic() + float(self.kiosk.result_seconds)
                else:
                    self._to_welcome()
                self._bump()
            release_memory()  # after the result is on screen: it never delays it

    def _tick_loop(self) -> None:
        while not self._closing:
            time.sleep(0.2)
            probe = False
            with self._lock:
                if self._phase == "result" and time.monotonic() >= self._reset_at:
                    self._to_welcome()
                elif self._phase == "camera_missing" and time.monotonic() >= self._next_probe:
                    probe = True
            if probe:
                missing = self._probe()
                with self._lock:
                    if self._phase != "camera_missing":
                        continue
                    if missing is None:
                        _log("sources available again")
                        self._to_welcome()
                    else:
                        self._set_missing(*missing)
