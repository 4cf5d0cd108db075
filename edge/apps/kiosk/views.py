"""What the kiosk page shows, built from the engine's typed results (no HTTP here).

`LiveView` turns the ticks of the running session into the capture screen's state
(progress, the prompt on screen, face found, voice level, and the hints a visitor can act
on: too dark, no voice, several faces, no face). `result_view` turns a SessionResult into
the result screen. The numbers the page shows are formatted here, once, so the page and
a clinic's export read the same figures.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional, Sequence

from edge import DEMO_WEIGHTS_NOTICE, SCREENING_DISCLAIMER, SessionResult, StopKind, Tick

HINT_WINDOW_S = 1.0  # brightness and faces are judged over the last second
VOICE_WINDOW_S = 3.0  # no voiced audio this long while capturing: "we cannot hear you"
FACE_LOST_S = 0.5  # no face this long: the face-found indicator goes off
LEVEL_FLOOR_DBFS = -60.0  # the voice meter's empty end

WALKED_AWAY = "walked away"
STOPPED_BY_VISITOR = "stopped by the visitor"

NEXT_STEPS = ("This is a screening aid, not a diagnosis. If your mood has been low, or you have lost interest "
              "in things, for two weeks or more, talk to a doctor, a nurse or the pharmacist here. "
              "If you are thinking of harming yourself, call your local emergency number now.")
NEXT_STEPS_HIGH = ("Please talk to a doctor soon about how you have been feeling; the staff here can help "
                   "you arrange it. ") + NEXT_STEPS

HINTS = {
    "no_face": "We cannot see your face: please look at the screen.",
    "several_faces": "Several faces are in view: following the largest (closest) one.",
    "too_dark": "It is too dark to see your face well: please face the light.",
    "no_voice": "We cannot hear you: please answer out loud, a little closer.",
}


class LiveView:
    """The capture screen's state from the running session's ticks (one per 100 ms).

    expected_s: how long this capture should last (capture_seconds, or the recording's
    length when that is shorter); prompts rotate evenly over it.
    """

    def __init__(self, expected_s: float, prompts: Sequence[str], min_brightness: float, walk_away_s: float,
                 has_video: bool, has_audio: bool):
        self.expected_s = float(expected_s)
        self.prompts = list(prompts)
        self.min_brightness = float(min_brightness)
        self.walk_away_s = float(walk_away_s)
        self.has_video = has_video
        self.has_audio = has_audio
        self.elapsed_s = 0.0
        self.last_face_s = 0.0  # media time of the last tick with a face (the start counts as one)
        self.level_dbfs = LEVEL_FLOOR_DBFS
        self.faces_in_view = 0
        self._recent: Deque[Tick] = deque(maxlen=int(round(VOICE_WINDOW_S / 0.1)))

    def add(self, tick: Tick) -> None:
        self.elapsed_s = tick.t_s + 0.1
        self._recent.append(tick)
        if tick.faces > 0:
            self.last_face_s = self.elapsed_s
        self.level_dbfs = max(LEVEL_FLOOR_DBFS, float(tick.level_dbfs))

    @property
    def no_face_s(self) -> float:
        """Seconds of media since a face was last seen (0 without video)."""
        return max(0.0, self.elapsed_s - self.last_face_s) if self.has_video else 0.0

    def walked_away(self) -> bool:
        return self.has_video and self.no_face_s >= self.walk_away_s

    def _last(self, seconds: float) -> List[Tick]:
        n = max(1, int(round(seconds / 0.1)))
        return list(self._recent)[-n:]

    def hints(self) -> List[str]:
        """The codes of HINTS that apply now, most important first."""
        found = []
        recent = self._last(HINT_WINDOW_S)
        if self.has_video and recent:
            if self.no_face_s >= FACE_LOST_S:
                found.append("no_face")
            if max(t.faces_in_view for t in recent) > 1:
                found.append("several_faces")
            levels = [t.brightness for t in recent if t.brightness is not None]
            if levels and sum(levels) / len(levels) < self.min_brightness:
                found.append("too_dark")
        if self.has_audio and self.elapsed_s >= VOICE_WINDOW_S:
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
        return {
            "elapsed_s": round(self.elapsed_s, 1),
            "expected_s": round(self.expected_s, 1),
            "progress": round(progress, 3),
            "prompt_index": prompt_index,
            "prompt": self.prompts[prompt_index] if self.prompts else "",
            "face_found": bool(self.has_video and any(t.faces > 0 for t in recent)),
            "faces_in_view": max((t.faces_in_view for t in recent), default=0),
            "brightness": next((t.brightness for t in reversed(recent) if t.brightness is not None), None),
            "level_dbfs": round(self.level_dbfs, 1),
            "level": round((self.level_dbfs - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS, 3),
            "voiced": bool(self.has_audio and any(t.voiced_ratio > 0 for t in recent)),
            "no_face_s": round(self.no_face_s, 1),
            "walk_away_s": self.walk_away_s,
            "has_video": self.has_video,
            "has_audio": self.has_audio,
            "hints": [{"code": code, "text": HINTS[code]} for code in hints],
        }


def _points(value: Optional[float]) -> str:
    return "" if value is None else f"{float(value):.1f}"


def result_view(result: SessionResult, lost: Sequence[str] = ()) -> Dict:
    """The result screen for a finished session: both readings with their limits, or why
    there is none. A session cut short (walked away, stopped, interrupted) shows no
    readings: too little of the visit ran to say anything."""
    vote, phq8 = result.vote, result.phq8
    view: Dict = {
        "session_id": result.session_id,
        "complete": result.complete,
        "stop_reason": str(result.stop_reason),
        "notice": SCREENING_DISCLAIMER,
        "demo_weights": result.demo_weights,
        "demo_note": DEMO_WEIGHTS_NOTICE if result.demo_weights else None,
        "saved": not lost,
        "lost": list(lost),
        "duration_s": round(result.duration_s, 1),
        "abstained": False,
        "why": None,
    }
    if not result.complete:
        view["abstained"] = True
        stop = result.stop_reason
        if stop.tag == WALKED_AWAY:
            view["why"] = ("No face was seen for a while, so the session stopped and gives no result. "
                           "You are welcome to start again.")
        elif stop.tag == STOPPED_BY_VISITOR:
            view["why"] = "The session was stopped before the end, so it gives no result."
        elif stop.kind is StopKind.INTERNAL_ERROR:
            # The technical reason is in the stored session and the log, not on the visitor's screen.
            view["why"] = "Something went wrong on this kiosk, so the session gives no result. Please tell the staff."
        elif stop.kind is StopKind.INTERRUPTED:
            view["why"] = "The kiosk was stopped during the session, so it gives no result."
        else:
            view["why"] = ("The camera or microphone stopped during the session, so it gives no result. "
                           "Please tell the staff.")
        view["next_steps"] = NEXT_STEPS
        return view
    view["vote"] = {"status": vote.status, "level": vote.level, "message": vote.message, "reason": vote.reason,
                    "provisional": vote.provisional, "caveat": vote.caveat, "pattern": vote.pattern}
    interval = phq8.interval or (None, None)
    view["phq8"] = {"status": phq8.status, "band": phq8.band, "reason": phq8.reason, "note": phq8.note,
                    "mu": phq8.mu, "sigma": phq8.sigma, "low": interval[0], "high": interval[1],
                    "mu_text": _points(phq8.mu), "low_text": _points(interval[0]), "high_text": _points(interval[1])}
    if vote.status != "ok" and phq8.status != "ok":
        view["abstained"] = True
        view["why"] = "Not enough usable signal for a reading: " + "; ".join(result.abstentions) + "."
    high = vote.level == "High" or (phq8.status == "ok" and phq8.band in ("moderately severe", "severe")
                                    and not result.demo_weights)
    view["next_steps"] = NEXT_STEPS_HIGH if high else NEXT_STEPS
    return view
