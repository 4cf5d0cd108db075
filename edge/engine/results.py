"""What a session gives back: a Tick every 100 ms and a SessionResult at the end.

Both are small typed dataclasses; `to_dict()` gives the JSON form that `edge run --json`
prints, the summary file holds and the database row keeps. A screening aid, not a
diagnosis: every result carries that notice, and a model trained on synthetic data
says "demo weights".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge import SCREENING_DISCLAIMER
from edge.rules.phq8 import PHQ8Result
from edge.rules.vote import VoteResult


class StopKind(Enum):
    """Why a session ended, as a kind a program can branch on (`StopReason.kind`)."""

    SOURCES_ENDED = "sources ended"  # every source ran out (complete)
    DURATION_REACHED = "duration reached"  # the asked duration was captured (complete)
    STOPPED = "stopped"  # the application called SourceRun.stop() (its `tag` says why)
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM, the program closing
    STALLED = "sources stalled"  # no data from any file source for a while
    OUTPUT_FAILED = "outputs cannot be written"  # the run was ended before it started
    INTERNAL_ERROR = "internal error"


@dataclass(frozen=True)
class StopReason:
    """Why a session ended: `kind` to branch on, `text` for people (what the summary
    JSON, the database and the log say, e.g. "walked away: no face for 8 s"), and the
    application's own `tag` when it stopped the run itself (the kiosk: "walked_away")."""

    kind: StopKind
    text: str = ""
    tag: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.text:
            object.__setattr__(self, "text", self.kind.value)

    def __str__(self) -> str:
        return self.text

    @property
    def complete(self) -> bool:
        """True when the session ran to its end (sources ended or duration reached)."""
        return self.kind in (StopKind.SOURCES_ENDED, StopKind.DURATION_REACHED)

    @classmethod
    def internal_error(cls, exc: BaseException, where: str = "") -> StopReason:
        return cls(StopKind.INTERNAL_ERROR, f"internal error{where}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class SessionMedia:
    """What a session kept of its raw media, only when the profile asks for it
    (`output.store_media: true`): the face crops the model saw (64x64 uint8 grey) and
    the 16 kHz audio (int16 chunks). Never in a summary, a tick or a log."""

    face_crops: Tuple[np.ndarray, ...]
    audio_pcm16: Tuple[np.ndarray, ...]


def _rounded(value: Optional[float], digits: int = 3) -> Optional[float]:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class RunningEstimate:
    """The PHQ-8 estimate after a tick: provisional, only the session result gives a reading."""

    mu: float
    sigma: float
    band: str
    note: str = ""


@dataclass(frozen=True)
class Tick:
    """One closed 100 ms tick.

    index, t_s: its number and start in media time (s). frames: frames analysed in it;
    faces: of those, frames with a face. emotions: mean probabilities of its faces by
    label (None without a face). face_box: the last face (x, y, w, h as fractions of the
    frame). faces_in_view: the most faces one detection saw (the largest is followed).
    brightness: mean grey level 0..255 of its frames. voiced_ratio: share of its 10 ms
    audio frames with a pitch; level_dbfs: mean audio level. audio_gap: its audio was
    missing (a microphone outage). phq8: the running estimate (None without the
    model). features: the tick vector the LSTM-MoE got (edge.features.tick).
    """

    index: int
    t_s: float
    frames: int
    faces: int
    emotions: Optional[Dict[str, float]]
    face_box: Optional[Tuple[float, float, float, float]]
    faces_in_view: int
    brightness: Optional[float]
    voiced_ratio: float
    level_dbfs: float
    audio_gap: bool
    phq8: Optional[RunningEstimate]
    features: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> Dict:
        """The tick as a JSON-ready dict (one `edge run --json` line). The first tick
        carries the screening-aid notice; PHQ-8 figures are marked provisional."""
        record: Dict = {"tick": self.index, "t_s": round(self.t_s, 3), "frames": self.frames, "faces": self.faces}
        if self.index == 0:
            record["notice"] = SCREENING_DISCLAIMER
        if self.emotions is not None:
            record["emotions"] = {k: round(v, 4) for k, v in self.emotions.items()}
        if self.faces_in_view > 1:
            record["faces_in_view"] = self.faces_in_view
        if self.phq8 is not None:
            record["phq8_mu"] = round(self.phq8.mu, 2)
            record["phq8_sigma"] = round(self.phq8.sigma, 2)
            record["phq8_band"] = self.phq8.band
            record["provisional"] = True
            if self.phq8.note:
                record["note"] = self.phq8.note
        if self.audio_gap:
            record["audio_gap"] = True
        return record


@dataclass(frozen=True)
class DataQuality:
    """How much usable signal the session had."""

    face_share: float  # analysed frames with a face / frames the session's duration would give
    voiced_share: float  # voiced 10 ms audio frames / all audio frames
    frames_in: int
    frames_analysed: int
    frames_with_face: int
    frames_dropped: int
    audio_gap_s: float
    audio_overflow_samples: int
    gaps: Dict[str, List] = field(default_factory=dict)  # stream -> [[start_s, end_s, reason], ...]

    def to_dict(self) -> Dict:
        return {"face_share": round(self.face_share, 3), "voiced_share": round(self.voiced_share, 3),
                "frames_in": self.frames_in, "frames_analysed": self.frames_analysed,
                "frames_with_face": self.frames_with_face, "frames_dropped": self.frames_dropped,
                "audio_gap_s": round(self.audio_gap_s, 3), "audio_overflow_samples": self.audio_overflow_samples,
                "gaps": self.gaps}


@dataclass(frozen=True)
class ModelInfo:
    """Which model file ran, through which backend (what a result can be traced to)."""

    name: str
    file: Optional[str] = None
    sha256: Optional[str] = None
    precision: Optional[str] = None
    backend: Optional[str] = None
    note: Optional[str] = None
    chosen: Optional[str] = None  # why this file: "fp32 as configured", or what precision: auto measured
    release: Optional[str] = None  # the signed model release it came from (edge update), or "unsigned"
    framing: Optional[str] = None  # face detector: how its boxes meet the emotion model's framing
    crop: Optional[str] = None  # emotion model: the crop rule, e.g. "square_margin 0.1"
    averaging: Optional[str] = None  # emotion model: the views averaged into a reading, e.g. "mirror"

    def to_dict(self) -> Dict:
        return {k: v for k, v in (("name", self.name), ("file", self.file), ("sha256", self.sha256),
                                  ("precision", self.precision), ("backend", self.backend),
                                  ("note", self.note), ("chosen", self.chosen), ("release", self.release),
                                  ("framing", self.framing), ("crop", self.crop), ("averaging", self.averaging))
                if v is not None}


@dataclass
class SessionResult:
    """A whole session: both readings, data quality, abstentions, timings and model ids.

    complete: False when the session was cut short (stop_reason says why: a StopReason,
    written as its text); its readings are still those of the part that ran. outputs:
    where it was saved (summary_file, database, features_file), filled by the writer.
    media: the kept face crops and audio (None unless `output.store_media: true`).
    """

    session_id: str
    started_utc: str
    profile: str
    complete: bool
    stop_reason: StopReason
    duration_s: float
    sources: Dict[str, Optional[str]]
    models: Dict[str, ModelInfo]
    vote: VoteResult
    phq8: PHQ8Result
    quality: DataQuality
    abstentions: List[str]
    notes: List[str]
    warnings: List[str]
    timings: Dict
    demo_weights: bool
    notice: str = SCREENING_DISCLAIMER
    outputs: Dict[str, str] = field(default_factory=dict)
    media: Optional[SessionMedia] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> Dict:
        """The JSON summary (the layout `edge run` has always written, plus `quality`,
        `abstentions` and the PHQ-8 interval)."""
        out = {
            "session_id": self.session_id,
            "started_utc": self.started_utc,
            "profile": self.profile,
            "notice": self.notice,
            "complete": self.complete,
            "stop_reason": str(self.stop_reason),
            "duration_s": round(self.duration_s, 1),
            "sources": dict(self.sources),
            "models": {k: v.to_dict() for k, v in self.models.items()},
            "screening": {"notice": self.notice, "face_share": round(self.quality.face_share, 3),
                          "voiced_share": round(self.quality.voiced_share, 3),
                          "emotion_vote": self.vote.to_dict(), "phq8": self.phq8.to_dict()},
            "quality": self.quality.to_dict(),
            "abstentions": list(self.abstentions),
            "demo_weights": self.demo_weights,
            "gaps": self.quality.gaps,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "telemetry": self.timings,
        }
        out.update(self.outputs)
        return out


def abstentions_of(vote: VoteResult, phq8: PHQ8Result) -> List[str]:
    """One line per reading that abstained, naming the reading and its reason."""
    found = []
    for name, reading in (("emotion vote", vote), ("PHQ-8 estimate", phq8)):
        if reading.status != "ok":
            found.append(f"{name}: {reading.reason}")
    return found


def emotions_by_label(probs: Optional[np.ndarray], labels: Sequence[str]) -> Optional[Dict[str, float]]:
    if probs is None:
        return None
    return {label: float(p) for label, p in zip(labels, probs)}


def rounded_box(box: Optional[np.ndarray]) -> Optional[Tuple[float, float, float, float]]:
    if box is None:
        return None
    x, y, w, h = (_rounded(v, 4) for v in box)
    return (x, y, w, h)
