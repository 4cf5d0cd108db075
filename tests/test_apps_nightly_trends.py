"""Baselines and flags on recorded day rows (no audio), and the report without matplotlib."""
from __future__ import annotations

import sys
from datetime import date, timedelta

import pytest

from edge import BrokerSettings, parse_mqtt_url
from edge.apps.nightly.trends import days_without_data, evaluate
from edge.errors import EdgeError

START = date(2026, 9, 1)
VOICE = {"pause_ratio": 0.20, "speaking_rate": 3.0, "f0_mean_st": 22.0, "f0_var": 0.10, "loudness": 0.8,
         "jitter": 0.02, "shimmer_db": 1.5}


def _rows(phq8, skip=(), **voice_overrides):
    """Day rows from a list of PHQ-8 values (None: the day has a row but no estimate)."""
    rows = []
    for k, mu in enumerate(phq8):
        if k in skip:
            continue
        row = {"day": (START + timedelta(days=k)).isoformat(), "recordings": 1, "audio_s": 60.0,
               "phq8_n": int(mu is not None), "phq8_mu": mu, "phq8_sigma": None if mu is None else 1.5}
        for name, base in VOICE.items():
            series = voice_overrides.get(name)
            row[name] = series[k] if series is not None else base + 0.001 * (k % 3)
        rows.append(row)
    return rows


def test_a_rise_beyond_the_margin_for_flag_days_in_a_row_flags():
    rows = _rows([5, 6, 5, 4, 5, 6, 5, 9.5, 10, 9.8])
    trend = evaluate("p1", rows, "first_days", baseline_days=7, flag_margin=3.0, flag_days=3)
    assert [f.measure for f in trend.flags] == ["phq8_mu"]
    flag = trend.flags[0]
    assert flag.since == rows[7]["day"] and flag.days == 3
    assert flag.baseline == pytest.approx(36 / 7) and flag.recent == pytest.approx(29.3 / 3)
    assert flag.change == pytest.approx(29.3 / 3 - 36 / 7)
    assert "PHQ-8 estimate above the personal baseline for 3 days" in flag.message
    assert "not a diagnosis" in flag.message
    assert trend.flagged_days["phq8_mu"] == [r["day"] for r in rows[7:]]


def test_two_days_are_not_enough_and_a_fall_never_flags_phq8():
    assert evaluate("p1", _rows([5, 6, 5, 4, 5, 6, 5, 5, 10, 10]), "first_days", 7, 3.0, 3).flags == []
    assert evaluate("p1", _rows([9, 9, 9, 9, 9, 9, 9, 2, 2, 2, 2]), "first_days", 7, 3.0, 3).flags == []
    # Within the margin every day: nothing.
    assert evaluate("p1", _rows([5, 6, 5, 4, 5, 6, 5, 7.5, 7.9, 8.0]), "first_days", 7, 3.0, 3).flags == []


def test_days_without_data_are_skipped_not_counted_and_a_return_breaks_the_run():
    values = [5, 6, 5, 4, 5, 6, 5, 10, 10, 10, 10]
    gaps = _rows(values, skip=(8, 9))  # two days without data inside the rise
    trend = evaluate("p1", gaps, "first_days", 7, 3.0, 3)
    assert trend.flags == []  # 2 days with data in the run: not yet
    trend = evaluate("p1", _rows(values + [10], skip=(8,)), "first_days", 7, 3.0, 3)
    assert [f.days for f in trend.flags] == [4]
    back = evaluate("p1", _rows(values + [5]), "first_days", 7, 3.0, 3)
    assert back.flags == [] and back.flagged_days["phq8_mu"]  # the run is drawn, the flag is over
    abstained = evaluate("p1", _rows(values + [None]), "first_days", 7, 3.0, 3)  # no estimate that day
    assert [f.measure for f in abstained.flags] == ["phq8_mu"]


def test_vocal_measures_flag_both_ways_beyond_their_variability():
    pauses = [0.20, 0.22, 0.18, 0.21, 0.19, 0.20, 0.21, 0.35, 0.36, 0.34]
    pitch = [22.0, 22.3, 21.8, 22.1, 21.9, 22.0, 22.2, 19.0, 19.2, 19.1]
    trend = evaluate("p1", _rows([5] * 10, pause_ratio=pauses, f0_mean_st=pitch), "first_days", 7, 3.0, 3)
    flags = {f.measure: f for f in trend.flags}
    assert set(flags) == {"pause_ratio", "f0_mean_st"}
    assert flags["pause_ratio"].direction == "up" and flags["pause_ratio"].change == pytest.approx(0.15, abs=0.01)
    assert flags["f0_mean_st"].direction == "down" and " Hz " in flags["f0_mean_st"].message
    # Day-to-day noise of the same size as the baseline's: nothing.
    noisy = [0.20, 0.24, 0.16, 0.22, 0.18, 0.21, 0.19, 0.23, 0.17, 0.22]
    assert evaluate("p1", _rows([5] * 10, pause_ratio=noisy), "first_days", 7, 3.0, 3).flags == []


def test_rolling_baseline_follows_slow_change_but_catches_a_step():
    slow = [5 + 0.3 * k for k in range(30)]  # 9 points over a month, 0.3 a day
    assert evaluate("p1", _rows(slow), "rolling", 7, 3.0, 3).flags == []
    assert [f.measure for f in evaluate("p1", _rows(slow), "first_days", 7, 3.0, 3).flags] == ["phq8_mu"]
    step = [5] * 20 + [10] * 4
    trend = evaluate("p1", _rows(step), "rolling", 7, 3.0, 3)
    assert [f.measure for f in trend.flags] == ["phq8_mu"] and trend.flags[0].baseline == pytest.approx(5)


def test_no_baseline_no_flag_and_days_without_data():
    trend = evaluate("p1", _rows([5, 15]), "first_days", 14, 3.0, 1)
    assert trend.flags == [] and not trend.baseline.ready
    assert days_without_data(_rows([5, 5]), (START + timedelta(days=4)).isoformat()) == 3
    assert days_without_data([], "2026-11-30") == -1


def test_report_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    from edge.apps.nightly.report import write_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    trend = evaluate("p1", _rows([5, 6, 5, 4, 5, 6, 5, 9.5, 10, 9.8]), "first_days", 7, 3.0, 3)
    paths = write_report(trend, "2026-09-11", tmp_path / "p1", demo_weights=True)
    assert paths["png"] is None and "[report]" in paths["note"]
    page = (tmp_path / "p1" / "2026-09-11.html").read_text()
    assert "No plot: plots need matplotlib" in page and "PHQ-8 estimate above the personal baseline" in page
    assert not (tmp_path / "p1" / "2026-09-11.png").exists()


def test_mqtt_url_override():
    base = BrokerSettings("broker.example", 8883, tls=True, ca_file="/ca.pem", username="gw")
    plain = parse_mqtt_url("mqtt://127.0.0.1:1999", base)
    assert (plain.host, plain.port, plain.tls, plain.username) == ("127.0.0.1", 1999, False, "gw")
    secure = parse_mqtt_url("mqtts://10.0.0.2", base)
    assert (secure.port, secure.tls, secure.ca_file) == (8883, True, "/ca.pem")
    for bad in ("tcp://x:1", "mqtt://:1883", "mqtt://host:99999"):
        with pytest.raises(EdgeError):
            parse_mqtt_url(bad, base)
