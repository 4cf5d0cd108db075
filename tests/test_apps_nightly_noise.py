"""`edge nightly` over a fortnight recorded in noisy rooms: the pause ratio is measured against
each recording's noise floor, so a person whose pauses grow is flagged in the right direction
and a steady person is never flagged (issue 18).

Speech: espeak-ng sentences joined by short pauses (steady) or long ones (the drift), with a
noise floor added every night: white, pink, mains hum or babble of other voices, at
-57..-53 dBFS (tests/voice_support.py). Before issue 18 the pause threshold ignored the floor:
under -55 dBFS the pause ratio read 0.000 and the growing pauses were flagged "below the
personal baseline".
"""
from __future__ import annotations

import numpy as np
import pytest
import voice_support
from nightly_support import drop, month, need, nightly, speak, write_profile

SENTENCES = ("I slept quite badly last night and did not feel like going out.",
             "I talked to my sister on the phone for a while.",
             "Then I watched some television and went to bed early.")
STEADY_PAUSE_S, DRIFT_PAUSE_S = 0.35, 1.6
DAYS, DRIFT_FROM = 13, 9  # baseline from the first 8 days; p01's pauses grow on the last 4


def _joined(folder, voice, pause_s):
    parts = []
    for k, text in enumerate(SENTENCES):
        x = voice_support.read_wav(speak(folder / f"{voice[0]}-{k}.wav", voice, text))
        loud = np.nonzero(np.abs(x) > 1e-3)[0]
        parts += [x[loud[0]:loud[-1] + 1], np.zeros(int(pause_s * 16000), np.float32)]
    return np.concatenate(parts[:-1])


def _write(path, samples):
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def noisy_fortnight(tmp_path_factory):
    need("espeak-ng", "sox")
    tmp = tmp_path_factory.mktemp("noisy")
    speech = {"steady": _joined(tmp, ("en-us", 140, 40), STEADY_PAUSE_S),
              "drift": _joined(tmp, ("en-us", 140, 40), DRIFT_PAUSE_S),
              "p02": _joined(tmp, ("en-gb", 150, 55), STEADY_PAUSE_S)}
    profile = write_profile(tmp, baseline_days=DRIFT_FROM - 1, flag_days=3)
    kinds = voice_support.NOISES
    for k, day in enumerate(month(DAYS)):
        kind = list(kinds)[k % len(kinds)]
        level = -55.0 + 2.0 * ((k % 3) - 1)
        for person, clean in (("p01", speech["drift" if k >= DRIFT_FROM else "steady"]), ("p02", speech["p02"])):
            noisy = voice_support.with_noise(clean, kind, level, seed=k)
            drop(tmp / "inbox", person, day, _write(tmp / f"{person}-{k}.wav", noisy))
    assert nightly(profile) == 0
    from edge.apps.nightly.db import NightlyStore
    from edge.apps.nightly.trends import evaluate

    store = NightlyStore(str(tmp / "db" / "trends.sqlite"))
    out = {person: (store.days(person), evaluate(person, store.days(person), "first_days", DRIFT_FROM - 1, 3.0, 3))
           for person in ("p01", "p02")}
    store.db.close()
    return out


def test_growing_pauses_under_a_noise_floor_are_flagged_up(noisy_fortnight):
    days, trend = noisy_fortnight["p01"]
    ratios = [d["pause_ratio"] for d in days]
    assert all(r is not None for r in ratios), ratios  # -55 dBFS is well under this voice: always a reading
    assert max(ratios[:DRIFT_FROM]) < 0.2 < min(ratios[DRIFT_FROM:]), ratios
    flags = {f.measure: f for f in trend.flags}
    assert "pause_ratio" in flags and flags["pause_ratio"].direction == "up", trend.flags
    assert all(f.direction == "up" for f in trend.flags if f.measure == "pause_ratio")


def test_a_steady_voice_in_changing_noise_is_never_flagged(noisy_fortnight):
    days, trend = noisy_fortnight["p02"]
    assert len(days) == DAYS and all(d["pause_ratio"] is not None for d in days)
    assert trend.flags == [], [(f.measure, f.direction, f.recent, f.baseline) for f in trend.flags]
    assert not any(trend.flagged_days.get(m) for m in ("pause_ratio", "speaking_rate")), trend.flagged_days
