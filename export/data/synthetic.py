"""Synthetic sessions with a known relation between features and PHQ-8 score.

Not data about people: it exists to show that training learns and to give the shipped
demo weights something to learn. The relation, with d = score / 24 and z the context
flag (1 = autonomous agent, 0 = human interviewer):

Score: round(24 * Beta(1.3, 3.0)), so low scores are common and severe ones rare, as
in E-DAIC.

`edge` config (edge.features.tick), per 100 ms tick:
- emotion logits (then softmax): happy 1.2 - 2.4 d + 0.6 (1 - z), sad -0.8 + 2.4 d,
  neutral 1.0, angry 0, disgust -1, fear -1, surprise -0.5; each plus a per-session
  offset N(0, 0.3) and per-tick noise N(0, 1). Faces are found in 3 frames a tick
  with probability 0.9 each; no face zeroes the visual part as on the device.
- face_motion: 0.03 (1 - 0.6 d) x LogNormal(0, 0.5) per tick (slower movement).
- speech: a tick is speech with probability 0.6 - 0.3 d. Speech ticks: energy
  -25 - 8 d + N(0, 3) dBFS, pitch std 0.15 (1 - 0.6 d) x LogNormal(0, 0.3) octaves
  (flatter prosody), pause ratio Uniform(0, 0.3); silent ticks: -60 + N(0, 3) dBFS, no
  pitch, pause ratio 1. MFCCs are noise around plausible values (c0 follows energy).

`paper` config (17 AU intensities then 23 eGeMAPS descriptors), per step: AU12 (smile)
1.5 - 1.2 d, AU15 (lip corner depressor) 0.3 + 1.0 d, AU04 (brow lowerer)
0.5 + 0.8 d, eGeMAPS loudness 0.8 - 0.4 d, each with per-step noise N(0, 0.7); every
other column N(0, 1).

A single tick says little (the noise is larger than the effect); a session does.
"""
from __future__ import annotations

from typing import List

import numpy as np

from edge.features import tick
from export.data.sequences import LabelledSequence

PAPER_AUS = ("AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU09_r", "AU10_r", "AU12_r",
             "AU14_r", "AU15_r", "AU17_r", "AU20_r", "AU23_r", "AU25_r", "AU26_r", "AU45_r")
_EMOTION_BASE = np.array([0.0, -1.0, -1.0, 1.2, -0.8, -0.5, 1.0], np.float32)
_FRAMES_PER_TICK = 3


def draw_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    """PHQ-8 scores skewed to the low end like E-DAIC (integers 0..24, as float)."""
    return np.clip(np.round(24.0 * rng.beta(1.3, 3.0, size=n)), 0, 24).astype(np.float32)


def _edge_session(score: float, z: float, steps: int, rng: np.random.Generator) -> np.ndarray:
    d = score / 24.0
    out = np.zeros((steps, tick.TICK_FEATURE_COUNT), np.float32)
    v = tick.VISUAL_SIZE
    offset = rng.normal(0.0, 0.3, size=7)
    base = _EMOTION_BASE.copy()
    base[3] += -2.4 * d + 0.6 * (1.0 - z)
    base[4] += 2.4 * d
    faces = rng.binomial(_FRAMES_PER_TICK, 0.9, size=steps)
    logits = base + offset + rng.normal(0.0, 1.0, size=(steps, 7))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    seen = faces > 0
    out[seen, :7] = probs[seen]
    out[:, 7] = faces / float(_FRAMES_PER_TICK)
    out[seen, 8] = 0.3 + rng.normal(0.0, 0.02, size=seen.sum())
    out[seen, 9] = 0.03 * (1.0 - 0.6 * d) * rng.lognormal(0.0, 0.5, size=seen.sum())
    p = np.clip(probs, 1e-12, 1.0)
    out[seen, 10] = (-(p * np.log(p)).sum(axis=1) / np.log(7.0))[seen]

    speech = rng.random(steps) < (0.6 - 0.3 * d)
    n = 13
    energy = np.where(speech, -25.0 - 8.0 * d, -60.0) + rng.normal(0.0, 3.0, size=steps)
    audio = out[:, v:]
    audio[:, 0] = 2.0 * energy + rng.normal(0.0, 5.0, size=steps)
    audio[:, 1:n] = rng.normal(0.0, 5.0, size=(steps, n - 1))
    audio[:, n:2 * n] = np.abs(rng.normal(3.0, 1.0, size=(steps, n)))
    audio[:, 2 * n] = energy
    audio[:, 2 * n + 1] = np.abs(rng.normal(4.0, 1.5, size=steps))
    audio[:, 2 * n + 2] = np.where(speech, rng.uniform(0.5, 1.0, size=steps), 0.0)
    audio[:, 2 * n + 3] = np.where(speech, rng.normal(0.3, 0.1, size=steps), 0.0)
    audio[:, 2 * n + 4] = np.where(speech, 0.15 * (1.0 - 0.6 * d) * rng.lognormal(0.0, 0.3, size=steps), 0.0)
    audio[:, 2 * n + 5] = np.where(speech, rng.uniform(0.0, 0.3, size=steps), 1.0)
    return out


def _paper_session(score: float, feature_size: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    d = score / 24.0
    out = rng.normal(0.0, 1.0, size=(steps, feature_size)).astype(np.float32)
    noise = rng.normal(0.0, 0.7, size=(steps, 4))
    out[:, PAPER_AUS.index("AU12_r")] = 1.5 - 1.2 * d + noise[:, 0]
    out[:, PAPER_AUS.index("AU15_r")] = 0.3 + 1.0 * d + noise[:, 1]
    out[:, PAPER_AUS.index("AU04_r")] = 0.5 + 0.8 * d + noise[:, 2]
    out[:, len(PAPER_AUS)] = 0.8 - 0.4 * d + noise[:, 3]  # eGeMAPS loudness comes first
    return out


def synthetic_sessions(n: int, steps: int = 100, config_name: str = "edge", feature_size: int = 0,
                       seed: int = 0) -> List[LabelledSequence]:
    """`n` synthetic sessions of `steps` steps each for the `edge` or `paper` config.

    feature_size: width of a `paper` step (17 AUs + audio columns); ignored for `edge`.
    """
    rng = np.random.default_rng(seed)
    scores = draw_scores(n, rng)
    contexts = rng.integers(0, 2, size=n).astype(np.float32)
    sessions = []
    for i in range(n):
        if config_name == "edge":
            features = _edge_session(float(scores[i]), float(contexts[i]), steps, rng)
        else:
            features = _paper_session(float(scores[i]), feature_size, steps, rng)
        sessions.append(LabelledSequence(f"synthetic-{seed}-{i}", features, float(contexts[i]),
                                         float(scores[i])))
    return sessions
