"""Vocal measures a clinician recognises, streamed in bounded memory (numpy only).

`VoiceMeasures` takes 16 kHz mono float audio in chunks of any size and keeps only running
sums, a level histogram and a few frames of context, so hours of audio cost the same memory
as a minute. `result()` gives a `VoiceResult`:

- noise floor and SNR: each 10 s segment's floor is the 10th percentile of its 20 ms frame
  levels (a steady floor and one that changes slowly are both followed); the recording's
  floor is their median, its SNR the median voiced level above it;
- pause ratio: time in pauses (>= 250 ms quieter than max(loud speech - 30 dB, floor + 10 dB),
  between two stretches of speech) over the time from the first to the last speech frame, as
  Praat's "To TextGrid (silences)" measures it on intensity. Where the speech is less than
  PAUSE_MIN_SNR_DB above the floor of any segment it is None with the reason (a pause cannot
  be told from the floor), never a confident 0.0;
- speaking-rate proxy: voiced segments of speech (voiced frames above the pause threshold, so
  a voice in the next room does not count) per second of speech (pauses left out), and all
  voiced segments per second of audio (eGeMAPS `VoicedSegmentsPerSec`);
- F0 mean and variability in semitones from 27.5 Hz over voiced frames (eGeMAPS
  `F0semitoneFrom27.5Hz_sma3nz_amean` and `_stddevNorm`: stddev / mean);
- loudness (eGeMAPS `loudness_sma3_amean`: sum over 26 mel bands of the equal-loudness
  weighted band power to the power 0.33, as openSMILE's cPlp; scaled to openSMILE's units);
- jitter (`jitterLocal_sma3nz_amean`) and shimmer (`shimmerLocaldB_sma3nz_amean`) from a
  period-by-period waveform match as openSMILE's cPitchJitter does.

The references are openSMILE's eGeMAPSv02 (Eyben et al. 2016) and Praat (pauses, F0
variability); tests compare against both on the same recordings, real (CMU Arctic) and
synthetic, clean and under white, pink, mains-hum and babble noise. The pitch tracker is our
own (normalised cross-correlation at 8 kHz, refined at 16 kHz with parabolic interpolation,
shortest-lag choice against octave-down errors), not openSMILE's subharmonic summation with
Viterbi smoothing, so figures agree within the tolerances stated in
tests/test_features_voice.py, not to the last digit.
These are signal measures for a screening aid; none of them is a diagnosis.

Where we knowingly differ from openSMILE:
- F0 contour: octave slips against the +-50 ms median are folded back, other jumps over 40 %
  unvoiced, one-frame gaps bridged, voiced runs under 30 ms dropped (openSMILE: Viterbi).
  Very low voices (about 60-80 Hz at phrase ends) stay voiced here where openSMILE drops
  them, and openSMILE's contour carries a few frames near 900 Hz that ours does not.
- Jitter and shimmer: the mean of per-frame values without the 3-frame smoothing; period
  chains restart every 50 ms (CHAIN_FRAMES) so that many run as one numpy batch; a period
  more than 1.3 times its neighbour is a tracking slip, not jitter (Praat's period factor).
- `level_mean_dbfs` is a plain energy level (dB re full scale), not a loudness model.
numpy's matrix products here are tiny: run with OPENBLAS_NUM_THREADS=1 (threads only spin).

Determinism: audio is processed in fixed blocks of frames on a global grid, whatever the
chunk sizes, so feeding chunk by chunk gives bit-for-bit the one-shot result.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional

import numpy as np

from edge.errors import EdgeError
from edge.features.audio import SAMPLE_RATE_HZ

HOP_SAMPLES = 160  # 10 ms frame step, as eGeMAPS
BLOCK_FRAMES = 250  # frames analysed together (2.5 s): the fixed grid that makes chunking exact
LEVEL_WINDOW = 320  # 20 ms frames for level and loudness (eGeMAPS' "frame25" is 20 ms)
LEVEL_FFT = 512

F0_MIN_HZ = 55.0  # eGeMAPS searches 55 Hz upwards
F0_MAX_HZ = 600.0
# Voiced: the normalised cross-correlation at the chosen lag reaches this value and the frame
# is louder than GATE_DBFS (openSMILE drops pitch where the frame RMS is under 0.001: -60 dB).
VOICING_NCCF = 0.65
GATE_DBFS = -60.0
# Among correlation peaks within this fraction of the best, the shortest lag wins: the
# period's multiples correlate nearly as well as the period itself (octave-down errors).
SHORTEST_LAG_FRACTION = 0.9
# Unvoiced gaps this short inside voiced speech are bridged.
MAX_GAP_FRAMES = 1
# F0 slips are judged against the median of the voiced frames this many frames either side.
OCTAVE_CONTEXT = 5

PAUSE_MIN_S = 0.25
PAUSE_BELOW_SPEECH_DB = 30.0
PAUSE_SPEECH_PERCENTILE = 95.0
# Candidate pause thresholds (dBFS); the one used is picked at result() from the speech level
# and the noise floor, per floor segment.
PAUSE_THRESHOLDS_DBFS = np.arange(-80.0, -9.0, 1.0)
LEVEL_HIST_EDGES_DB = np.arange(-100.0, 0.5, 0.5)
# The noise floor: the FLOOR_PERCENTILE-th percentile of the frame levels of each segment of
# FLOOR_SEGMENT_FRAMES frames (10 s, on a global grid), so that a floor that changes slowly
# (a fridge starting, traffic building up) is followed. A frame is a pause frame when it is
# quieter than max(speech level - PAUSE_BELOW_SPEECH_DB, floor + PAUSE_ABOVE_FLOOR_DB), as
# Praat's "To TextGrid (silences)" judges intensity alone (voicing does not matter: a voice
# in the next room is still a pause of this speaker).
FLOOR_SEGMENT_FRAMES = 1000
FLOOR_PERCENTILE = 10.0
PAUSE_ABOVE_FLOOR_DB = 10.0
# Speech less than this far above the floor (in any segment of the speech): pauses cannot be
# told from the floor, so the pause ratio and the speaking rate per second of speech are None.
PAUSE_MIN_SNR_DB = 15.0

# Jitter and shimmer (openSMILE cPitchJitter, eGeMAPSv02 settings).
JITTER_SEARCH_REL = 0.10
JITTER_MIN_CC = 0.5
JITTER_MAX_PERIOD_FACTOR = 1.3
# Period chains restart on this grid of frames (50 ms) so that many chains step together.
CHAIN_FRAMES = 5
# Chains run once this many frames (10 s) are waiting, or at the end.
CHAIN_BATCH_FRAMES = 1000

MIN_VOICED_S_F0 = 0.5
# F0 statistics leave out voiced frames more than this far from the recording's median F0
# (octave and other tracking slips that move the variability most; Praat's and openSMILE's
# contours carry them too). Kept in ST_BIN semitone bins: count, sum, sum of squares.
F0_OUTLIER_ST = 12.0
ST_BIN = 0.25
ST_BINS = 256
MIN_VOICED_S_JITTER = 1.0
MIN_SPEECH_S = 1.0

# openSMILE's loudness scale relative to ours (fitted once on speech and tones, frame by
# frame; openSMILE's FFT magnitudes carry a normalisation we do not reproduce exactly).
LOUDNESS_SCALE = 0.03852


def _semitones(f0_hz: np.ndarray) -> np.ndarray:
    """Semitones above 27.5 Hz (0 for unvoiced frames), as eGeMAPS' F0semitoneFrom27.5Hz."""
    out = np.zeros_like(f0_hz, dtype=np.float64)
    voiced = f0_hz > 27.5
    out[voiced] = 12.0 * np.log2(f0_hz[voiced] / 27.5)
    return out


def _hz_to_mel(hz):
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (np.exp(np.asarray(mel, dtype=np.float64) / 1127.0) - 1.0)


def _loudness_weights() -> np.ndarray:
    """[26, LEVEL_FFT//2+1]: mel triangles (20-8000 Hz) times Hermansky's equal-loudness
    weight at each band's centre (openSMILE smileDsp_equalLoudnessWeight)."""
    n_bands = 26
    bins_hz = np.linspace(0.0, SAMPLE_RATE_HZ / 2.0, LEVEL_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(20.0), _hz_to_mel(8000.0), n_bands + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.maximum(0.0, np.minimum((bins_hz - lower) / (centre - lower), (upper - bins_hz) / (upper - centre)))
    w = 2.0 * np.pi * edges[1:-1]
    w2 = w * w
    c = w2 + 6.3e6
    eql = 1e32 * ((w2 + 56.8e6) * w2 * w2) / (c * c * (w2 + 0.38e9) * (w2 * w2 * w2 * w + 1.7e31))
    return (tri * eql[:, None]).T.astype(np.float64)  # [bins, bands]


_HAMMING = np.hamming(LEVEL_WINDOW)
_LOUD_W = _loudness_weights()
# Low-pass for 16 -> 8 kHz before the coarse pitch search (windowed sinc, 31 taps, 3.6 kHz).
_DECIM_TAPS = 31
_DECIM_HALF = _DECIM_TAPS // 2
_taps = np.arange(_DECIM_TAPS) - _DECIM_HALF
_DECIM = np.sinc(_taps * 0.45) * np.hamming(_DECIM_TAPS)
_DECIM = (_DECIM / _DECIM.sum()).astype(np.float32)
# Coarse search at 8 kHz (20 ms window, lags for F0_MAX_HZ..F0_MIN_HZ), fine search at 16 kHz.
_W8 = 160
_LAG8_MIN = int(math.floor(8000.0 / F0_MAX_HZ))
_LAG8_MAX = int(math.ceil(8000.0 / F0_MIN_HZ))
_SPAN8 = _W8 + _LAG8_MAX + 1
_FFT8 = 512
_W16 = 320
_PITCH_SPAN = _W16 + 2 * _LAG8_MAX + 4  # samples a pitch frame reads from its start
# A pitch frame starts this much after the level frame, so that both are centred where eGeMAPS'
# 60 ms pitch frames are (frame start + 30 ms).
_PITCH_OFFSET = 240
_FRAME_SPAN = max(_PITCH_OFFSET + _PITCH_SPAN, LEVEL_WINDOW)
_LOOK = 11  # frames of look-ahead the smoothing needs (gap fill, run length, octave, median, sma3)
PAUSE_MIN_FRAMES = int(round(PAUSE_MIN_S * SAMPLE_RATE_HZ / HOP_SAMPLES))


def _n_frames_for(n_samples: int) -> int:
    """Frames whose 20 ms window starts inside the audio (the last ones read zeros past the end)."""
    if n_samples <= 0:
        return 0
    return (n_samples - 1) // HOP_SAMPLES + 1


def _check_samples(samples) -> np.ndarray:
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise EdgeError(f"voice measures need mono audio as a 1-D array; got shape {arr.shape}: "
                        "mix the channels down first")
    if arr.dtype.kind != "f":
        raise EdgeError(f"voice measures need float samples in [-1, 1]; got {arr.dtype}: "
                        "divide int16 PCM by 32768 and convert to float32")
    arr = arr.astype(np.float32, copy=False)
    if arr.size and not np.all(np.isfinite(arr)):
        raise EdgeError("audio contains NaN or infinite samples: the recording is corrupt")
    return arr


@dataclass
class VoiceResult:
    """Voice measures of everything fed so far. None where the audio does not allow a
    measure (too little voice, or speech too close to the noise floor to be told from it);
    `reasons` then says why (key: the field name). Times in seconds."""

    seconds_audio: float
    seconds_voiced: float
    seconds_speech: float
    seconds_in_pauses: float
    pause_count: int
    pause_ratio: Optional[float]
    voiced_segments_per_speech_sec: Optional[float]
    voiced_segments_per_sec: Optional[float]
    f0_semitone_mean: Optional[float]
    f0_semitone_stddev_norm: Optional[float]
    f0_mean_hz: Optional[float]
    loudness_mean: Optional[float]
    level_mean_dbfs: Optional[float]
    jitter_local: Optional[float]
    shimmer_local_db: Optional[float]
    # The recording's noise floor (dBFS, the median over its 10 s segments of each one's
    # 10th-percentile frame level) and the speech level (median voiced frame level) above it.
    noise_floor_dbfs: Optional[float] = None
    snr_db: Optional[float] = None
    reasons: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, object]:
        """Plain JSON-ready dict (floats rounded to 6 digits; None stays None)."""
        out = {}  # type: Dict[str, object]
        for key, value in asdict(self).items():
            out[key] = round(value, 6) if isinstance(value, float) else value
        return out


# The eGeMAPSv02 functional each VoiceResult field stands for (reports and tests use it).
EGEMAPS_NAMES = {
    "f0_semitone_mean": "F0semitoneFrom27.5Hz_sma3nz_amean",
    "f0_semitone_stddev_norm": "F0semitoneFrom27.5Hz_sma3nz_stddevNorm",
    "loudness_mean": "loudness_sma3_amean",
    "jitter_local": "jitterLocal_sma3nz_amean",
    "shimmer_local_db": "shimmerLocaldB_sma3nz_amean",
    "voiced_segments_per_sec": "VoicedSegmentsPerSec",
}


class VoiceMeasures:
    """Streaming accumulator of voice measures over 16 kHz mono float audio.

    `add(samples)` takes a 1-D float32/float64 array in [-1, 1] of any length (0 included);
    `result()` summarises everything added so far and may be called at any time (it does
    not disturb the stream). Memory stays bounded whatever the length of the audio: a few
    seconds of samples, a few frames of context, sums and a level histogram.
    """

    def __init__(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # absolute sample index of _buf[0]
        self._n_samples = 0
        self._next_frame = 0  # next frame to analyse
        # Raw per-frame values (level dB, loudness, F0 or 0) of the last 2*_LOOK frames.
        self._tail = np.zeros((3, 0))
        self._tail_start = 0
        self._emitted = 0  # frames accumulated so far
        # Frame sums.
        self._n_voiced = 0
        # F0 of voiced frames (semitones) by ST_BIN bins: count, sum, sum of squares.
        self._st_hist = np.zeros((3, ST_BINS))
        self._loud_sum = 0.0
        self._level_pow_sum = 0.0
        self._segments = 0
        self._prev_voiced = False
        self._first_voiced = -1
        self._voiced_level_hist = np.zeros(len(LEVEL_HIST_EDGES_DB) - 1, dtype=np.int64)
        # Per floor segment: the level histogram of all its frames (rows: segments).
        self._floor_hist = np.zeros((0, len(LEVEL_HIST_EDGES_DB) - 1), dtype=np.int32)
        # Pauses, one counter per candidate threshold (columns) and per floor segment of the
        # pause's first frame (rows); speech at a threshold: voiced and not quieter than it.
        k = len(PAUSE_THRESHOLDS_DBFS)
        self._run_start = np.full(k, -1, dtype=np.int64)  # start frame of the open silent run
        self._first_speech = np.full(k, -1, dtype=np.int64)
        self._pending = np.zeros((0, k), dtype=np.int32)  # pause frames waiting for speech after them
        self._pending_n = np.zeros((0, k), dtype=np.int32)
        self._pause_frames = np.zeros((0, k), dtype=np.int32)
        self._pause_n = np.zeros((0, k), dtype=np.int32)
        self._seg_first = np.zeros((0, k), dtype=np.int32)  # first speech frame in the segment, -1: none
        self._seg_last = np.zeros((0, k), dtype=np.int32)
        self._seg_starts = np.zeros((0, k), dtype=np.int32)  # voiced segments of speech starting there
        self._prev_speech = np.zeros(k, dtype=bool)
        # Jitter/shimmer period chain.
        self._f0_hist = np.zeros(0)  # final F0 of frames [_f0_hist_start, _emitted)
        self._f0_hist_start = 0
        self._scan = 0  # first frame not yet given to a period chain
        self._jit_sum = 0.0
        self._jit_n = 0
        self._shim_sum = 0.0
        self._shim_n = 0

    # ------------------------------------------------------------------ input
    def add(self, samples: np.ndarray) -> None:
        """Feed the next chunk: 1-D float array, 16 kHz mono, values in [-1, 1]."""
        samples = _check_samples(samples)
        if samples.size == 0:
            return
        self._buf = np.concatenate([self._buf, samples])
        self._n_samples += int(samples.size)
        need = (BLOCK_FRAMES - 1) * HOP_SAMPLES + _FRAME_SPAN + _DECIM_HALF + 1
        while self._n_samples - self._next_frame * HOP_SAMPLES >= need:
            self._process_block(BLOCK_FRAMES, final=False)

    def result(self) -> VoiceResult:
        """The measures of all audio added so far (the stream can go on afterwards)."""
        done = copy.deepcopy(self)
        n_total = _n_frames_for(done._n_samples)
        while done._next_frame < n_total:
            done._process_block(min(BLOCK_FRAMES, n_total - done._next_frame), final=False)
        done._process_block(0, final=True)
        return done._summarise()

    # ------------------------------------------------------------- processing
    def _segment(self, start: int, length: int) -> np.ndarray:
        """Samples [start, start+length) in absolute indices; zeros where there is no audio."""
        out = np.zeros(length, dtype=np.float32)
        lo = max(start, self._buf_start)
        hi = min(start + length, self._buf_start + self._buf.size, self._n_samples)
        if hi > lo:
            out[lo - start:hi - start] = self._buf[lo - self._buf_start:hi - self._buf_start]
        return out

    def _process_block(self, n: int, final: bool) -> None:
        raw = self._analyse(self._next_frame, n) if n > 0 else np.zeros((3, 0))
        self._next_frame += n
        frames = np.concatenate([self._tail, raw], axis=1)
        start = self._tail_start
        # Frames that do not exist (before the start, after the end) are silent and unvoiced,
        # and are left out of the loudness average.
        front = _LOOK if start == 0 and self._emitted == 0 else 0
        back = _LOOK if final else 0
        padded = np.concatenate([_missing(front), frames, _missing(back)], axis=1)
        first = start - front  # absolute index of padded[:, 0]
        lo, hi = self._emitted - first, padded.shape[1] - _LOOK
        if hi > lo:
            self._accumulate(padded, first, lo, hi, final)
            self._emitted = first + hi
        keep = 2 * _LOOK
        cut = max(0, frames.shape[1] - keep)
        self._tail = frames[:, cut:]
        self._tail_start = start + cut
        keep_from = min(self._next_frame, self._scan) * HOP_SAMPLES - _DECIM_HALF - 2 * HOP_SAMPLES
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start:].copy()
            self._buf_start = keep_from

    def _analyse(self, first: int, n: int) -> np.ndarray:
        """Raw values of frames [first, first+n): rows level (dBFS), loudness, F0 (Hz, 0 unvoiced)."""
        start = first * HOP_SAMPLES
        x = self._segment(start - _DECIM_HALF - 1, (n - 1) * HOP_SAMPLES + _FRAME_SPAN + 2 * _DECIM_HALF + 2)
        x16 = x[_DECIM_HALF + 1:]  # x16[0] is the first frame's first sample
        idx = np.arange(n) * HOP_SAMPLES
        frames = _windows(x16, LEVEL_WINDOW)[idx].astype(np.float64)
        power = np.mean(frames * frames, axis=1)
        level_db = 10.0 * np.log10(power + 1e-10)
        spec = np.fft.rfft(frames * _HAMMING, n=LEVEL_FFT, axis=1)
        band = (spec.real ** 2 + spec.imag ** 2) @ _LOUD_W
        loud = LOUDNESS_SCALE * np.sum(band ** 0.33, axis=1)
        f0 = np.zeros(n)
        gate = np.nonzero(level_db >= GATE_DBFS)[0]
        if gate.size:
            f0[gate] = _pitch(x[_PITCH_OFFSET:], gate)
        return np.stack([level_db, loud, f0])

    def _accumulate(self, p: np.ndarray, first: int, lo: int, hi: int, final: bool) -> None:
        """Smooth the padded raw frames p and add frames [lo, hi) of p to the sums."""
        level, loud, f0_raw = p[0], p[1], p[2]
        exists = ~np.isnan(loud)
        loud = np.where(exists, loud, 0.0)
        # F0 slips, judged against the median of the voiced frames within +-5 (50 ms): an
        # octave off is folded back, any other jump of more than 40 % (onsets, offsets,
        # noise) is unvoiced.
        near = np.stack([_shift(f0_raw, k, 0.0) for k in range(-OCTAVE_CONTEXT, OCTAVE_CONTEXT + 1)])
        ref = _median_of_positive(near)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ref > 0, f0_raw / np.where(ref > 0, ref, 1.0), 1.0)
        up, down = (ratio > 1.7) & (ratio < 2.3), (ratio > 0.43) & (ratio < 0.59)
        f0_c = np.where(up, 0.5 * f0_raw, np.where(down, 2.0 * f0_raw, f0_raw))
        f0_c = np.where(~up & ~down & ((ratio > 1.4) | (ratio < 0.7)), 0.0, f0_c)
        # Voicing as a contour: fill one-frame gaps (two with MAX_GAP_FRAMES = 2), then drop
        # runs shorter than three frames (openSMILE gets this from Viterbi smoothing).
        p1r, p2r, n1r, n2r = (_shift(f0_c, k, 0.0) for k in (1, 2, -1, -2))
        if MAX_GAP_FRAMES >= 2:
            left, right = np.where(p1r > 0, p1r, p2r), np.where(n1r > 0, n1r, n2r)
            gap = (f0_c <= 0) & (((p1r > 0) & (right > 0)) | ((n1r > 0) & (left > 0)))
        else:
            left, right = p1r, n1r
            gap = (f0_c <= 0) & (p1r > 0) & (n1r > 0)
        f0_a = np.where(gap, 0.5 * (left + right), f0_c)
        va = f0_a > 0
        p1, p2, n1, n2 = _shift(va, 1, False), _shift(va, 2, False), _shift(va, -1, False), _shift(va, -2, False)
        keep = va & ((p1 & p2) | (p1 & n1) | (n1 & n2))
        f1 = np.where(keep, f0_a, 0.0)
        prev_f, next_f = _shift(f1, 1, 0.0), _shift(f1, -1, 0.0)
        all3 = (prev_f > 0) & (f1 > 0) & (next_f > 0)
        med = np.maximum(np.minimum(prev_f, f1), np.minimum(np.maximum(prev_f, f1), next_f))
        f0 = np.where(all3, med, f1)
        st = _semitones(f0)
        nz = (st > 0).astype(np.float64)
        st_num = st + _shift(st, 1, 0.0) + _shift(st, -1, 0.0)
        st_cnt = nz + _shift(nz, 1, 0.0) + _shift(nz, -1, 0.0)
        st_sma = np.where(st > 0, st_num / np.maximum(st_cnt, 1.0), 0.0)
        ex = exists.astype(np.float64)
        l_num = loud + _shift(loud, 1, 0.0) + _shift(loud, -1, 0.0)
        l_cnt = ex + _shift(ex, 1, 0.0) + _shift(ex, -1, 0.0)
        loud_sma = l_num / np.maximum(l_cnt, 1.0)

        sl = slice(lo, hi)
        voiced = f0[sl] > 0
        st_v = st_sma[sl][voiced]
        self._n_voiced += int(voiced.sum())
        st_bin = np.clip((st_v / ST_BIN).astype(np.int64), 0, ST_BINS - 1)
        np.add.at(self._st_hist[0], st_bin, 1.0)
        np.add.at(self._st_hist[1], st_bin, st_v)
        np.add.at(self._st_hist[2], st_bin, st_v * st_v)
        self._loud_sum += float(loud_sma[sl].sum())
        self._level_pow_sum += float(np.sum(10.0 ** (level[sl] / 10.0)))
        starts = voiced & ~np.concatenate([[self._prev_voiced], voiced[:-1]])
        self._segments += int(starts.sum())
        self._prev_voiced = bool(voiced[-1])
        vidx = np.nonzero(voiced)[0]
        abs0 = first + lo
        if vidx.size:
            if self._first_voiced < 0:
                self._first_voiced = abs0 + int(vidx[0])
            self._voiced_level_hist += np.histogram(level[sl][voiced], bins=LEVEL_HIST_EDGES_DB)[0]
        self._pauses(level[sl], voiced, abs0)
        self._f0_hist = np.concatenate([self._f0_hist, f0[sl]])
        self._advance_chain(abs0 + (hi - lo), final)

    def _grow(self, n_segments: int) -> None:
        """Rows for floor segments [0, n_segments)."""
        extra = n_segments - self._floor_hist.shape[0]
        if extra <= 0:
            return
        k = PAUSE_THRESHOLDS_DBFS.size
        self._floor_hist = np.concatenate([self._floor_hist, np.zeros((extra, self._floor_hist.shape[1]), np.int32)])
        for name in ("_pending", "_pending_n", "_pause_frames", "_pause_n", "_seg_starts"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros((extra, k), np.int32)]))
        for name in ("_seg_first", "_seg_last"):
            setattr(self, name, np.concatenate([getattr(self, name), np.full((extra, k), -1, np.int32)]))

    def _pauses(self, level: np.ndarray, voiced: np.ndarray, abs0: int) -> None:
        """Floor histograms, speech frames and silent runs for every candidate threshold at
        once (rows: thresholds)."""
        n = level.size
        if n == 0:
            return
        seg = (abs0 + np.arange(n)) // FLOOR_SEGMENT_FRAMES
        self._grow(int(seg[-1]) + 1)
        n_bins = self._floor_hist.shape[1]
        bins = np.clip(((level - LEVEL_HIST_EDGES_DB[0]) / 0.5).astype(np.int64), 0, n_bins - 1)
        np.add.at(self._floor_hist, (seg, bins), 1)
        silent = level[None, :] < PAUSE_THRESHOLDS_DBFS[:, None]
        speech = voiced[None, :] & ~silent
        has_speech = speech.any(axis=1)
        first_in_block = abs0 + np.argmax(speech, axis=1)
        last_in_block = abs0 + n - 1 - np.argmax(speech[:, ::-1], axis=1)
        new_first = has_speech & (self._first_speech < 0)
        self._first_speech[new_first] = first_in_block[new_first]
        starts = speech & ~np.concatenate([self._prev_speech[:, None], speech[:, :-1]], axis=1)
        self._prev_speech = speech[:, -1].copy()
        for s in np.unique(seg):
            cols = np.nonzero(seg == s)[0]
            part = speech[:, cols[0]:cols[-1] + 1]
            self._seg_starts[s] += starts[:, cols[0]:cols[-1] + 1].sum(axis=1).astype(np.int32)
            has = part.any(axis=1)
            first = abs0 + cols[0] + np.argmax(part, axis=1)
            last = abs0 + cols[-1] - np.argmax(part[:, ::-1], axis=1)
            row_first = self._seg_first[s]
            set_first = has & (row_first < 0)
            row_first[set_first] = first[set_first]
            self._seg_last[s, has] = last[has]
        edges = np.diff(np.pad(silent.astype(np.int8), ((0, 0), (1, 1))), axis=1)
        rs, ps = np.nonzero(edges == 1)  # run starts (row, position)
        re, pe = np.nonzero(edges == -1)  # run ends (exclusive)
        start_abs = abs0 + ps
        # A run starting at this block's first frame continues the open run of the last block.
        carry = (ps == 0) & (self._run_start[rs] >= 0)
        start_abs = np.where(carry, self._run_start[rs], start_abs)
        closed_start, closed_end, closed_row = [start_abs[pe < n]], [abs0 + pe[pe < n]], [rs[pe < n]]
        # An open run from the last block that ends at this block's first frame.
        rows = np.nonzero((self._run_start >= 0) & ~silent[:, 0])[0]
        closed_start.append(self._run_start[rows])
        closed_end.append(np.full(rows.size, abs0, dtype=np.int64))
        closed_row.append(rows)
        cs, ce, cr = (np.concatenate(a) for a in (closed_start, closed_end, closed_row))
        self._run_start[:] = -1
        open_ = pe == n
        self._run_start[rs[open_]] = start_abs[open_]
        # A pause lies between speech: after the first speech frame, before a later one.
        length = ce - cs
        ok = (length >= PAUSE_MIN_FRAMES) & (self._first_speech[cr] >= 0) & (cs > self._first_speech[cr])
        cs, ce, cr, length = cs[ok], ce[ok], cr[ok], length[ok]
        # Waiting pauses of the thresholds with speech in this block are pauses now.
        cols = np.nonzero(has_speech)[0]
        self._pause_frames[:, cols] += self._pending[:, cols]
        self._pause_n[:, cols] += self._pending_n[:, cols]
        self._pending[:, cols] = 0
        self._pending_n[:, cols] = 0
        now = has_speech[cr] & (ce <= last_in_block[cr])
        row = cs // FLOOR_SEGMENT_FRAMES
        np.add.at(self._pause_frames, (row[now], cr[now]), length[now].astype(np.int32))
        np.add.at(self._pause_n, (row[now], cr[now]), 1)
        np.add.at(self._pending, (row[~now], cr[~now]), length[~now].astype(np.int32))
        np.add.at(self._pending_n, (row[~now], cr[~now]), 1)

    # -------------------------------------------------------- jitter, shimmer
    def _advance_chain(self, frame_end: int, final: bool) -> None:
        """Period-by-period waveform matching (openSMILE cPitchJitter) over voiced frames.

        Voiced frames are cut into groups of at most CHAIN_FRAMES frames (a run of voiced
        frames, split on a fixed grid); each group's period chain starts at its first frame
        and all groups of a block step together, which keeps numpy busy with few calls.
        """
        hist, h0 = self._f0_hist, self._f0_hist_start
        s, n = self._scan - h0, frame_end - h0
        if n <= s or (not final and n - s < CHAIN_BATCH_FRAMES):
            return  # wait for a larger batch: fewer, fuller numpy calls
        voiced = hist > 0
        on_grid = (h0 + np.arange(n)) % CHAIN_FRAMES == 0
        prev_v = np.concatenate([[False], voiced[:-1]])
        starts = np.nonzero(voiced & (~prev_v | on_grid))[0]
        starts = starts[starts >= s]
        bounds = np.nonzero(~voiced | on_grid)[0]
        k = np.searchsorted(bounds, starts, side="right")
        ends = np.where(k < bounds.size, bounds[np.minimum(k, max(bounds.size - 1, 0))], n)
        self._scan = frame_end
        if starts.size and not final and k[-1] >= bounds.size:
            # The last group may go on in the next block: leave it for then.
            self._scan = h0 + int(starts[-1])
            starts, ends = starts[:-1], ends[:-1]
        if starts.size:
            self._run_chains(hist, h0, starts, ends)
        keep = max(0, self._scan - 1 - h0)
        self._f0_hist = hist[keep:]
        self._f0_hist_start = h0 + keep

    def _run_chains(self, hist: np.ndarray, h0: int, starts: np.ndarray, ends: np.ndarray) -> None:
        n_frames = int(ends.max())
        stats = np.zeros((6, n_frames + 1))  # per frame: periods, period sum, |diff| sum, diffs, amp, amp diff
        x = self._buf.astype(np.float64)
        sample_end = min(self._n_samples, self._buf_start + self._buf.size) - self._buf_start
        pos = (h0 + starts) * HOP_SAMPLES - self._buf_start
        end = (h0 + ends) * HOP_SAMPLES - self._buf_start
        last = np.zeros(starts.size)
        # Chains of similar period step together (the arrays are padded to the longest).
        bucket = np.floor(np.log(hist[starts]) / math.log(1.25)).astype(np.int64)
        for b in np.unique(bucket):
            self._step_chains(np.nonzero(bucket == b)[0], pos, end, last, hist, h0, x, sample_end, stats)
        n_per, per_sum, diff_sum, n_diff, amp, amp_diff = stats
        jit = (n_per > 0) & (n_diff > 0)
        jitter = np.minimum(1.0, (diff_sum[jit] / n_diff[jit]) / (per_sum[jit] / n_per[jit]))
        shim = (n_per > 0) & (amp > 0)
        shimmer = 20.0 * np.log10(1.0 + np.minimum(1.0, amp_diff[shim] / amp[shim]))
        self._jit_sum += float(jitter.sum())
        self._jit_n += int(jitter.size)
        self._shim_sum += float(shimmer.sum())
        self._shim_n += int(shimmer.size)

    def _step_chains(self, active, pos, end, last, hist, h0, x, sample_end, stats) -> None:
        """Advance the given period chains until each reaches its end (updates pos, last, stats)."""
        while active.size:
            p = pos[active]
            fr = (p + self._buf_start) // HOP_SAMPLES - h0
            t = SAMPLE_RATE_HZ / hist[fr]
            t_min = np.floor((1.0 - JITTER_SEARCH_REL) * t).astype(np.int64)
            t_max = np.ceil((1.0 + JITTER_SEARCH_REL) * t).astype(np.int64)
            fits = p + 2 * t_max + 2 <= sample_end
            if not fits.all():  # only at the very end of the audio
                active, p, fr, t, t_min, t_max = (a[fits] for a in (active, p, fr, t, t_min, t_max))
                if not active.size:
                    break
            has, pp, period, cc, amp0, amp1 = _period_steps(x, p, t_min, t_max)
            ok = has & (cc > JITTER_MIN_CC)
            f_ok, per, a0, a1 = fr[ok], period[ok], amp0[ok], amp1[ok]
            prev = last[active[ok]]
            np.add.at(stats[0], f_ok, 1.0)
            np.add.at(stats[1], f_ok, per)
            # Praat's "maximum period factor": a neighbour more than 1.3 times longer is a
            # tracking slip (octave jump between frames), not jitter.
            with_prev = (prev > 0) & (np.maximum(prev, per) <= JITTER_MAX_PERIOD_FACTOR * np.minimum(prev, per))
            np.add.at(stats[2], f_ok[with_prev], np.abs(prev[with_prev] - per[with_prev]))
            np.add.at(stats[3], f_ok[with_prev], 1.0)
            np.add.at(stats[4], f_ok, 0.5 * (a0 + a1))
            np.add.at(stats[5], f_ok, np.abs(a0 - a1))
            last[active[ok]] = per
            pos[active] = p + np.where(has, pp, np.round(t).astype(np.int64))
            active = active[pos[active] < end[active]]

    # ---------------------------------------------------------------- summary
    def _floors(self) -> np.ndarray:
        """Noise floor (dBFS) of each floor segment; a last segment less than half full is
        judged together with the one before it."""
        hist = self._floor_hist.astype(np.int64)
        if hist.shape[0] >= 2 and hist[-1].sum() < FLOOR_SEGMENT_FRAMES // 2:
            hist[-1] += hist[-2]
        return np.array([_percentile_db(h, FLOOR_PERCENTILE) for h in hist])

    def _f0_stats(self):
        """(frames, sum, sum of squares) of the voiced frames' F0 in semitones, leaving out
        those more than F0_OUTLIER_ST from the recording's median (tracking slips)."""
        count, total, squares = self._st_hist
        n = count.sum()
        if n == 0:
            return 0, 0.0, 0.0
        median = (int(np.searchsorted(np.cumsum(count), n / 2.0)) + 0.5) * ST_BIN
        centre = (np.arange(ST_BINS) + 0.5) * ST_BIN
        keep = np.abs(centre - median) <= F0_OUTLIER_ST
        return int(count[keep].sum()), float(total[keep].sum()), float(squares[keep].sum())

    def _summarise(self) -> VoiceResult:
        hop_s = HOP_SAMPLES / SAMPLE_RATE_HZ
        seconds_audio = self._n_samples / SAMPLE_RATE_HZ
        seconds_voiced = self._n_voiced * hop_s
        reasons = {}  # type: Dict[str, str]
        floors = self._floors()
        noise_floor = float(np.median(floors)) if floors.size else None
        speech_db = snr = None
        pause_frames, pause_n, span, speech_segments = 0, 0, 0, 0
        worst_snr, worst_at = None, 0
        if self._first_voiced >= 0:
            speech_db = _percentile_db(self._voiced_level_hist, 50.0)
            snr = speech_db - noise_floor
            # Per floor segment: the threshold, its nearest candidate, the speech and pauses at it.
            thr = np.maximum(_percentile_db(self._voiced_level_hist, PAUSE_SPEECH_PERCENTILE) - PAUSE_BELOW_SPEECH_DB,
                             floors + PAUSE_ABOVE_FLOOR_DB)
            ks = np.argmin(np.abs(PAUSE_THRESHOLDS_DBFS[None, :] - thr[:, None]), axis=1)
            rows = np.arange(floors.size)
            firsts, lasts = self._seg_first[rows, ks], self._seg_last[rows, ks]
            with_speech = firsts >= 0
            judged = with_speech if with_speech.any() else np.ones(floors.size, dtype=bool)
            worst_at = int(np.argmax(np.where(judged, floors, -np.inf)))
            worst_snr = speech_db - float(floors[worst_at])
            if with_speech.any():
                span = int(lasts[with_speech].max()) - int(firsts[with_speech].min()) + 1
                pause_frames = int(self._pause_frames[rows, ks].sum())
                pause_n = int(self._pause_n[rows, ks].sum())
                speech_segments = int(self._seg_starts[rows, ks].sum())
        seconds_in_pauses = pause_frames * hop_s
        seconds_speech = max(0.0, span * hop_s - seconds_in_pauses)
        enough_speech = seconds_voiced >= MIN_SPEECH_S
        separable = enough_speech and worst_snr is not None and worst_snr >= PAUSE_MIN_SNR_DB and span > 0
        if not enough_speech:
            why = f"{seconds_voiced:.2f} s voiced, under {MIN_SPEECH_S:g} s"
            reasons["pause_ratio"] = why
            reasons["voiced_segments_per_speech_sec"] = why
        elif not separable and worst_snr is not None and worst_snr >= PAUSE_MIN_SNR_DB:
            why = "no voiced frame above the pause threshold"
            reasons["pause_ratio"] = why
            reasons["voiced_segments_per_speech_sec"] = why
        elif not separable:
            where = "" if floors.size == 1 else f" (from {worst_at * FLOOR_SEGMENT_FRAMES * hop_s:g} s)"
            why = (f"speech only {worst_snr:.0f} dB above the noise floor of {floors[worst_at]:.0f} dBFS{where}, "
                   f"under {PAUSE_MIN_SNR_DB:g} dB: pauses cannot be told from the floor")
            reasons["pause_ratio"] = why
            reasons["voiced_segments_per_speech_sec"] = why
        if snr is None:
            reasons["snr_db"] = "no voiced speech" if floors.size else "no audio"
        if noise_floor is None:
            reasons["noise_floor_dbfs"] = "no audio"
        seg_per_sec = self._segments / seconds_audio if seconds_audio > 0 else None
        if seg_per_sec is None:
            reasons["voiced_segments_per_sec"] = "no audio"
        f0_mean = f0_cv = f0_hz = None
        st_n, st_sum, st_sq = self._f0_stats()
        if st_n * hop_s >= MIN_VOICED_S_F0:
            f0_mean = st_sum / st_n
            var = max(0.0, st_sq / st_n - f0_mean * f0_mean)
            f0_cv = math.sqrt(var) / f0_mean if f0_mean > 0 else None
            f0_hz = 27.5 * 2.0 ** (f0_mean / 12.0)
        else:
            why = f"{st_n * hop_s:.2f} s voiced, under {MIN_VOICED_S_F0:g} s"
            for key in ("f0_semitone_mean", "f0_semitone_stddev_norm", "f0_mean_hz"):
                reasons[key] = why
        n_frames = self._emitted
        loud_mean = self._loud_sum / n_frames if n_frames else None
        level_db = 10.0 * math.log10(self._level_pow_sum / n_frames + 1e-10) if n_frames else None
        if not n_frames:
            reasons["loudness_mean"] = reasons["level_mean_dbfs"] = "no audio"
        jitter = shimmer = None
        if self._jit_n * hop_s >= MIN_VOICED_S_JITTER:
            jitter = self._jit_sum / self._jit_n
        else:
            reasons["jitter_local"] = (f"{self._jit_n * hop_s:.2f} s of voiced frames with matched periods, "
                                       f"under {MIN_VOICED_S_JITTER:g} s")
        if self._shim_n * hop_s >= MIN_VOICED_S_JITTER:
            shimmer = self._shim_sum / self._shim_n
        else:
            reasons["shimmer_local_db"] = (f"{self._shim_n * hop_s:.2f} s of voiced frames with matched periods, "
                                           f"under {MIN_VOICED_S_JITTER:g} s")
        speech_total = seconds_speech + seconds_in_pauses
        separable = separable and speech_total > 0
        return VoiceResult(
            seconds_audio=seconds_audio,
            seconds_voiced=seconds_voiced,
            seconds_speech=seconds_speech,
            seconds_in_pauses=seconds_in_pauses,
            pause_count=pause_n,
            pause_ratio=(seconds_in_pauses / speech_total) if separable else None,
            voiced_segments_per_speech_sec=(speech_segments / seconds_speech)
            if separable and seconds_speech > 0 else None,
            voiced_segments_per_sec=seg_per_sec,
            f0_semitone_mean=f0_mean,
            f0_semitone_stddev_norm=f0_cv,
            f0_mean_hz=f0_hz,
            loudness_mean=loud_mean,
            level_mean_dbfs=level_db,
            jitter_local=jitter,
            shimmer_local_db=shimmer,
            noise_floor_dbfs=noise_floor,
            snr_db=snr,
            reasons=reasons,
        )


def _percentile_db(hist: np.ndarray, q: float) -> float:
    """The q-th percentile (centre of its 0.5 dB bin) of a LEVEL_HIST_EDGES_DB histogram."""
    cum = np.cumsum(hist)
    i = min(int(np.searchsorted(cum, cum[-1] * q / 100.0)), hist.size - 1)
    return float(0.5 * (LEVEL_HIST_EDGES_DB[i] + LEVEL_HIST_EDGES_DB[i + 1]))


def _missing(n: int) -> np.ndarray:
    """n frames that do not exist: silent, unvoiced, no loudness (NaN marks them)."""
    out = np.zeros((3, n))
    out[0] = -100.0
    out[1] = np.nan
    return out


def _shift(a: np.ndarray, by: int, fill) -> np.ndarray:
    """a shifted right by `by` (left if negative), filled with `fill`: _shift(a, 1)[i] == a[i-1]."""
    if by == 0:
        return a.copy()
    out = np.full_like(a, fill)
    if abs(by) >= a.size:
        return out
    if by > 0:
        out[by:] = a[:-by]
    else:
        out[:by] = a[-by:]
    return out


def _median_of_positive(rows: np.ndarray) -> np.ndarray:
    """Column-wise median of the positive entries of rows [k, n] (0 where none is positive)."""
    count = np.sum(rows > 0, axis=0)
    ordered = np.sort(np.where(rows > 0, rows, np.inf), axis=0)
    lo = np.take_along_axis(ordered, np.maximum(count - 1, 0)[None, :] // 2, axis=0)[0]
    hi = np.take_along_axis(ordered, (count // 2)[None, :], axis=0)[0] if rows.shape[0] else lo
    hi = np.where(count % 2 == 1, lo, hi)
    return np.where(count > 0, 0.5 * (lo + np.where(np.isfinite(hi), hi, lo)), 0.0)


def _windows(x: np.ndarray, width: int) -> np.ndarray:
    """Read-only view [len(x) - width + 1, width] of every window of x (no copy).
    (as_strided rather than sliding_window_view: numpy 1.19 on older devices lacks it.)"""
    stride = x.strides[0]
    return np.lib.stride_tricks.as_strided(x, shape=(x.size - width + 1, width), strides=(stride, stride),
                                           writeable=False)


def _pitch(x: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """F0 in Hz (0 when unvoiced) of the given frame indices of x, where x starts
    _DECIM_HALF + 1 samples before frame 0 (the low-pass filter's history)."""
    x8 = np.convolve(x, _DECIM, mode="valid")[1::2]  # x8[j]: centred on frame-0 sample 2j
    seg = _windows(x8, _SPAN8)[frames * (HOP_SAMPLES // 2)].astype(np.float64)
    seg -= seg.mean(axis=1, keepdims=True)
    head = seg[:, :_W8]
    spec = np.fft.rfft(head, n=_FFT8, axis=1)
    cross = np.fft.irfft(np.conj(spec) * np.fft.rfft(seg, n=_FFT8, axis=1), n=_FFT8, axis=1)[:, :_LAG8_MAX + 1]
    sq = np.concatenate([np.zeros((seg.shape[0], 1)), np.cumsum(seg * seg, axis=1)], axis=1)
    lags = np.arange(_LAG8_MAX + 1)
    e_lag = sq[:, lags + _W8] - sq[:, lags]
    nccf = cross / np.sqrt(np.maximum(sq[:, _W8:_W8 + 1] * e_lag, 1e-20))
    inner = nccf[:, 1:-1]
    peak = (inner > nccf[:, :-2]) & (inner >= nccf[:, 2:])
    peak[:, : _LAG8_MIN - 1] = False
    score = np.where(peak, inner, -np.inf)
    best = score.max(axis=1)
    pick = np.argmax(peak & (inner >= SHORTEST_LAG_FRACTION * best[:, None]), axis=1) + 1
    has_peak = np.isfinite(best)
    # Refine at 16 kHz around twice the 8 kHz lag.
    cand = 2 * pick[:, None] + np.arange(-2, 3)[None, :]
    base16 = _DECIM_HALF + 1 + frames * HOP_SAMPLES
    view = _windows(x, _W16)
    a = view[base16].astype(np.float64)
    mean = a.mean(axis=1, keepdims=True)
    a = a - mean
    b = view[base16[:, None] + cand].astype(np.float64)
    b -= mean[:, :, None]
    num = np.einsum("fn,fkn->fk", a, b)
    den = np.sqrt(np.maximum(np.einsum("fn,fn->f", a, a)[:, None] * np.einsum("fkn,fkn->fk", b, b), 1e-20))
    r = num / den
    k = np.argmax(r, axis=1)
    rows = np.arange(frames.size)
    r_best = r[rows, k]
    kk = np.clip(k, 1, 3)
    y0, y1, y2 = r[rows, kk - 1], r[rows, kk], r[rows, kk + 1]
    denom = y0 - 2.0 * y1 + y2
    offset = np.where((k == kk) & (denom < 0), 0.5 * (y0 - y2) / np.where(denom < 0, denom, -1.0), 0.0)
    lag = cand[rows, k] + offset
    voiced = has_peak & (r_best >= VOICING_NCCF) & (lag > 0)
    return np.where(voiced, SAMPLE_RATE_HZ / np.maximum(lag, 1.0), 0.0)


def _period_steps(x: np.ndarray, pos: np.ndarray, t_min: np.ndarray, t_max: np.ndarray):
    """One step of C period chains at once. From x[pos], find the lag in [t_min, t_max] where
    the next period best matches this one (Pearson correlation of two segments as long as the
    lag, as openSMILE's cPitchJitter). Returns per chain: (found, step in samples, period in
    samples with parabolic interpolation, correlation at the peak, peak-to-peak amplitude of
    this period, of the next one)."""
    rows = np.arange(pos.size)
    width = int(2 * t_max.max() + 2)
    seg = x.take(pos[:, None] + np.arange(width)[None, :], mode="clip")
    n_lags = int((t_max - t_min).max()) + 1
    lags = np.minimum(t_min[:, None] + np.arange(n_lags)[None, :], t_max[:, None])
    zero = np.zeros((pos.size, 1))
    cs = np.concatenate([zero, np.cumsum(seg, axis=1)], axis=1)
    cs2 = np.concatenate([zero, np.cumsum(seg * seg, axis=1)], axis=1)
    sa, sa2 = np.take_along_axis(cs, lags, axis=1), np.take_along_axis(cs2, lags, axis=1)
    sb = np.take_along_axis(cs, 2 * lags, axis=1) - sa
    sb2 = np.take_along_axis(cs2, 2 * lags, axis=1) - sa2
    span = int(t_max.max())
    head = int(t_min.min())  # n < head is inside every segment: no mask needed there
    step_b, step_n = seg.strides
    windows = np.lib.stride_tricks.as_strided(seg, shape=(pos.size, width - span + 1, span),
                                              strides=(step_b, step_n, step_n), writeable=False)
    later = windows[rows[:, None], lags]
    sab = (later[:, :, :head] @ seg[:, :head, None])[:, :, 0]
    tail = later[:, :, head:] * (np.arange(head, span)[None, None, :] < lags[:, :, None])
    sab += (tail @ seg[:, head:span, None])[:, :, 0]
    length = lags.astype(np.float64)
    cov = sab - sa * sb / length
    var = (sa2 - sa * sa / length) * (sb2 - sb * sb / length)
    cc = cov / np.sqrt(np.maximum(var, 1e-30))
    inner = cc[:, 1:-1]
    interior = np.arange(1, n_lags - 1)[None, :] < (t_max - t_min)[:, None]
    peak = (inner > cc[:, :-2]) & (inner > cc[:, 2:]) & interior
    found = peak.any(axis=1)
    i = np.argmax(np.where(peak, inner, -np.inf), axis=1) + 1
    i = np.where(found, i, 1)
    y0, y1, y2 = cc[rows, i - 1], cc[rows, i], cc[rows, i + 1]
    denom = y0 - 2.0 * y1 + y2
    off = np.where(denom < 0, 0.5 * (y0 - y2) / np.where(denom < 0, denom, -1.0), 0.0)
    cc_peak = y1 - 0.25 * (y0 - y2) * off
    step = lags[rows, i]
    w = np.arange(width)[None, :]
    first = (w >= 1) & (w < step[:, None] - 1)
    second = (w >= step[:, None] + 1) & (w < 2 * step[:, None] - 1)
    amp0 = np.where(first, seg, -np.inf).max(axis=1) - np.where(first, seg, np.inf).min(axis=1)
    amp1 = np.where(second, seg, -np.inf).max(axis=1) - np.where(second, seg, np.inf).min(axis=1)
    return found, step, step + off, cc_peak, amp0, amp1
