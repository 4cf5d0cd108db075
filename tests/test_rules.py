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


# ------------------------------------------------------- PHQ-8 interval coverage (issue 18)
# Held-out nights of unchanged voices through the device's whole audio path (features, the
# shipped LSTM-MoE on the gateway profile; tests/voice_support.py): each night a voice says
# 2-6 sentences in another order, at another level, in another room. The stated interval
# must cover the reading of the same voice on any other night (pairs of nights), and the
# voice's mean over its other nights, at least 90 % of the time. Neither these voices nor
# these nights are the ones INTERVAL_Z was measured on (edge/rules/phq8.py).
NIGHTS = 8


def _coverage(nights):
    import numpy as np

    pairs, level = [], []
    for readings in nights.values():
        mus = np.array([r[0] for r in readings])
        for i, (_, _, low, high) in enumerate(readings):
            others = np.delete(mus, i)
            pairs += [bool(low <= m <= high) for m in others]
            level.append(bool(low <= others.mean() <= high))
    return float(np.mean(pairs)), float(np.mean(level)), len(pairs)


@pytest.fixture(scope="module")
def held_out_nights(tmp_path_factory):
    import voice_support

    return voice_support.unchanged_voice_nights(tmp_path_factory.mktemp("nights"), voice_support.HELD_OUT_VOICES,
                                                NIGHTS, seed=0)


def test_the_phq8_interval_covers_an_unchanged_voice_from_night_to_night(held_out_nights):
    import numpy as np

    for voice, readings in held_out_nights.items():
        assert len(readings) >= NIGHTS - 1, voice  # at most one night too short to read
    spreads = [np.std([r[0] for r in readings], ddof=1) for readings in held_out_nights.values()]
    sigma = np.mean([r[1] for readings in held_out_nights.values() for r in readings])
    pairs, level, n = _coverage(held_out_nights)
    print(f"\nnight-to-night SD per voice {np.round(spreads, 2).tolist()}, mean sigma {sigma:.2f}; coverage of "
          f"another night {pairs:.3f} ({n} pairs), of the voice's level {level:.3f} (INTERVAL_Z {INTERVAL_Z})")
    assert pairs >= 0.90 and level >= 0.90


@pytest.mark.slow  # 288 nights through the model (~60 s): the measurement behind INTERVAL_Z
def test_interval_z_is_what_the_calibration_voices_need(tmp_path):
    import numpy as np
    import voice_support

    z_pairs, z_level = [], []
    for seed in (1000, 2000):
        folder = tmp_path / str(seed)
        folder.mkdir()
        nights = voice_support.unchanged_voice_nights(folder, voice_support.CALIBRATION_VOICES, 12, seed=seed)
        for readings in nights.values():
            mus = np.array([r[0] for r in readings])
            z_pairs += [abs(mus[j] - mus[i]) / readings[i][1] for i in range(len(mus)) for j in range(len(mus))
                        if i != j]
            z_level += [abs(np.delete(mus, i).mean() - mus[i]) / readings[i][1] for i in range(len(mus))]
    needed = float(np.quantile(z_pairs, 0.95))
    print(f"\n{len(z_level)} nights; at Z 1.96 another night covered {np.mean(np.array(z_pairs) <= 1.96):.3f}, "
          f"the voice's mean {np.mean(np.array(z_level) <= 1.96):.3f}; Z for 95 % of another night's readings: "
          f"{needed:.3f} (INTERVAL_Z {INTERVAL_Z})")
    assert needed <= INTERVAL_Z < needed + 0.3  # two runs gave 2.55 and 2.65 (a night near abstaining)
