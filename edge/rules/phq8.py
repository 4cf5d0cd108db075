"""The PHQ-8 scale: its range, its five bands and the interval a result shows.

The LSTM-MoE's estimate is a continuous score on 0..PHQ8_MAX; a band starts at its
cut-off (5, 10, 15, 20), so 4.9 is still "none" and 5.0 is "mild". The interval is
mu +/- INTERVAL_Z * sigma, clipped to the scale.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

PHQ8_MAX = 24.0
# The PHQ-8 bands on integer scores: upper bounds (inclusive) and names.
BAND_UPPER = (4, 9, 14, 19, 24)
BAND_NAMES = ("none", "mild", "moderate", "moderately severe", "severe")
# The model's estimate is continuous: a band starts at its cut-off (5, 10, 15, 20), so 4.9
# is still "none" and 5.0 is "mild". On integer scores this is exactly BAND_UPPER.
BAND_CUTOFFS = tuple(upper + 1 for upper in BAND_UPPER[:-1])
# The PHQ-8 interval a result shows: mu +/- Z * sigma (a 95 % interval if the model's
# Gaussian uncertainty is calibrated), clipped to the scale.
INTERVAL_Z = 1.96


def phq8_band_index(score: float) -> int:
    """Index into BAND_NAMES of a PHQ-8 score (see `phq8_band`)."""
    return BAND_NAMES.index(phq8_band(score))


def phq8_band(score: float) -> str:
    """Band name of a PHQ-8 score (continuous, clipped to 0..24, never rounded):
    < 5 none, < 10 mild, < 15 moderate, < 20 moderately severe, else severe."""
    if not np.isfinite(score):
        raise ValueError("a PHQ-8 score must be finite")
    value = min(max(float(score), 0.0), PHQ8_MAX)
    for cutoff, name in zip(BAND_CUTOFFS, BAND_NAMES):
        if value < cutoff:
            return name
    return BAND_NAMES[-1]


def phq8_interval(mu: float, sigma: float) -> Tuple[float, float]:
    """(low, high): mu -/+ INTERVAL_Z * sigma, clipped to 0..PHQ8_MAX (not rounded)."""
    return max(0.0, mu - INTERVAL_Z * sigma), min(PHQ8_MAX, mu + INTERVAL_Z * sigma)
