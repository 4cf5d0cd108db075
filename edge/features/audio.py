"""Audio features of the device (numpy only): framing, log-mel, MFCC and prosody.

Contract (also written into the manifests): 16 kHz mono float samples in [-1, 1],
25 ms windows (400 samples, Hann), 10 ms hop (160 samples), 512-point FFT, 40 mel
bands from 20 Hz to 8 kHz (HTK mel scale), natural-log power with a 1e-10 floor,
13 MFCCs (DCT-II, orthonormal, c0 included).

Pitch is a plain normalised-autocorrelation estimate per frame (60-400 Hz): cheap
enough for a Pi and good enough for the prosody statistics of a 100 ms tick.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

SAMPLE_RATE_HZ = 16000
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
N_FFT = 512
N_MELS = 40
N_MFCC = 13
MEL_FMIN_HZ = 20.0
MEL_FMAX_HZ = 8000.0
LOG_FLOOR = 1e-10
PITCH_MIN_HZ = 60.0
PITCH_MAX_HZ = 400.0
# A frame is voiced when its normalised (biased) autocorrelation peak reaches this value.
# The biased estimate favours the true period over its multiples (no octave-down errors)
# and keeps white noise near 0.15 at most; a 100 Hz voice reaches about 0.6.
VOICING_THRESHOLD = 0.3
# Frames quieter than this (dB relative to RMS 1.0, i.e. full scale) count as pause.
SILENCE_DBFS = -45.0


def frame_signal(samples: np.ndarray, window: int = WINDOW_SAMPLES, hop: int = HOP_SAMPLES) -> np.ndarray:
    """Split 1-D `samples` into overlapping frames [n_frames, window] (no padding).

    A signal shorter than one window gives zero frames.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio samples must be 1-D (mono), got shape {samples.shape}")
    if len(samples) < window:
        return np.zeros((0, window), dtype=np.float32)
    n_frames = 1 + (len(samples) - window) // hop
    starts = np.arange(n_frames) * hop
    return samples[starts[:, None] + np.arange(window)[None, :]]


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate_hz: int = SAMPLE_RATE_HZ,
                   fmin_hz: float = MEL_FMIN_HZ, fmax_hz: float = MEL_FMAX_HZ) -> np.ndarray:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1] (peak 1, not area-normalised)."""
    bins_hz = np.linspace(0.0, sample_rate_hz / 2.0, n_fft // 2 + 1)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin_hz), _hz_to_mel(fmax_hz), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bins_hz[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II matrix [n_out, n_in]."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2.0 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


_WINDOW = np.hanning(WINDOW_SAMPLES + 2)[1:-1].astype(np.float32)  # periodic-like, no zero ends
_MEL = mel_filterbank()
_DCT = _dct_matrix(N_MFCC, N_MELS)


def power_spectrum(frames: np.ndarray) -> np.ndarray:
    """|FFT|^2 of Hann-windowed frames: [n_frames, N_FFT // 2 + 1]."""
    spectrum = np.fft.rfft(frames * _WINDOW[None, :], n=N_FFT, axis=1)
    return (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)


def log_mel(frames: np.ndarray) -> np.ndarray:
    """Natural-log mel power [n_frames, N_MELS] of frames [n_frames, WINDOW_SAMPLES]."""
    return np.log(np.maximum(power_spectrum(frames) @ _MEL.T, LOG_FLOOR)).astype(np.float32)


def mfcc(frames: np.ndarray) -> np.ndarray:
    """MFCCs [n_frames, N_MFCC] (c0 first) of frames [n_frames, WINDOW_SAMPLES]."""
    return (log_mel(frames) @ _DCT.T).astype(np.float32)


def frame_energy_dbfs(frames: np.ndarray) -> np.ndarray:
    """RMS level of each frame in dB relative to RMS 1.0 (floor -100 dB): [n_frames]."""
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return (20.0 * np.log10(np.maximum(rms, 1e-5))).astype(np.float32)


def frame_pitch_hz(frames: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Tuple[np.ndarray, np.ndarray]:
    """Pitch estimate and voicing of each frame: (pitch_hz [n], voiced [n] bool).

    pitch_hz is 0 where the frame is unvoiced (autocorrelation peak below
    VOICING_THRESHOLD or the frame is silent).
    """
    n_frames = frames.shape[0]
    pitch = np.zeros(n_frames, dtype=np.float32)
    voiced = np.zeros(n_frames, dtype=bool)
    if n_frames == 0:
        return pitch, voiced
    lag_min = int(sample_rate_hz // PITCH_MAX_HZ)
    lag_max = min(int(sample_rate_hz // PITCH_MIN_HZ), frames.shape[1] - 1)
    centred = frames - frames.mean(axis=1, keepdims=True)
    # Autocorrelation of all frames at once through the FFT (zero-padded: no wrap-around).
    spectrum = np.fft.rfft(centred, n=2 * N_FFT, axis=1)
    acf = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, axis=1)[:, : lag_max + 1]
    normalised = acf / np.maximum(acf[:, :1], 1e-12)
    search = normalised[:, lag_min:]
    best = np.argmax(search, axis=1)
    peak = search[np.arange(n_frames), best]
    loud = frame_energy_dbfs(frames) > SILENCE_DBFS
    voiced = (peak >= VOICING_THRESHOLD) & loud
    pitch[voiced] = sample_rate_hz / (best[voiced] + lag_min).astype(np.float32)
    return pitch, voiced
