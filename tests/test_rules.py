"""The rules' own homes (edge.rules): the PHQ-8 interval and the trend flag decision.

The vote rule and the PHQ-8 bands are tested in tests/test_screen.py, the flags over whole
histories in tests/test_apps_nightly_trends.py.
"""
from __future__ import annotations

import pytest

from edge.rules import flags
from edge.rules.phq8 import INTERVAL_Z, PHQ8_MAX, phq8_interval


@pytest.mark.parametrize("mu, sigma, expected", [
    (10.0, 1.0, (10.0 - INTERVAL_Z, 10.0 + INTERVAL_Z)),
    (1.0, 2.0, (0.0, 1.0 + 2 * INTERVAL_Z)),  # clipped at 0
    (23.0, 2.0, (23.0 - 2 * INTERVAL_Z, PHQ8_MAX)),  # clipped at the top of the scale
    (5.0, 0.0, (5.0, 5.0)),
])
def test_the_phq8_interval_is_mu_plus_minus_z_sigma_clipped_to_the_scale(mu, sigma, expected):
    assert phq8_interval(mu, sigma) == pytest.approx(expected)


def test_the_phq8_estimate_flags_upwards_only_and_voice_both_ways():
    assert flags.beyond("phq8_mu", 13.1, 10.0, 5.0, 3.0) == 1
    assert flags.beyond("phq8_mu", 13.0, 10.0, 5.0, 3.0) == 0  # not beyond the margin
    assert flags.beyond("phq8_mu", 2.0, 10.0, 5.0, 3.0) == 0  # a fall is not a concern
    # voice: max(VOICE_Z x sd, floor); pause_ratio's floor is 0.05
    assert flags.threshold("pause_ratio", 0.3, 0.01, 3.0) == pytest.approx(0.05)
    assert flags.threshold("pause_ratio", 0.3, 0.1, 3.0) == pytest.approx(flags.VOICE_Z * 0.1)
    assert flags.beyond("pause_ratio", 0.2, 0.3, 0.01, 3.0) == -1
    assert flags.beyond("pause_ratio", None, 0.3, 0.01, 3.0) == 0
    assert flags.beyond("pause_ratio", 0.9, None, None, 3.0) == 0  # no baseline mean: nothing to judge


def test_a_flag_needs_flag_days_in_a_row_in_one_direction_up_to_the_last_day_with_data():
    run: flags.Run = []
    for day, direction in enumerate((1, 1, -1, -1, -1)):
        run = flags.extend_run(run, day, direction)
    assert run == [(2, -1), (3, -1), (4, -1)]
    assert flags.flag_raised(run, 3, last_with_data=4) and not flags.flag_raised(run, 4, last_with_data=4)
    assert not flags.flag_raised(run, 3, last_with_data=5)  # the run must reach the last day with data
    assert flags.extend_run(run, 5, 0) == []
    assert not flags.baseline_ready(flags.MIN_BASELINE_DAYS - 1) and flags.baseline_ready(flags.MIN_BASELINE_DAYS)
