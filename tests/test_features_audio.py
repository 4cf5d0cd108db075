import numpy as np

from edge.features import audio


def _tone(hz, seconds=0.1, level=0.3):
    t = np.arange(int(audio.SAMPLE_RATE_HZ * seconds)) / audio.SAMPLE_RATE_HZ
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_framing_counts_and_shape():
    frames = audio.frame_signal(np.zeros(1840, np.float32))
    assert frames.shape == (10, audio.WINDOW_SAMPLES)
    assert audio.frame_signal(np.zeros(100, np.float32)).shape == (0, audio.WINDOW_SAMPLES)


def test_mel_filterbank_covers_the_band():
    bank = audio.mel_filterbank()
    assert bank.shape == (audio.N_MELS, audio.N_FFT // 2 + 1)
    assert np.all(bank.max(axis=1) > 0.5)


def test_mfcc_c0_follows_loudness():
    quiet = audio.mfcc(audio.frame_signal(_tone(440, level=0.01)))
    loud = audio.mfcc(audio.frame_signal(_tone(440, level=0.5)))
    assert quiet.shape == (8, audio.N_MFCC)
    assert loud[:, 0].mean() > quiet[:, 0].mean()


def test_pitch_of_a_tone_and_silence():
    for hz in (110.0, 220.0):
        pitch, voiced = audio.frame_pitch_hz(audio.frame_signal(_tone(hz)))
        assert voiced.all()
        assert np.allclose(pitch, hz, rtol=0.03)
    pitch, voiced = audio.frame_pitch_hz(audio.frame_signal(np.zeros(1840, np.float32)))
    assert not voiced.any() and np.all(pitch == 0)


def test_white_noise_is_unvoiced():
    noise = np.random.default_rng(0).normal(0, 0.1, 1840).astype(np.float32)
    _, voiced = audio.frame_pitch_hz(audio.frame_signal(noise))
    assert voiced.mean() < 0.2


def test_energy_dbfs():
    energy = audio.frame_energy_dbfs(audio.frame_signal(np.full(800, 0.1, np.float32)))
    assert np.allclose(energy, -20.0, atol=1e-3)
