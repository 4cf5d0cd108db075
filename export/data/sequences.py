"""A labelled feature sequence (one session or interview) and the bands of PHQ-8."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from edge.rules.phq8 import phq8_band_index

# Upper bounds (inclusive) of the PHQ-8 severity bands; the last band ends at 24.


@dataclass
class LabelledSequence:
    """features [T, D] float32 (one row per step), context flag z, PHQ-8 score (0-24)."""

    key: str
    features: np.ndarray
    context: float
    score: float


def band_of(score: float) -> int:
    """Band index of a PHQ-8 score, by the device's own rule (edge.rules.phq8)."""
    return phq8_band_index(score)


def split(sequences: Sequence[LabelledSequence], fractions: Tuple[float, float], seed: int = 0
          ) -> Tuple[List[LabelledSequence], List[LabelledSequence], List[LabelledSequence]]:
    """Shuffle (seeded) and cut into train / validation / test by `fractions` (val, test)."""
    order = np.random.default_rng(seed).permutation(len(sequences))
    n_val = int(round(fractions[0] * len(sequences)))
    n_test = int(round(fractions[1] * len(sequences)))
    picked = [sequences[i] for i in order]
    return picked[n_val + n_test:], picked[:n_val], picked[n_val:n_val + n_test]


def feature_stats(sequences: Sequence[LabelledSequence]) -> Tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every step of `sequences` (for the model's z-scoring)."""
    stacked = np.concatenate([s.features for s in sequences], axis=0).astype(np.float64)
    return stacked.mean(axis=0).astype(np.float32), stacked.std(axis=0).astype(np.float32)
