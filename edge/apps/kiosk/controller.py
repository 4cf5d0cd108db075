"""The kiosk's one state machine: welcome -> capture -> result -> welcome, session after
session on one Screener (models loaded once).

Phases (`state()["phase"]`):
    welcome          consent and the Start button
    camera_missing   the sources could not be opened; retried every PROBE_EVERY_S
    capture          a session runs (progress, prompt, face, voice, hints) while the visitor
                     answers the PHQ-8 (one item a screen; `questionnaire` in the state), and
                     after the sensors' part ended, until the last answer (or Stop, or no answer
                     for answer_timeout_seconds)
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

from edge import (
    EdgeError,
    ResultStore,
    SessionWriter,
    SourceError,
    SourceProbe,
    StopKind,
    first_line,
    private_dir,
    release_memory,
)
from edge.apps.kiosk.preview import Preview
from edge.apps.kiosk.strings import catalogue
from edge.apps.kiosk.views import NO_ANSWER, STOPPED_BY_VISITOR, WALKED_AWAY, LiveView, result_view
from edge.rules.phq8 import ANSWER_MAX, PHQ8_ITEMS

PROBE_EVERY_S = 2.0  # the sources are tried again this often while they are missing


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
        self.strings = catalogue(self.kiosk.language)
        self.questionnaire_on = self.kiosk.questionnaire == "phq8"
        self._answers: List[Optional[int]] = []
        self._item = 0
        self._last_answer_at = 0.0
        self._research = False
        self._sensing_done = False
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
                      "demo_weights": bool(screener.demo_weights), "language": self.kiosk.language,
                      "questionnaire": self.kiosk.questionnaire, "items": PHQ8_ITEMS if self.questionnaire_on else 0,
                      "research_opt_in": bool(self.kiosk.research_opt_in and self.questionnaire_on),
                      "visit_minutes": self._visit_minutes()}
        self._closing = False
        self._stop_requested: Optional[str] = None
        self._ticker = threading.Thread(target=self._tick_loop, name="kiosk timer", daemon=True)
        # Called with each saved SessionResult, after its result is on screen (`kiosk.report`: edge.SessionReporter).
        self.on_saved: Optional[Callable] = None

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
    def start(self, research: bool = False) -> Tuple[bool, Dict]:
        """Start a session unless one runs already: (started, state). A second tap while
        one is starting or running gets the running one, never a second session.
        research: the visitor's second opt-in (keep the visit's tick features with the
        answers as a labelled pair); only with the questionnaire and the profile's offer."""
        research = bool(research and self.questionnaire_on and self.kiosk.research_opt_in)
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
                                  self.kiosk.walk_away_seconds, has_video=run.has_video, has_audio=run.has_audio,
                                  strings=self.strings)
            self._answers = [None] * PHQ8_ITEMS if self.questionnaire_on else []
            self._item = 0
            self._last_answer_at = time.monotonic()
            self._research = research
            self._sensing_done = False
            try:
                features = self._features_path(run.session_id) if research else None
                writer = SessionWriter(self.config.output, run.session_id, features,
                                       self.config.models.severity.context)
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
            if self._phase == "capture" and self._run is not None and self._stop_requested is None:
                self._stop_requested = reason
                self._run.stop(reason, tag=STOPPED_BY_VISITOR)
                self._bump()  # wakes a visit waiting for the questionnaire's answers
            return self._state()

    def answer(self, item: int, value: int) -> Tuple[bool, Dict]:
        """The visitor's answer `value` (0..3) to item `item` (0-based): (taken, state). Only
        the item on screen takes an answer (a double tap cannot answer the next one too)."""
        with self._lock:
            ok = (self._phase == "capture" and self.questionnaire_on and self._stop_requested is None
                  and isinstance(item, int) and item == self._item and item < PHQ8_ITEMS
                  and isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= ANSWER_MAX)
            if ok:
                self._answers[item] = value
                self._item = item + 1
                self._last_answer_at = time.monotonic()
                self._bump()
            return ok, self._state()

    def back(self) -> Dict:
        """The questionnaire's Back button: the previous item again (its answer kept until changed)."""
        with self._lock:
            if self._phase == "capture" and self.questionnaire_on and self._item > 0:
                self._item -= 1
                self._last_answer_at = time.monotonic()
                self._bump()
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
            state["capture"]["sensing_done"] = self._sensing_done
            if self._sensing_done:
                state["capture"]["progress"] = 1.0
            if self.questionnaire_on:
                state["questionnaire"] = {"item": self._item, "total": PHQ8_ITEMS, "answers": list(self._answers),
                                          "complete": self._questionnaire_complete()}
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
        """How long the sensors' part really lasts: capture_seconds, or the recordings' length
        when every source is a file and the longest is shorter (a session runs until every
        source ended, so a video shorter than the audio does not shorten it)."""
        expected = float(self.kiosk.capture_seconds)
        if self._file_lengths is None:
            probe = self.screener.probe(self._file(self.video), self._file(self.audio))
            self._file_lengths = tuple(p.length_s for p in (probe.video, probe.audio) if p is not None and p.ok)
        sources = [spec for spec in (self.video, self.audio) if spec]
        lengths = [length for length in self._file_lengths if length]
        if sources and len(lengths) == len(sources):
            expected = min(expected, max(lengths))
        return expected

    def _visit_minutes(self) -> int:
        """What the welcome screen promises: the capture, or the questionnaire at about 8 s
        an item when that is longer, plus half a minute for consent and the result."""
        seconds = max(self._expected_s(), 8.0 * PHQ8_ITEMS if self.questionnaire_on else 0.0) + 30.0
        return max(1, int(round(seconds / 60.0)))

    def _features_path(self, session_id: str) -> str:
        """Where a research visit's tick features go (owner-only folder next to the summaries)."""
        folder = os.path.join(self.config.output.dir, "labelled")
        try:
            private_dir(folder)
        except OSError as exc:
            raise EdgeError(f"output.dir: folder {folder} cannot be created ({exc.strerror or exc})") from None
        return os.path.join(folder, f"{session_id}.npz")

    def _questionnaire_complete(self) -> bool:
        return bool(self._answers) and all(a is not None for a in self._answers)

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
            if self.preview is not None:
                self.preview.stop()
            result = run.result
            visit_stop = self._wait_for_answers(run, live, result, last_tick_at)
            with self._lock:
                self._capture_ended = max(last_tick_at, self.now()) if self.questionnaire_on else last_tick_at
                self._phase = "saving"
                self._bump()
            lost: List[str] = []
            view = None
            if result is not None:
                lost = writer.close(result)
                if lost:
                    _log(f"session {result.session_id} NOT saved: {', '.join(lost)} lost")
                else:
                    _log(f"session {result.session_id} saved ({'complete' if result.complete else result.stop_reason}"
                         f", {result.duration_s:.1f} s)")
                view = self._visit_view(result, lost, live, visit_stop)
            with self._lock:
                self._run = None
                self._thread = None if self._thread is threading.current_thread() else self._thread
                if result is not None:
                    self._result = view
                    self.last_timings = {"result_ready_ms": round((self.now() - self._capture_ended) * 1000.0, 1)}
                    self._result["result_ready_ms"] = self.last_timings["result_ready_ms"]
                    self.last_session_id = result.session_id
                    self._phase = "result"
                    self._reset_at = time.monotonic() + float(self.kiosk.result_seconds)
                else:
                    self._to_welcome()
                self._bump()
            release_memory()  # after the result is on screen: it never delays it
            if self.on_saved is not None and result is not None and not lost:
                try:
                    self.on_saved(result)
                except Exception as exc:  # the care team's copy is extra: the session is saved here
                    _log(f"session {result.session_id} not reported: {first_line(exc)}")

    def _wait_for_answers(self, run, live: LiveView, result, last_tick_at: float) -> Optional[str]:
        """After the sensors' part: wait for the questionnaire's last answer (the page shows the
        remaining items). The visit's own stop reason when it ended without them: Stop
        (STOPPED_BY_VISITOR), no answer for answer_timeout_seconds (NO_ANSWER), the kiosk
        closing ("interrupted"); None when answered, or when there is nothing to wait for."""
        with self._lock:
            if live is not None and result is not None:
                live.sources_ended(result)
            self._sensing_done = True
            self._bump()
            if not self.questionnaire_on or result is None or self._stop_requested is not None:
                return None
            stop = result.stop_reason
            if stop.kind in (StopKind.INTERRUPTED, StopKind.INTERNAL_ERROR, StopKind.OUTPUT_FAILED):
                return None
            timeout_s = float(self.kiosk.answer_timeout_seconds)
            while not self._questionnaire_complete():
                if self._closing:
                    return "interrupted"
                if self._stop_requested is not None:
                    return STOPPED_BY_VISITOR
                if time.monotonic() - self._last_answer_at >= timeout_s:
                    self._stop_requested = f"{NO_ANSWER} for {timeout_s:g} s"
                    _log(f"session {run.session_id}: {self._stop_requested}, the visit gives no result")
                    return NO_ANSWER
                self._changed.wait(0.5)
            return None

    def _visit_view(self, result, lost: List[str], live: LiveView, visit_stop: Optional[str]) -> Dict:
        """The result screen, and the visit's record beside its session row: the answers, the
        score and band, what the visitor was shown, and (with the research opt-in and every
        answer) the labelled pair's features file; otherwise that file is removed."""
        answers = list(self._answers) if self.questionnaire_on else None
        features = result.outputs.get("features_file")
        view = result_view(result, lost, answers, self.questionnaire_on, live, visit_stop, self.kiosk.help_line,
                           self.kiosk.show_phq8_estimate, self.strings)
        labelled = bool(self._research and features and "questionnaire" in view and not view["abstained"])
        if features and not labelled:
            try:
                os.unlink(features)
            except OSError:
                pass
            features = None
            result.outputs.pop("features_file", None)
        if labelled:
            view["research_kept"] = self.strings["result.research_kept"]
        if self.config.output.database and "database row" not in lost:
            questionnaire = view.get("questionnaire") or {}
            record = {"session_id": result.session_id, "source": "kiosk",
                      "instrument": self.kiosk.questionnaire, "given_utc": _utc_now(),
                      "answers": answers or [], "items_answered": sum(a is not None for a in answers or []),
                      "score": questionnaire.get("score"), "band": questionnaire.get("band"),
                      "research_consent": self._research, "features_file": features if labelled else None,
                      "shown": view.get("shown")}
            try:
                store = ResultStore(self.config.output.database)
                try:
                    store.save_questionnaire(record)
                finally:
                    store.close()
            except Exception as exc:  # the session row is saved; the visit's record is named as lost
                view["saved"] = False
                view["lost"] = view["lost"] + ["questionnaire"]
                _log(f"session {result.session_id}: questionnaire NOT saved: {first_line(exc)}")
        return view

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
