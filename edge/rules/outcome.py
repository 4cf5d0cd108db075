"""The outcome rule: one coherent, safe outcome of a visit from its readings, one home.

Readings on a common scale of concern, 0..3:
    the PHQ-8 questionnaire's band   none 0, mild 1, moderate 2, moderately severe / severe 3
    the PHQ-8 estimate's band        the same (the model's estimate of the same scale)
    the expression vote's level      No 0, Low 1, Mild 2, High 3

Decisions (tested over every combination in tests/test_rules_outcome.py):
- The questionnaire leads when it was completed: it is the validated instrument. Without it
  the sensor readings lead; with no reading at all the outcome has no lead ("none").
- A reading counts toward the advice when it was taken: an abstained reading does not; a
  provisional vote does (counted, with its caveat: erring toward follow-up); an estimate from
  demo weights never does (it means nothing on a real visitor) and is shown only when the
  profile asks for it (demonstrations), always marked.
- The advice follows the most cautious counted reading: concern 3 -> "talk_soon", 2 ->
  "talk_to_professional", else "general" (still "talk to someone if this goes on": there is
  no all-clear advice code at all).
- The readings disagree when the counted concerns span 2 or more (e.g. a score under 5
  beside a "High" vote); then the outcome says so and the advice is at least
  "talk_to_professional".
The words are the application's (the kiosk's catalogue); the paper's own vote message stays
in the stored vote reading, for research, and is never part of an outcome.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from edge.rules.phq8 import QuestionnaireResult

CONCERN_OF_BAND = {"none": 0, "mild": 1, "moderate": 2, "moderately severe": 3, "severe": 3}
CONCERN_OF_VOTE = {"No": 0, "Low": 1, "Mild": 2, "High": 3}
ADVICE = ("general", "talk_to_professional", "talk_soon")  # in order of caution
DISAGREE_SPAN = 2
SIGNALS = ("questionnaire", "expression", "estimate")


@dataclass(frozen=True)
class Signal:
    """One reading as the outcome uses it. name: one of SIGNALS. taken: there is a
    reading (not abstained, not absent). shown: the visitor sees it. counted: it counts
    toward the advice. concern: 0..3 (None when not taken). caveats: codes among
    "provisional", "demo_weights", "abstained", "not_asked"."""

    name: str
    taken: bool
    shown: bool
    counted: bool
    concern: Optional[int] = None
    caveats: Tuple[str, ...] = ()

    def to_dict(self) -> Dict:
        return {"name": self.name, "taken": self.taken, "shown": self.shown, "counted": self.counted,
                "concern": self.concern, "caveats": list(self.caveats)}


@dataclass(frozen=True)
class Outcome:
    """lead: "questionnaire" | "sensors" | "none"; advice: one of ADVICE; disagree: the
    counted readings disagree; concern: the highest counted concern (None: no reading)."""

    lead: str
    advice: str
    disagree: bool
    concern: Optional[int]
    signals: Tuple[Signal, ...] = field(default=())

    def signal(self, name: str) -> Signal:
        return next(s for s in self.signals if s.name == name)

    @property
    def shown(self) -> Tuple[str, ...]:
        """The names of the readings the visitor sees."""
        return tuple(s.name for s in self.signals if s.shown)

    def to_dict(self) -> Dict:
        return {"lead": self.lead, "advice": self.advice, "disagree": self.disagree, "concern": self.concern,
                "shown": list(self.shown), "signals": [s.to_dict() for s in self.signals]}


def decide_outcome(questionnaire: Optional[QuestionnaireResult], vote_level: Optional[str],
                   vote_provisional: bool, estimate_band: Optional[str], estimate_demo: bool,
                   show_estimate: bool = False, questionnaire_asked: bool = True) -> Outcome:
    """The visit's outcome (see the module docstring).

    questionnaire: the completed PHQ-8 (None: not asked or not completed). vote_level: the
    vote's level ("No".."High"; None: abstained or no vote). estimate_band: the PHQ-8
    estimate's band (None: abstained or no model). estimate_demo: the estimate comes from
    demo weights. show_estimate: the profile shows the estimate (demonstrations).
    """
    if vote_level is not None and vote_level not in CONCERN_OF_VOTE:
        raise ValueError(f"unknown vote level {vote_level!r}")
    if estimate_band is not None and estimate_band not in CONCERN_OF_BAND:
        raise ValueError(f"unknown PHQ-8 band {estimate_band!r}")
    if questionnaire is not None:
        q = Signal("questionnaire", True, True, True, CONCERN_OF_BAND[questionnaire.band])
    else:
        q = Signal("questionnaire", False, questionnaire_asked, False, None,
                   ("abstained",) if questionnaire_asked else ("not_asked",))
    if vote_level is not None:
        v = Signal("expression", True, True, True, CONCERN_OF_VOTE[vote_level],
                   ("provisional",) if vote_provisional else ())
    else:
        v = Signal("expression", False, True, False, None, ("abstained",))
    if estimate_band is not None:
        shown = show_estimate or not estimate_demo
        e = Signal("estimate", True, shown, not estimate_demo, CONCERN_OF_BAND[estimate_band],
                   ("demo_weights",) if estimate_demo else ())
    else:
        e = Signal("estimate", False, show_estimate or not estimate_demo, False, None,
                   ("abstained",) + (("demo_weights",) if estimate_demo else ()))
    signals = (q, v, e)
    counted = [s.concern for s in signals if s.counted]
    concern = max(counted) if counted else None
    disagree = bool(counted) and max(counted) - min(counted) >= DISAGREE_SPAN
    if concern is not None and concern >= 3:
        advice = "talk_soon"
    elif disagree or (concern is not None and concern >= 2):
        advice = "talk_to_professional"
    else:
        advice = "general"
    if q.taken:
        lead = "questionnaire"
    elif v.taken or (e.taken and e.counted):
        lead = "sensors"
    else:
        lead = "none"
    return Outcome(lead, advice, disagree, concern, signals)
