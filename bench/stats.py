"""Latency statistics: the summary of one row's samples and the noise between rounds."""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)
# 101 points (every percentile) keep the shape of a distribution in a JSON file.
QUANTILE_POINTS = 101


def summarize(samples_ms: Sequence[float]) -> Dict[str, float]:
    """{n, min, mean, p50, p90, p95, p99, max, std} of latencies in ms.

    Percentiles interpolate linearly between order statistics (numpy's default);
    std is the sample standard deviation (ddof=1; 0 for a single sample).
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    points = np.percentile(values, PERCENTILES)
    out = {"n": int(values.size), "min": float(values.min()), "mean": float(values.mean())}
    for q, value in zip(PERCENTILES, points):
        out[f"p{q}"] = float(value)
    out["max"] = float(values.max())
    out["std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return out


def quantiles(samples_ms: Sequence[float], points: int = QUANTILE_POINTS) -> list:
    """`points` evenly spaced quantiles (0 .. 100 %) of the samples, in ms."""
    values = np.asarray(samples_ms, dtype=np.float64)
    return [float(v) for v in np.percentile(values, np.linspace(0.0, 100.0, points))]


def round_noise_pct(round_medians_ms: Sequence[float]) -> Optional[float]:
    """How much the rounds of one row disagree: the coefficient of variation of their
    medians, in percent (None with fewer than two rounds)."""
    values = np.asarray(round_medians_ms, dtype=np.float64)
    if values.size < 2:
        return None
    centre = float(np.median(values))
    if centre <= 0:
        return None
    return float(100.0 * values.std(ddof=1) / centre)


def ratio_with_noise(a_ms: float, b_ms: float, noise_a_pct: Optional[float],
                     noise_b_pct: Optional[float]) -> Dict[str, Optional[float]]:
    """b / a, and the noise of that ratio in percent (the round noises of both added in
    quadrature; None if either is unknown). A ratio whose distance from 1 is more than
    twice the noise is called real (about 95 % if round medians are near normal)."""
    ratio = b_ms / a_ms if a_ms > 0 else float("inf")
    if noise_a_pct is None or noise_b_pct is None:
        return {"ratio": ratio, "noise_pct": None, "verdict": "noise unknown (1 round)"}
    noise = math.hypot(noise_a_pct, noise_b_pct)
    change_pct = 100.0 * abs(math.log(ratio)) if 0 < ratio < float("inf") else float("inf")
    if change_pct <= 2.0 * noise:
        verdict = "within noise"
    else:
        verdict = "slower" if ratio > 1 else "faster"
    return {"ratio": ratio, "noise_pct": noise, "verdict": verdict}
