"""What the kiosk page shows, built from the engine's typed results (no HTTP here).

`LiveView` turns the ticks of the running session into the capture screen's state
(progress, the prompt on screen, face found, voice level, and the hints a visitor can act
on: too dark, no voice, several faces, no face; a camera or microphone that stopped is
named as such, never taken for a walk-away). `result_view` turns a visit (the session's
result, the questionnaire's answers, how it ended) into the result screen through the one
outcome rule (edge.rules.outcome): the questionnaire leads, the sensor readings are
supporting signs with their caveats, the advice follows the most cautious reading, and the
help line is always there. Every word comes from the string catalogue (strings.py); the
numbers the page shows are formatted here, once, so the page and a clinic's export read
the same figures.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional, Sequence

from edge import SessionResult, StopKind, Tick
from edge.apps.kiosk.strings import catalogue
from edge.rules.outcome import decide_outcome
from edge.rules.phq8 import QuestionnaireResult

HINT_WINDOW_S = 1.0  # brightness and faces are judged over the last second
VOICE_WINDOW_S = 3.0  # no voiced audio this long while capturing: "we cannot hear you"
FACE_LOST_S = 0.5  # no face this long: the face-found indicator goes off
SOURCE_STOPPED_S = 1.5  # no frames (or audio) this long while the session runs: that source stopped
LEVEL_FLOOR_DBFS = -60.0  # the voice meter's empty end

WALKED_AWAY = "walked away"
NO_ANSWER = "no answer"
STOPPED_BY_VISITOR = "stopped by the visitor"
HINT_CODES = ("camera_stopped", "microphone_stopped", "no_face", "several_faces", "too_dark", "no_voice")


class LiveView:
    """The capture screen's state from the running session's ticks (one per 100 ms).

    expected_s: how long this capture should last (capture_seconds, or the recordings'
    length when that is shorter); prompts rotate evenly over it. strings: the catalogue.
    """

    def __init__(self, expected_s: float, prompts: Sequence[str], min_brightness: float, walk_away_s: float,
                 has_video: bool, has_audio: bool, strings: Optional[Dict[str, str]] = None):
        self.expected_s = float(expected_s)
        self.prompts = list(prompts)
        self.min_brightness = float(min_brightness)
        self.walk_away_s = float(walk_away_s)
        self.has_video = has_video
        self.has_audio = has_audio
        self.strings = strings or catalogue("en")
        self.elapsed_s = 0.0
        self.last_face_s = 0.0  # media time of the last tick with a face (the start counts as one)
        self.last_frame_s = 0.0  # ... with a frame
        self.last_audio_s = 0.0  # ... with audio
        self.camera_stopped_s: Optional[float] = None  # media time the camera stopped (None: it did not)
        self.microphone_stopped_s: Optional[float] = None
        self.level_dbfs = LEVEL_FLOOR_DBFS
        self.faces_in_view = 0
        self._recent: Deque[Tick] = deque(maxlen=int(round(VOICE_WINDOW_S / 0.1)))

    def add(self, tick: Tick) -> None:
        self.elapsed_s = tick.t_s + 0.1
        self._recent.append(tick)
        if tick.frames > 0:
            self.last_frame_s = self.elapsed_s
        if not tick.audio_gap:
            self.last_audio_s = self.elapsed_s
        if tick.faces > 0:
            self.last_face_s = self.elapsed_s
        self.level_dbfs = max(LEVEL_FLOOR_DBFS, float(tick.level_dbfs))
        # A source that gives nothing while the session runs on has stopped (it stays stopped:
        # what it missed cannot be read any more).
        # (Before its first frame, a camera gets twice as long: it may be warming up.)
        if self.has_video and self.camera_stopped_s is None and self._silent(self.last_frame_s):
            self.camera_stopped_s = self.last_frame_s
        if self.has_audio and self.microphone_stopped_s is None and self._silent(self.last_audio_s):
            self.microphone_stopped_s = self.last_audio_s

    def _silent(self, last_s: float) -> bool:
        return self.elapsed_s - last_s >= (SOURCE_STOPPED_S if last_s > 0 else 2 * SOURCE_STOPPED_S)

    def sources_ended(self, result: Optional[SessionResult] = None) -> None:
        """The session ended: a source whose stream ended well before the other's (a shorter
        recording, a camera unplugged at the end) counts as stopped too."""
        if result is None or not self.has_video or not self.has_audio:
            return
        gaps = getattr(result.quality, "gaps", {}) or {}

        def ended(stream: str) -> bool:  # a gap that lasts to the end (not a hiccup mid-way)
            return any(float(gap[1]) >= result.duration_s - 0.5 and float(gap[1]) - float(gap[0]) >= 0.5
                       for gap in gaps.get(stream, ()))

        if self.camera_stopped_s is None and ended("video"):
            self.camera_stopped_s = self.last_frame_s
        if self.microphone_stopped_s is None and ended("audio"):
            self.microphone_stopped_s = self.last_audio_s

    @property
    def camera_stopped(self) -> bool:
        return self.camera_stopped_s is not None

    @property
    def microphone_stopped(self) -> bool:
        return self.microphone_stopped_s is not None

    @property
    def no_face_s(self) -> float:
        """Seconds of media since a face was last seen while frames came (0 without video)."""
        if not self.has_video:
            return 0.0
        return max(0.0, min(self.elapsed_s, self.last_frame_s) - self.last_face_s)

    def walked_away(self) -> bool:
        """No face while the camera gives frames: a camera that stopped is not a walk-away."""
        return self.has_video and not self.camera_stopped and self.no_face_s >= self.walk_away_s

    def _last(self, seconds: float) -> List[Tick]:
        n = max(1, int(round(seconds / 0.1)))
        return list(self._recent)[-n:]

    def hints(self) -> List[str]:
        """The codes of HINT_CODES that apply now, most important first."""
        found = []
        if self.camera_stopped:
            found.append("camera_stopped")
        if self.microphone_stopped:
            found.append("microphone_stopped")
        recent = self._last(HINT_WINDOW_S)
        if self.has_video and not self.camera_stopped and recent:
            if self.no_face_s >= FACE_LOST_S:
                found.append("no_face")
            if max(t.faces_in_view for t in recent) > 1:
                found.append("several_faces")
            levels = [t.brightness for t in recent if t.brightness is not None]
            if levels and sum(levels) / len(levels) < self.min_brightness:
                found.append("too_dark")
        if self.has_audio and not self.microphone_stopped and self.elapsed_s >= VOICE_WINDOW_S:
            if max(t.voiced_ratio for t in self._last(VOICE_WINDOW_S)) <= 0.0:
                found.append("no_voice")
        return found

    def state(self) -> Dict:
        expected = max(self.expected_s, 0.1)
        progress = min(1.0, self.elapsed_s / expected)
        slot = expected / max(1, len(self.prompts))
        prompt_index = min(len(self.prompts) - 1, int(self.elapsed_s / slot)) if self.prompts else 0
        recent = self._last(FACE_LOST_S)
        hints = self.hints()
        video_live = self.has_video and not self.camera_stopped
        return {
            "elapsed_s": round(self.elapsed_s, 1),
            "expected_s": round(self.expected_s, 1),
            "progress": round(progress, 3),
            "prompt_index": prompt_index,
            "prompt": self.prompts[prompt_index] if self.prompts else "",
            "face_found": bool(video_live and any(t.faces > 0 for t in recent)),
            "faces_in_view": max((t.faces_in_view for t in recent), default=0) if video_live else 0,
            "brightness": next((t.brightness for t in reversed(recent) if t.brightness is not None), None),
            "level_dbfs": round(self.level_dbfs, 1),
            "level": round((self.level_dbfs - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS, 3),
            "voiced": bool(self.has_audio and any(t.voiced_ratio > 0 for t in recent)),
            "no_face_s": round(self.no_face_s, 1),
            "walk_away_s": self.walk_away_s,
            "has_video": self.has_video,
            "has_audio": self.has_audio,
            "camera_stopped": self.camera_stopped,
            "microphone_stopped": self.microphone_stopped,
            "hints": [{"code": code, "text": self.strings["hint." + code]} for code in hints],
        }


def _points(value: Optional[float]) -> str:
    return "" if value is None else f"{float(value):.1f}"


def why_code(result: Optional[SessionResult], visit_stop: Optional[str], live: Optional[LiveView]) -> Optional[str]:
    """Why a visit gives no result (a key `why.<code>` of the catalogue), or None when it gives
    one. visit_stop: the kiosk's own reason after the capture (NO_ANSWER, STOPPED_BY_VISITOR,
    "interrupted") when the visit ended while the questionnaire was still open."""
    if visit_stop == NO_ANSWER:
        return "no_answer"
    if visit_stop == STOPPED_BY_VISITOR:
        return "stopped"
    if visit_stop == "interrupted":
        return "interrupted"
    if result is None or result.complete:
        return None
    stop = result.stop_reason
    if stop.tag == WALKED_AWAY:
        return "walked_away"
    if stop.tag == STOPPED_BY_VISITOR:
        return "stopped"
    if stop.kind is StopKind.INTERNAL_ERROR:
        return "internal"  # the technical reason is in the stored session and the log, not on screen
    if stop.kind is StopKind.INTERRUPTED:
        return "interrupted"
    if live is not None and live.camera_stopped and not live.microphone_stopped:
        return "camera_stopped"
    if live is not None and live.microphone_stopped and not live.camera_stopped:
        return "microphone_stopped"
    return "sources_stopped"


def result_view(result: SessionResult, lost: Sequence[str] = (), answers: Optional[Sequence] = None,
                questionnaire_asked: bool = False, live: Optional[LiveView] = None,
                visit_stop: Optional[str] = None, help_line: str = "your local emergency number",
                show_estimate: bool = False, strings: Optional[Dict[str, str]] = None,
                research_kept: bool = False) -> Dict:
    """The result screen of a visit: one outcome (edge.rules.outcome) in the catalogue's words,
    or why there is none. `shown` in the view is what the stored visit records as shown.

    answers: the questionnaire's answers (None for an item not answered) when it was asked.
    A visit cut short (walked away, stopped, interrupted, no answer) shows no reading. When the
    sensors stopped but the visitor finished the questionnaire, the questionnaire leads and the
    sensor readings say why they are missing. Without the questionnaire, a session whose
    sources stopped gives no result."""
    s = strings or catalogue("en")
    view: Dict = {
        "session_id": result.session_id,
        "complete": result.complete,  # the sensors' session ran to its end
        "stop_reason": str(result.stop_reason),
        "notice": s["result.notice"],
        "help": s["result.help_line"].format(help_line=help_line),
        "demo_weights": result.demo_weights,
        "saved": not lost,
        "lost": list(lost),
        "duration_s": round(result.duration_s, 1),
        "abstained": False,
        "why": None,
        "why_code": None,
        "research_kept": s["result.research_kept"] if research_kept else None,
    }
    complete_answers = answers is not None and len(answers) > 0 and all(a is not None for a in answers)
    questionnaire = QuestionnaireResult.from_answers(list(answers)) if complete_answers else None
    code = why_code(result, visit_stop, live)
    if code is None and questionnaire is None and live is not None and (live.camera_stopped
                                                                         or live.microphone_stopped):
        # Sensors only, and one of them stopped: what ran is not a visit's worth of readings.
        code = "camera_stopped" if live.camera_stopped and not live.microphone_stopped else (
            "microphone_stopped" if not live.camera_stopped else "sources_stopped")
    sources_stopped = code in ("camera_stopped", "microphone_stopped", "sources_stopped")
    if code is not None and not (sources_stopped and questionnaire is not None):
        view.update(abstained=True, why=s["why." + code], why_code=code, advice=s["advice.general"],
                    shown={"result": False, "why": code})
        return view
    vote, phq8 = result.vote, result.phq8
    sensors_ok = result.complete and not (live is not None and (live.camera_stopped or live.microphone_stopped))
    vote_level = vote.level if sensors_ok and vote.status == "ok" else None
    estimate_band = phq8.band if sensors_ok and phq8.status == "ok" else None
    outcome = decide_outcome(questionnaire, vote_level, bool(vote.provisional), estimate_band,
                             bool(result.demo_weights), show_estimate, questionnaire_asked)
    if outcome.lead == "none" and not questionnaire_asked:
        view.update(abstained=True, why=s["why.no_signal"], why_code="no_signal", advice=s["advice.general"],
                    shown={"result": False, "why": "no_signal"})
        return view
    source_text = None
    if live is not None and live.camera_stopped:
        source_text = s["source.camera_stopped"]
    elif live is not None and live.microphone_stopped:
        source_text = s["source.microphone_stopped"]
    elif not result.complete:
        source_text = s["why.sources_stopped"]
    signals = []
    for signal in outcome.signals:
        if not signal.shown:
            continue
        caveats = [s["caveat." + c] for c in signal.caveats if c in ("provisional", "demo_weights")]
        item: Dict = {"name": signal.name, "taken": signal.taken, "lead": signal.name == "questionnaire"}
        if signal.name == "questionnaire":
            item["title"] = s["result.questionnaire_title"]
            item["text"] = (s["result.questionnaire_score"].format(score=questionnaire.score,
                                                                    band_text=s["result.band." + questionnaire.band])
                            if questionnaire is not None else s["result.questionnaire_missing"])
            if questionnaire is not None:
                item.update(score=questionnaire.score, band=questionnaire.band)
        elif signal.name == "expression":
            item["title"] = s["result.expression_title"]
            item["text"] = (s["result.expression." + vote_level] if vote_level is not None
                            else source_text or s["result.expression_missing"])
            if vote_level is not None:
                item["level"] = vote_level
        else:
            item["title"] = s["result.estimate_title"]
            if estimate_band is not None:
                low, high = phq8.interval or (None, None)
                item.update(mu_text=_points(phq8.mu), low_text=_points(low), high_text=_points(high),
                            band=estimate_band)
                item["text"] = s["result.estimate_text"].format(mu=item["mu_text"], low=item["low_text"],
                                                                high=item["high_text"], band=estimate_band)
            else:
                item["text"] = source_text or s["result.estimate_missing"]
        item["caveats"] = caveats
        signals.append(item)
    view["signals"] = signals
    view["lead"] = outcome.lead
    view["advice"] = s["advice." + outcome.advice]
    view["disagree"] = s["result.disagree"] if outcome.disagree else None
    view["outcome"] = outcome.to_dict()
    view["shown"] = {"result": True, "outcome": outcome.to_dict(),
                     "texts": {item["name"]: item["text"] for item in signals}}
    if questionnaire is not None:
        view["questionnaire"] = questionnaire.to_dict()
    return view
