"""The frame-vote rule of the facial-emotion paper (Phadikar & Mandal 2025).

The first `vote_frames` (1200) analysed frames that had a face are split into three
equal parts, in order. A part is positive (P) when happy + neutral dominate over
sad + disgust, negative (N) otherwise; angry, fear and surprise do not vote.

Decisions the paper leaves open (ours, tested in tests/test_screen.py):
- "Dominate" compares SUMMED PROBABILITIES over the part's frames (happy + neutral
  vs sad + disgust), not counts of top-1 labels: a frame that is 45 % sad and 40 %
  neutral is not thrown away as a whole vote, and the non-voting emotions cannot
  decide a part. A tie counts as N, erring toward follow-up.
- Frames without a face do not vote (the paper labels the face in each frame).
- Fewer than 1200 face frames: the rule is SCALED to the frames there are (three
  equal parts of n // 3 frames; the remainder at the end is unused) when n reaches
  `min_frames`; the result says `scaled: true` and `provisional: true`, with a
  `caveat` saying how many frames it used. Below
  `min_frames` it abstains with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from edge.features.tick import EMOTIONS

PATTERN_LEVELS = {"PPP": "No", "PPN": "Low", "PNP": "Mild", "NPP": "Mild",
                  "PNN": "High", "NPN": "High", "NNP": "High", "NNN": "High"}
MESSAGES = {
    "No": "You don't need to visit a doctor. Stay well.",
    "Low": "Come back review after seven (7) days.",
    "Mild": "Come back review after seven (7) days.",
    "High": "Contact a doctor or any Psychiatrist immediately.",
}
RULE_TEXT = ("first face frames in three parts; a part is P when summed happy+neutral "
             "probability exceeds sad+disgust (ties N)")
POSITIVE = ("happy", "neutral")
NEGATIVE = ("sad", "disgust")


@dataclass(frozen=True)
class VotePart:
    """One third of the vote: P or N, from the summed probabilities of its frames."""

    vote: str  # "P" | "N"
    happy_neutral: float
    sad_disgust: float
    frames: int

    def to_dict(self) -> Dict:
        return {"vote": self.vote, "happy_neutral": self.happy_neutral, "sad_disgust": self.sad_disgust,
                "frames": self.frames}


@dataclass(frozen=True)
class VoteResult:
    """The frame-vote rule's reading: a level with the paper's advice message (kept for
    research; what a visitor reads is the application's), or an abstention with its reason."""

    status: str  # "ok" | "abstained"
    level: Optional[str] = None  # No | Low | Mild | High
    pattern: Optional[str] = None  # e.g. "PPN"
    message: Optional[str] = None
    reason: Optional[str] = None
    provisional: bool = False  # scaled to fewer frames than the rule asks for
    frames_used: int = 0
    frames_wanted: int = 0
    parts: Tuple[VotePart, ...] = ()
    caveat: Optional[str] = None
    rule: Optional[str] = None

    @classmethod
    def abstained(cls, reason: str) -> VoteResult:
        return cls(status="abstained", reason=reason)

    @classmethod
    def from_dict(cls, data: Dict) -> VoteResult:
        """From `to_dict()`'s form (a stored summary)."""
        return cls(status=data["status"], level=data.get("level"), pattern=data.get("pattern"),
                   message=data.get("message"), reason=data.get("reason"),
                   provisional=bool(data.get("provisional", False)), frames_used=int(data.get("frames_used", 0)),
                   frames_wanted=int(data.get("frames_wanted", 0)),
                   parts=tuple(VotePart(**part) for part in data.get("parts", ())),
                   caveat=data.get("caveat"), rule=data.get("rule"))

    def to_dict(self) -> Dict:
        if self.status != "ok":
            return {"status": self.status, "reason": self.reason}
        out = {"status": "ok", "pattern": self.pattern, "level": self.level, "message": self.message,
               "parts": [part.to_dict() for part in self.parts], "frames_used": self.frames_used,
               "frames_wanted": self.frames_wanted, "scaled": self.provisional, "provisional": self.provisional,
               "rule": self.rule}
        if self.caveat:
            out["caveat"] = self.caveat
        return out


def part_vote(probs: np.ndarray, labels: Sequence[str] = EMOTIONS) -> VotePart:
    """'P' or 'N' for one part [n, 7] of frames, with the two summed scores."""
    index = {name: i for i, name in enumerate(labels)}
    positive = float(sum(probs[:, index[n]].sum() for n in POSITIVE))
    negative = float(sum(probs[:, index[n]].sum() for n in NEGATIVE))
    return VotePart("P" if positive > negative else "N", round(positive, 3), round(negative, 3), int(len(probs)))


def vote_rule(face_probs: np.ndarray, labels: Sequence[str] = EMOTIONS, vote_frames: int = 1200,
              min_frames: int = 30, abstain_reason: Optional[str] = None) -> VoteResult:
    """The session's vote-rule reading from face frames' probabilities [n, 7] in order."""
    probs = np.asarray(face_probs, np.float32).reshape(-1, len(labels))
    if abstain_reason:
        return VoteResult.abstained(abstain_reason)
    used = min(len(probs), int(vote_frames))
    if used < max(3, int(min_frames)):
        return VoteResult.abstained(f"too little face: {len(probs)} analysed frames with a face, "
                                    f"the vote needs at least {max(3, int(min_frames))}")
    part = used // 3
    parts = tuple(part_vote(probs[i * part:(i + 1) * part], labels) for i in range(3))
    pattern = "".join(p.vote for p in parts)
    level = PATTERN_LEVELS[pattern]
    caveat = None
    if used < vote_frames:
        caveat = (f"provisional: {3 * part} of the {int(vote_frames)} face frames the rule "
                  "asks for; a longer session gives the full reading")
    return VoteResult(status="ok", level=level, pattern=pattern, message=MESSAGES[level],
                      provisional=used < vote_frames, frames_used=3 * part, frames_wanted=int(vote_frames),
                      parts=parts, caveat=caveat, rule=RULE_TEXT)
