"""The nightly report as a nurse reads it (edge/apps/nightly/report.py, issue 18): one measure
per panel in clinician units with the personal band and its own flag marks, days before
enrolment told apart from days without data, the PHQ-8 panel last and marked as demo weights
on the image, flags that state the latest value and the recent mean, a reading that is
missing says why, and no bare "+/-"."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from edge.apps.nightly.report import PANELS, build_figure, write_report
from edge.apps.nightly.trends import display_band, display_value, evaluate
from edge.rules.phq8 import INTERVAL_Z

START = date(2026, 9, 1)
NIGHT = (START + timedelta(days=13)).isoformat()


def _trend():
    rows = []
    for k in range(12):
        if k in (3, 4):
            continue  # two days without a recording
        drift = k >= 9
        rows.append({"day": (START + timedelta(days=k)).isoformat(), "recordings": 1, "audio_s": 60.0, "phq8_n": 1,
                     "phq8_mu": 5.0 + 0.2 * (k % 3) + (6 if drift else 0), "phq8_sigma": 1.4,
                     "pause_ratio": None if k == 11 else 0.10 + 0.004 * (k % 3),
                     "speaking_rate": 3.0 + 0.05 * (k % 3), "f0_mean_st": 33.0 + 0.1 * (k % 3) - (4 if drift else 0),
                     "f0_var": 0.1, "loudness": 0.8 + 0.01 * (k % 3), "jitter": 0.01, "shimmer_db": 1.2,
                     "snr_db": 14.0, "reasons": {"pause_ratio": "speech only 6 dB above the noise floor"}
                     if k == 11 else {}})
    trend = evaluate("p07", rows, "first_days", baseline_days=7, flag_margin=3.0, flag_days=3)
    trend.labels = [{"date": (START + timedelta(days=5)).isoformat(), "total": 6, "answers": [1] * 6 + [0, 0]}]
    return trend


def test_flags_state_the_latest_value_and_the_recent_mean_in_clinician_units():
    flags = {f.measure: f for f in _trend().flags}
    assert set(flags) == {"phq8_mu", "f0_mean_st"}
    pitch = flags["f0_mean_st"]
    assert pitch.latest_day == (START + timedelta(days=11)).isoformat()
    assert f"latest {display_value('f0_mean_st', pitch.latest):.0f} Hz ({pitch.latest_day})" in pitch.message
    assert "mean of the last 3 days" in pitch.message and " Hz at baseline" in pitch.message
    low, high = display_band("f0_mean_st", pitch.baseline, pitch.threshold)
    assert f"a day counts outside {low:.0f} to {high:.0f} Hz" in pitch.message
    assert "+/-" not in pitch.message and "semitone" not in pitch.message
    assert display_value("f0_mean_st", 33.0) == pytest.approx(27.5 * 2 ** (33 / 12))  # eGeMAPS: from 27.5 Hz
    assert display_value("pause_ratio", 0.25) == 25.0 and display_value("loudness", 0.8, 0.8) == 0.0


def test_one_measure_per_panel_phq8_last_with_demo_weights_on_the_image():
    pytest.importorskip("matplotlib")
    trend = _trend()
    fig = build_figure(trend, NIGHT, demo_weights=True)
    axes = fig.axes
    assert len(axes) == 2 * len(PANELS) and PANELS[-1] == "phq8_mu"  # no twin axes
    titles = [ax.get_title(loc="left") for ax in axes[::2]]
    assert titles == ["pause time (% of speaking time)", "speaking rate (voiced segments/s)",
                      "pitch (F0) mean (Hz)", "loudness (dB re personal baseline)",
                      "PHQ-8 estimate from the voice model (points, 0-24)"]
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert texts.count("DEMO WEIGHTS: NOT FOR SCREENING") == 2  # on both PHQ-8 panels themselves
    assert "demo weights, not for screening" in fig._suptitle.get_text()
    legend = {t.get_text() for t in axes[4].get_legend().get_texts()}  # the pitch panel
    assert {"personal band", "baseline mean", "flagged (this measure)"} <= legend
    assert "flagged (this measure)" not in {t.get_text() for t in axes[2].get_legend().get_texts()}  # speaking rate
    assert "no reading (why: see the page)" in {t.get_text() for t in axes[0].get_legend().get_texts()}
    assert "PHQ-8 questionnaire (answered)" in {t.get_text() for t in axes[8].get_legend().get_texts()}
    # Before enrolment (light blue) and days without a recording (grey) are shaded differently.
    colours = {tuple(round(c, 2) for c in p.get_facecolor()[:3]) for p in axes[1].patches}
    assert len(colours) >= 2
    fig.clear()
    fig = build_figure(trend, NIGHT, demo_weights=False)
    assert "DEMO WEIGHTS: NOT FOR SCREENING" not in [t.get_text() for ax in fig.axes for t in ax.texts]
    fig.clear()


def test_the_page_says_why_a_reading_is_missing_and_writes_out_the_interval(tmp_path):
    paths = write_report(_trend(), NIGHT, tmp_path / "p07", demo_weights=True, plot=False)
    page = open(paths["html"]).read()
    assert "pause time: no reading, because speech only 6 dB above the noise floor" in page
    assert "speech 14 dB above the room's noise floor (SNR)" in page
    assert f"the estimate plus or minus {INTERVAL_Z} sigma" in page and "&plusmn;" not in page and "+/-" not in page
    assert "PHQ-8 questionnaire answered by the person: 6 points" in page
    assert page.index("<h2>Flags</h2>") < page.index("Latest day with data")
