"""The nightly trend flag rule: has a measure moved beyond the person's baseline for long enough?

A baseline (edge.apps.nightly.trends builds it from the person's days) can judge once it
has MIN_BASELINE_DAYS days with data; until then nothing is flagged ("baseline forming").

A day lies beyond the baseline when its value is away from the baseline mean by more than
the measure's threshold:
- PHQ-8 estimate (PHQ8_MEASURE): above the mean by more than `flag_margin` points (the
  direction of concern only);
- each vocal measure: either way, by more than max(VOICE_Z x the baseline's day-to-day
  standard deviation, the measure's floor in FLOORS).
A flag is raised when the last `flag_days` days with data (days without data are skipped,
not counted) all lie beyond the baseline in the same direction, and the run reaches the
measure's last day with data. A flag describes a change in signals to review with the
person; it is never a diagnosis.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

MIN_BASELINE_DAYS = 3
VOICE_Z = 2.0
PHQ8_MEASURE = "phq8_mu"
# measure -> floor of the change that can flag (the PHQ-8 estimate uses flag_margin instead)
FLOORS: Dict[str, float] = {
    "phq8_mu": 0.0,
    "pause_ratio": 0.05,
    "speaking_rate": 0.3,
    "f0_mean_st": 1.0,
    "f0_var": 0.03,
    "loudness": 0.1,
    "jitter": 0.005,
    "shimmer_db": 0.3,
}

Run = List[Tuple[int, int]]  # (day index, direction) of each day in the open run, oldest first


def baseline_ready(days_used: int) -> bool:
    """Whether a baseline of `days_used` days with data may judge (and so flag)."""
    return days_used >= MIN_BASELINE_DAYS


def threshold(measure: str, mean: Optional[float], sd: Optional[float], flag_margin: float) -> Optional[float]:
    """The change from the baseline mean beyond which a day counts; None without a baseline mean."""
    if mean is None:
        return None
    if measure == PHQ8_MEASURE:
        return flag_margin
    return max(VOICE_Z * (sd or 0.0), FLOORS[measure])


def beyond(measure: str, value: Optional[float], mean: Optional[float], sd: Optional[float],
           flag_margin: float) -> int:
    """+1 / -1 when the value lies beyond the baseline upwards / downwards, else 0."""
    limit = threshold(measure, mean, sd, flag_margin)
    if value is None or limit is None:
        return 0
    delta = value - mean
    if delta > limit:
        return 1
    if delta < -limit and measure != PHQ8_MEASURE:
        return -1
    return 0


def extend_run(run: Run, index: int, direction: int) -> Run:
    """The open run after day `index` (a day with data) lay `direction` from the baseline:
    grown by a day in the same direction, restarted by the other direction, broken by 0."""
    if direction == 0:
        return []
    if run and run[-1][1] != direction:
        return [(index, direction)]
    run.append((index, direction))
    return run


def run_long_enough(run: Run, flag_days: int) -> bool:
    """Whether the run's days count as flagged (for plots): `flag_days` days or more."""
    return len(run) >= flag_days


def flag_raised(run: Run, flag_days: int, last_with_data: int) -> bool:
    """Whether the open run raises a flag now: long enough and reaching the measure's last
    day with data (index `last_with_data`)."""
    return bool(run) and run_long_enough(run, flag_days) and run[-1][0] == last_with_data
