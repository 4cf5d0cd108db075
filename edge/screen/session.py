"""A session's screening result: the vote rule and the PHQ-8 reading, each with its caveats."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from edge import DEMO_WEIGHTS_NOTICE, SCREENING_DISCLAIMER
from edge.features.tick import EMOTIONS
from edge.models.severity import SeverityEstimate
from edge.rules.phq8 import PHQ8Result
from edge.rules.vote import VoteResult, vote_rule

AUDIO_ONLY = "audio only: visual inputs zero"


@dataclass(frozen=True)
class Screening:
    """Both readings of a session, with the signal they had."""

    vote: VoteResult
    phq8: PHQ8Result
    face_share: float  # analysed frames with a face / frames the session's duration would give
    voiced_share: float  # voiced 10 ms audio frames / all audio frames
    notice: str = SCREENING_DISCLAIMER


def _face_reason(face_share: float, min_face_share: float, frames_analysed: int) -> Optional[str]:
    if frames_analysed == 0:
        return "no video: no frames were analysed"
    if face_share < min_face_share:
        return (f"too little face: a face in {face_share:.0%} of the session's analysis frames "
                f"(at least {min_face_share:.0%} needed)")
    return None


def screen_session(face_probs: np.ndarray, frames_analysed: int, ticks: int, voiced_share: float,
                   severity: Optional[SeverityEstimate], screen, has_audio: bool = True,
                   demo_weights: bool = True, labels=EMOTIONS, expected_frames: Optional[int] = None,
                   face_frames: Optional[int] = None, has_video: Optional[bool] = None) -> Screening:
    """Both readings of a session.

    face_probs: [n, 7] emotion probabilities of analysed frames with a face, in order;
    frames_analysed: analysed frames (with or without a face); ticks: 100 ms ticks;
    voiced_share: share of voiced 10 ms audio frames; severity: the estimate after the
    last tick (None without the model); screen: the config's `screen` section;
    expected_frames: the frames the whole session would have had analysed (duration x
    analysis rate). The face share is taken over these, so time without video (a
    video shorter than the audio, a camera away) counts as time without a face.
    face_frames: analysed frames with a face in the whole session, when `face_probs`
    holds only the first ones the vote reads (default: its length).
    has_video: False for a session without a camera (a gateway's recordings): the vote
    abstains (it reads faces), while the PHQ-8 estimate is given from the audio alone,
    the LSTM-MoE's visual inputs zero, and says so (`input`). None: a session that had
    video (the face checks apply to both readings).
    """
    probs = np.asarray(face_probs, np.float32).reshape(-1, len(labels))
    faces = len(probs) if face_frames is None else int(face_frames)
    frames_expected = max(int(frames_analysed), int(expected_frames or 0))
    face_share = faces / float(frames_expected) if frames_expected and frames_analysed else 0.0
    face_reason = _face_reason(face_share, screen.min_face_share, frames_analysed)
    vote = vote_rule(probs, labels, screen.vote_frames, screen.min_vote_frames, face_reason)

    reasons = []
    if severity is None:
        reasons.append("the severity model is disabled in the config")
    else:
        if ticks < screen.min_ticks:
            reasons.append(f"session too short: {ticks} ticks of 100 ms, at least {screen.min_ticks} needed")
        if face_reason and has_video is not False:
            reasons.append(face_reason)
        if not has_audio:
            reasons.append("no audio: the estimate needs voice")
        elif voiced_share < screen.min_voiced_share:
            reasons.append(f"too little voice: {voiced_share:.0%} of audio frames voiced "
                           f"(at least {screen.min_voiced_share:.0%} needed)")
    note = DEMO_WEIGHTS_NOTICE if severity is not None and demo_weights else None
    if reasons:
        phq8 = PHQ8Result.abstained("; ".join(reasons), note)
    else:
        phq8 = PHQ8Result.estimate(severity.mu, severity.sigma, severity.band, severity.steps, note,
                                   AUDIO_ONLY if has_video is False else None)
    return Screening(vote, phq8, round(face_share, 3), round(float(voiced_share), 3))
