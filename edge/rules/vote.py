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

from typing import Dict, Optional, Sequence

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
POSITIVE = ("happy", "neutral")
NEGATIVE = ("sad", "disgust")


def part_vote(probs: np.ndarray, labels: Sequence[str] = EMOTIONS) -> Dict:
    """'P' or 'N' for one part [n, 7] of frames, with the two summed scores."""
    index = {name: i for i, name in enumerate(labels)}
    positive = float(sum(probs[:, index[n]].sum() for n in POSITIVE))
    negative = float(sum(probs[:, index[n]].sum() for n in NEGATIVE))
    return {"vote": "P" if positive > negative else "N",
            "happy_neutral": round(positive, 3), "sad_disgust": round(negative, 3), "frames": int(len(probs))}


def vote_rule(face_probs: np.ndarray, labels: Sequence[str] = EMOTIONS, vote_frames: int = 1200,
              min_frames: int = 30, abstain_reason: Optional[str] = None) -> Dict:
    """The session's vote-rule reading from face frames' probabilities [n, 7] in order.

    Returns {"status": "ok", "pattern", "level", "message", "parts", "frames_used",
    "scaled"} or {"status": "abstained", "reason"}.
    """
    probs = np.asarray(face_probs, np.float32).reshape(-1, len(labels))
    if abstain_reason:
        return {"status": "abstained", "reason": abstain_reason}
    used = min(len(probs), int(vote_frames))
    if used < max(3, int(min_frames)):
        return {"status": "abstained",
                "reason": f"too little face: {len(probs)} analysed frames with a face, "
                          f"the vote needs at least {max(3, int(min_frames))}"}
    part = used // 3
    parts = [part_vote(probs[i * part:(i + 1) * part], labels) for i in range(3)]
    pattern = "".join(p["vote"] for p in parts)
    level = PATTERN_LEVELS[pattern]
    result = {"status": "ok", "pattern": pattern, "level": level, "message": MESSAGES[level],
            "parts": parts, "frames_used": 3 * part, "frames_wanted": int(vote_frames),
            "scaled": used < vote_frames, "provisional": used < vote_frames,
            "rule": "first face frames in three parts; a part is P when summed happy+neutral "
                    "probability exceeds sad+disgust (ties N)"}
    if used < vote_frames:
        result["caveat"] = (f"provisional: {3 * part} of the {int(vote_frames)} face frames the rule "
                            "asks for; a longer session gives the full reading")
    return result
