"""Real speech, noise of several kinds and Praat as an oracle, for the voice-measure tests.

Speech: two CMU Arctic utterances shipped in tests/data/cmu_arctic (licence there).
`arctic_session()` joins them as a person reading four sentences would: the room-tone
silences at the start and end of each clip become natural pauses between sentences.
Noise: white, pink (1/f power), mains hum (50 Hz and four harmonics) and babble (other
voices, espeak-ng, summed with random offsets), scaled to an RMS level in dBFS.
Praat (praat-parselmouth, x86-64 wheels only) is imported by `praat()`, which skips with the
reason when it is missing.
"""
from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest

ARCTIC = Path(__file__).resolve().parent / "data" / "cmu_arctic"
RATE_HZ = 16000
BABBLE_TEXT = ("The quick brown fox jumps over the lazy dog while people keep talking in the next room "
               "about the weather, the news and what they will cook tonight.")
BABBLE_VOICES = (("en-us", 150, 30), ("en-gb", 170, 60), ("en-us+f3", 140, 50), ("en-us+m3", 160, 40))


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE_HZ and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def arctic(name: str) -> np.ndarray:
    """`a0007` (male) or `a0009` (female)."""
    return read_wav(ARCTIC / f"arctic_{name}.wav")


def arctic_session() -> np.ndarray:
    """14.2 s: a0007, a0009, a0007, a0009 one after the other (pauses: their room tone)."""
    male, female = arctic("a0007"), arctic("a0009")
    return np.concatenate([male, female, male, female])


def _white(n: int, rng) -> np.ndarray:
    return rng.normal(0.0, 1.0, n)


def _pink(n: int, rng) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(f), n)


def _hum(n: int, rng) -> np.ndarray:
    t = np.arange(n) / RATE_HZ
    return sum(np.sin(2 * np.pi * 50.0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))


_BABBLE: List[np.ndarray] = []


def _babble(n: int, rng) -> np.ndarray:
    if not _BABBLE:
        for voice, wpm, pitch in BABBLE_VOICES:
            with tempfile.TemporaryDirectory() as folder:
                raw, out = Path(folder) / "raw.wav", Path(folder) / "out.wav"
                try:
                    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(raw),
                                    BABBLE_TEXT], check=True, capture_output=True)
                    subprocess.run(["sox", str(raw), "-r", str(RATE_HZ), "-c", "1", "-b", "16", str(out)], check=True,
                                   capture_output=True)
                except (OSError, subprocess.CalledProcessError):
                    pytest.skip("babble noise needs espeak-ng and sox (apt-get install espeak-ng sox)")
                _BABBLE.append(read_wav(out))
    out = np.zeros(n)
    for voice in _BABBLE:
        looped = np.tile(voice, n // voice.size + 2)
        start = int(rng.integers(0, voice.size))
        out += looped[start:start + n]
    return out


NOISES: Dict[str, Callable] = {"white": _white, "pink": _pink, "hum": _hum, "babble": _babble}


def noise(kind: str, n: int, dbfs: float, seed: int = 0) -> np.ndarray:
    """n samples of `kind` noise at an RMS level of `dbfs`."""
    z = NOISES[kind](n, np.random.default_rng(seed))
    return (z / np.sqrt(np.mean(z * z)) * 10.0 ** (dbfs / 20.0)).astype(np.float32)


def with_noise(x: np.ndarray, kind: str, dbfs: float, gain_db: float = 0.0, seed: int = 0) -> np.ndarray:
    """x scaled by gain_db plus `kind` noise at `dbfs` (a voice at another level, in a noisy room)."""
    return (x * 10.0 ** (gain_db / 20.0) + noise(kind, x.size, dbfs, seed)).astype(np.float32)


def praat():
    return pytest.importorskip("parselmouth", reason="Praat (pip install praat-parselmouth; x86-64 wheels only) "
                                                    "is the second oracle for the voice measures")


def praat_pause_ratio(x: np.ndarray, threshold_db: float = -30.0, min_silence_s: float = 0.25) -> Optional[float]:
    """Praat's silence-based pause ratio: silent intervals (`To TextGrid (silences)`: 100 Hz,
    `threshold_db` under the maximum intensity, >= `min_silence_s`, sounding >= 50 ms) between
    the first and the last sounding interval, over that span. None when nothing sounds."""
    call = praat().praat.call
    sound = praat().Sound(x.astype(np.float64), RATE_HZ)
    grid = call(sound, "To TextGrid (silences)", 100, 0.0, threshold_db, min_silence_s, 0.05, "silent", "sounding")
    intervals = []
    for i in range(1, call(grid, "Get number of intervals", 1) + 1):
        intervals.append((call(grid, "Get label of interval", 1, i), call(grid, "Get start time of interval", 1, i),
                          call(grid, "Get end time of interval", 1, i)))
    sounding = [k for k, (label, _, _) in enumerate(intervals) if label == "sounding"]
    if not sounding:
        return None
    inner = intervals[sounding[0]:sounding[-1] + 1]
    span = inner[-1][2] - inner[0][1]
    return sum(end - start for label, start, end in inner if label == "silent") / span


def praat_f0_stddev_norm(x: np.ndarray, outlier_st: float = 12.0) -> float:
    """Praat's F0 variability in eGeMAPS' form: stddev / mean of the voiced frames' F0 in
    semitones from 27.5 Hz (`To Pitch`, 10 ms step, 75-600 Hz), leaving out frames more than
    `outlier_st` from the median as edge.features.voice does. (Praat's contour of the male
    Arctic voice carries 2-3 % of frames near 400 Hz, three times his F0, that alone move
    its variability from 0.09 to 0.13-0.19 depending on the noise.)"""
    pitch = praat().Sound(x.astype(np.float64), RATE_HZ).to_pitch(time_step=0.01, pitch_floor=75.0,
                                                                  pitch_ceiling=600.0)
    f0 = pitch.selected_array["frequency"]
    st = 12.0 * np.log2(f0[f0 > 0] / 27.5)
    st = st[np.abs(st - np.median(st)) <= outlier_st]
    return float(st.std() / st.mean())


# ------------------------------------------------------------ nights of unchanged voices
NIGHT_SENTENCES = ("I slept quite badly last night.", "I talked to my sister on the phone for a while.",
                   "Then I watched some television and went to bed early.",
                   "Work was busy but I managed to finish everything.",
                   "In the afternoon I went for a short walk in the park.",
                   "I did not feel very hungry at dinner time.")
# espeak-ng voices (name, words per minute, pitch) for unchanged-voice nights: two in three
# are the ones INTERVAL_Z was measured on (edge/rules/phq8.py), every third is held out for
# the coverage test (tests/test_rules.py). espeak-ng's variants (+m2, +f4, ...) move the demo
# model's estimate from night to night about twice as much as the plain voices.
VOICE_POOL = (("en-us", 130, 45), ("en-us", 150, 35), ("en+m3", 140, 40), ("en-gb", 160, 55),
              ("en-us+f3", 140, 60), ("en+m1", 120, 30), ("en-gb+f2", 150, 65), ("en-us+m7", 170, 50),
              ("en-us+f2", 125, 50), ("en+m4", 145, 45), ("en-gb+m2", 135, 40), ("en-us+f1", 160, 60),
              ("en-us+m2", 135, 45), ("en-gb+m4", 150, 40), ("en-us+f4", 145, 55), ("en+m5", 160, 35),
              ("en-gb+f1", 130, 60), ("en-us+m6", 140, 50))
CALIBRATION_VOICES = tuple(v for k, v in enumerate(VOICE_POOL) if k % 3 != 2)
HELD_OUT_VOICES = VOICE_POOL[2::3]


def unchanged_voice_nights(folder: Path, voices, nights: int, seed: int = 0) -> Dict[tuple, List[tuple]]:
    """voice -> [(mu, sigma, low, high)] of each night's PHQ-8 reading that did not abstain.

    Each night the same voice says 2-6 of NIGHT_SENTENCES in another order with 0.3-0.8 s
    pauses, at another level (+-6 dB), in another room (white, pink, hum or babble noise at
    -65..-45 dBFS), through the device's whole audio path: features and the shipped LSTM-MoE
    on the gateway profile (push mode)."""
    from nightly_support import speak

    from edge import Screener, ScreenerOptions

    profile = Path(__file__).resolve().parent.parent / "firmware_configs" / "wearable_gateway.yaml"
    out: Dict[tuple, List[tuple]] = {}
    with Screener(ScreenerOptions.from_profile(str(profile))) as screener:
        for v, voice in enumerate(voices):
            said = []
            for s, text in enumerate(NIGHT_SENTENCES):
                x = read_wav(speak(folder / f"v{v}s{s}.wav", voice, text))
                loud = np.nonzero(np.abs(x) > 1e-3)[0]
                said.append(x[loud[0]:loud[-1] + 1])
            rng = np.random.default_rng(seed + 100 + v)
            out[voice] = []
            for night in range(nights):
                parts = []
                for s in rng.permutation(len(said))[:int(rng.integers(2, len(said) + 1))]:
                    parts += [said[s], np.zeros(int(rng.uniform(0.3, 0.8) * RATE_HZ), np.float32)]
                x = np.concatenate(parts) * 10.0 ** (rng.uniform(-6, 6) / 20.0)
                x = with_noise(x, list(NOISES)[(night + v) % 4], rng.uniform(-65, -45), seed=seed + night)
                with screener.session(video=False, audio=True) as session:
                    for k in range(0, x.size, 1600):
                        session.push_audio(x[k:k + 1600], timestamp_ms=k / 16.0)
                phq8 = session.result.phq8
                if phq8.status == "ok":
                    out[voice].append((phq8.mu, phq8.sigma) + tuple(phq8.interval))
    return out


def interval_z_needed(nights: Dict[tuple, List[tuple]], coverage: float) -> np.ndarray:
    """Per night: |mu - the mean of the same voice's other nights| / sigma, the Z each night's
    interval needs to cover the voice's level; and the `coverage` quantile of them."""
    z = []
    for readings in nights.values():
        mus = np.array([r[0] for r in readings])
        for i, (mu, sigma) in enumerate((r[0], r[1]) for r in readings):
            others = np.delete(mus, i)
            z.append(abs(mu - others.mean()) / sigma)
    return np.quantile(np.array(z), coverage)


# ------------------------------------------------------------ the README's voice table
TABLE_CASES = (("a0007 (male)", "a0007", None, None, 0), ("a0007 (male)", "a0007", "white", -50, 0),
               ("a0007 (male)", "a0007", "babble", -45, 0), ("a0009 (female)", "a0009", None, None, 0),
               ("a0009 (female)", "a0009", "pink", -45, 0), ("4 sentences", "session", None, None, 0),
               ("4 sentences", "session", "hum", -45, 0), ("4 sentences", "session", "babble", -45, -10),
               ("4 sentences", "session", "white", -40, -10))


def agreement_table() -> str:
    """Markdown rows: ours / openSMILE / Praat on the CMU Arctic clips, clean and noisy."""
    import opensmile

    from edge.features.voice import VoiceMeasures

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    rows = ["| speech | noise | SNR dB | pause ratio (Praat) | F0 variability (openSMILE, Praat) "
            "| F0 mean st (openSMILE) | loudness (openSMILE) | jitter (openSMILE) | shimmer dB (openSMILE) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for label, clip, kind, level, gain in TABLE_CASES:
        clean = arctic_session() if clip == "session" else arctic(clip)
        x = clean if kind is None else with_noise(clean, kind, level, gain)
        vm = VoiceMeasures()
        vm.add(x)
        r = vm.result()
        f = smile.process_signal(x, RATE_HZ).iloc[0]
        noise_txt = "none" if kind is None else f"{kind} {level} dBFS" + (f", voice {gain} dB" if gain else "")
        pause = "None (floor)" if r.pause_ratio is None else f"{r.pause_ratio:.3f}"
        rows.append(
            f"| {label} | {noise_txt} | {r.snr_db:.0f} | {pause} ({praat_pause_ratio(clean):.3f}) "
            f"| {r.f0_semitone_stddev_norm:.3f} ({f['F0semitoneFrom27.5Hz_sma3nz_stddevNorm']:.3f}, "
            f"{praat_f0_stddev_norm(x):.3f}) | {r.f0_semitone_mean:.2f} ({f['F0semitoneFrom27.5Hz_sma3nz_amean']:.2f}) "
            f"| {r.loudness_mean:.3f} ({f['loudness_sma3_amean']:.3f}) "
            f"| {r.jitter_local:.4f} ({f['jitterLocal_sma3nz_amean']:.4f}) "
            f"| {r.shimmer_local_db:.2f} ({f['shimmerLocaldB_sma3nz_amean']:.2f}) |")
    return "\n".join(rows)
