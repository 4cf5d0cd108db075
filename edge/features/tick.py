"""The per-tick feature vector of the LSTM-MoE `edge` config (one vector every 100 ms).

Every 100 ms tick the device gathers what the face model saw in the frames of that
interval and what the microphone heard in it, and turns both into one float32 vector
of TICK_FEATURE_COUNT values, in this order:

visual (VISUAL_FEATURES, 11 values)
  emotion_angry ... emotion_neutral  mean mini-Xception probabilities over the frames
                                     of the tick that had a face (FER order); 0 without a face
  face_present     share of the tick's analysed frames with a face (0..1)
  face_size        mean sqrt(box area / frame area) of those faces (0..1)
  face_motion      mean step of the box centre between consecutive face frames, the
                   previous tick's last face included, in frame diagonals (0..~1)
  emotion_entropy  entropy of the mean emotion distribution / ln 7 (0..1); 0 without a face
audio (AUDIO_FEATURES, 32 values), over the 10 frames (25 ms window, 10 ms hop) that
start inside the tick (the previous tick's last 15 ms completes the first windows)
  mfcc_mean_0..12, mfcc_std_0..12   MFCC statistics (see edge.features.audio)
  energy_dbfs_mean, energy_dbfs_std frame RMS level, dB re full scale (-100..0)
  voiced_ratio     share of frames with a pitch (0..1)
  pitch_log2_mean, pitch_log2_std   log2(pitch / 100 Hz) over voiced frames; 0 if none
  pause_ratio      share of frames quieter than SILENCE_DBFS (0..1)

The values are in these natural units; the model normalises them inside its graph
(its manifest carries the statistics), so the device never rescales anything.
Session files (`write_session_features`) store these vectors for training on a
clinic's own labelled sessions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from edge.features import audio

TICK_MS = 100
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
VISUAL_FEATURES = tuple("emotion_" + e for e in EMOTIONS) + (
    "face_present", "face_size", "face_motion", "emotion_entropy")
AUDIO_FEATURES = (
    tuple(f"mfcc_mean_{i}" for i in range(audio.N_MFCC))
    + tuple(f"mfcc_std_{i}" for i in range(audio.N_MFCC))
    + ("energy_dbfs_mean", "energy_dbfs_std", "voiced_ratio", "pitch_log2_mean", "pitch_log2_std",
       "pause_ratio"))
TICK_FEATURES = VISUAL_FEATURES + AUDIO_FEATURES
VISUAL_SIZE = len(VISUAL_FEATURES)  # 11
AUDIO_SIZE = len(AUDIO_FEATURES)  # 32
TICK_FEATURE_COUNT = len(TICK_FEATURES)  # 43

TICK_SAMPLES = audio.SAMPLE_RATE_HZ * TICK_MS // 1000  # 1600
# Samples of the previous tick that complete the windows starting inside this tick.
AUDIO_CONTEXT_SAMPLES = audio.WINDOW_SAMPLES - audio.HOP_SAMPLES  # 240
FRAMES_PER_TICK = TICK_SAMPLES // audio.HOP_SAMPLES  # 10
SESSION_SCHEMA = "edge.tick/1"


@dataclass
class VisualTick:
    """What the face pipeline produced during one tick.

    frames: frames analysed in the tick (with or without a face).
    emotion_probs: [n_faces, 7] float, FER order, one row per frame that had a face.
    face_boxes: [n_faces, 4] float, (x, y, width, height) as fractions of the frame size.
    """

    frames: int
    emotion_probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    face_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


def visual_features(tick: VisualTick, previous_centre: Optional[np.ndarray] = None
                    ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """VISUAL_FEATURES of one tick, and the last face centre (to pass to the next tick).

    previous_centre: (x, y) in frame fractions of the last face seen in the previous
    tick, or None. Returns (float32 [VISUAL_SIZE], centre or None).
    """
    probs = np.asarray(tick.emotion_probs, dtype=np.float32).reshape(-1, len(EMOTIONS))
    boxes = np.asarray(tick.face_boxes, dtype=np.float32).reshape(-1, 4)
    if len(probs) != len(boxes):
        raise ValueError(f"visual tick has {len(probs)} emotion rows but {len(boxes)} face boxes")
    out = np.zeros(VISUAL_SIZE, dtype=np.float32)
    n_faces = len(probs)
    if tick.frames <= 0 or n_faces == 0:
        return out, previous_centre
    mean_probs = probs.mean(axis=0)
    out[: len(EMOTIONS)] = mean_probs
    out[7] = min(1.0, n_faces / float(tick.frames))
    out[8] = float(np.mean(np.sqrt(np.clip(boxes[:, 2] * boxes[:, 3], 0.0, None))))
    centres = boxes[:, :2] + boxes[:, 2:] / 2.0
    if previous_centre is not None:
        centres = np.vstack([np.asarray(previous_centre, np.float32)[None, :], centres])
    if len(centres) > 1:
        # Frame diagonal of the unit square is sqrt(2): motion is in diagonals.
        out[9] = float(np.mean(np.linalg.norm(np.diff(centres, axis=0), axis=1)) / np.sqrt(2.0))
    p = np.clip(mean_probs / max(float(mean_probs.sum()), 1e-12), 1e-12, 1.0)
    out[10] = float(-(p * np.log(p)).sum() / np.log(len(EMOTIONS)))
    return out, centres[-1].copy()


def audio_features(samples: np.ndarray) -> np.ndarray:
    """AUDIO_FEATURES of one tick: float32 [AUDIO_SIZE].

    samples: 16 kHz mono float in [-1, 1], the AUDIO_CONTEXT_SAMPLES before the tick
    followed by its TICK_SAMPLES (1840 in all, giving FRAMES_PER_TICK frames). A
    shorter array (start of a stream) is zero-padded at the front; silence is zeros.
    """
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    want = AUDIO_CONTEXT_SAMPLES + TICK_SAMPLES
    if len(samples) > want:
        raise ValueError(f"audio for one tick must have at most {want} samples, got {len(samples)}")
    if len(samples) < want:
        samples = np.concatenate([np.zeros(want - len(samples), np.float32), samples])
    frames = audio.frame_signal(samples)
    coefficients = audio.mfcc(frames)
    energy = audio.frame_energy_dbfs(frames)
    pitch_hz, voiced = audio.frame_pitch_hz(frames)
    out = np.zeros(AUDIO_SIZE, dtype=np.float32)
    n = audio.N_MFCC
    out[:n] = coefficients.mean(axis=0)
    out[n: 2 * n] = coefficients.std(axis=0)
    out[2 * n] = energy.mean()
    out[2 * n + 1] = energy.std()
    out[2 * n + 2] = voiced.mean()
    if voiced.any():
        octaves = np.log2(pitch_hz[voiced] / 100.0)
        out[2 * n + 3] = octaves.mean()
        out[2 * n + 4] = octaves.std()
    out[2 * n + 5] = float(np.mean(energy < audio.SILENCE_DBFS))
    return out


def assemble_tick(visual: np.ndarray, audio_vector: np.ndarray) -> np.ndarray:
    """One tick vector [TICK_FEATURE_COUNT] from its visual and audio parts (checked sizes)."""
    visual = np.asarray(visual, dtype=np.float32).reshape(-1)
    audio_vector = np.asarray(audio_vector, dtype=np.float32).reshape(-1)
    if visual.shape != (VISUAL_SIZE,) or audio_vector.shape != (AUDIO_SIZE,):
        raise ValueError(f"tick parts must be visual [{VISUAL_SIZE}] and audio [{AUDIO_SIZE}], "
                         f"got {list(visual.shape)} and {list(audio_vector.shape)}")
    return np.concatenate([visual, audio_vector])


_SILENCE: list = []


def _silence_features() -> np.ndarray:
    """AUDIO_FEATURES of a silent tick after silence (no microphone), computed once: a
    session without audio would otherwise compute MFCCs and pitch of zeros ten times a
    second (issue 23). assemble_tick copies it, so the cached array is never changed."""
    if not _SILENCE:
        _SILENCE.append(audio_features(np.zeros(AUDIO_CONTEXT_SAMPLES + TICK_SAMPLES, np.float32)))
    return _SILENCE[0]


class TickFeatureAssembler:
    """Turns a stream of (VisualTick, audio samples of the tick) into tick vectors.

    Carries what crosses a tick boundary: the last AUDIO_CONTEXT_SAMPLES of audio and
    the last face centre.
    """

    def __init__(self) -> None:
        self._audio_tail = np.zeros(AUDIO_CONTEXT_SAMPLES, dtype=np.float32)
        self._last_centre: Optional[np.ndarray] = None

    def tick(self, visual: VisualTick, tick_samples: Optional[np.ndarray]) -> np.ndarray:
        """Feature vector [TICK_FEATURE_COUNT] of one tick.

        tick_samples: the TICK_SAMPLES of 16 kHz mono audio of this tick, or None when
        there is no microphone (treated as silence).
        """
        if tick_samples is None:
            if not self._audio_tail.any():  # silence after silence: the same numbers every tick
                visual, self._last_centre = visual_features(visual, self._last_centre)
                return assemble_tick(visual, _silence_features())
            tick_samples = np.zeros(TICK_SAMPLES, dtype=np.float32)
        tick_samples = np.asarray(tick_samples, dtype=np.float32).reshape(-1)
        if len(tick_samples) != TICK_SAMPLES:
            raise ValueError(f"a tick needs {TICK_SAMPLES} audio samples, got {len(tick_samples)}")
        audio_vector = audio_features(np.concatenate([self._audio_tail, tick_samples]))
        self._audio_tail = tick_samples[-AUDIO_CONTEXT_SAMPLES:].copy()
        visual, self._last_centre = visual_features(visual, self._last_centre)
        return assemble_tick(visual, audio_vector)


def write_session_features(path: Path, features: np.ndarray, context: float = 0.0) -> Path:
    """Store one session's tick vectors [T, TICK_FEATURE_COUNT] as a `.npz` session file.

    The file holds `features` (float32), `feature_names`, `tick_ms`, `context` (the
    MoE context flag z the session ran with) and `schema` (SESSION_SCHEMA).
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != TICK_FEATURE_COUNT:
        raise ValueError(f"session features must be [T, {TICK_FEATURE_COUNT}], got {list(features.shape)}")
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, features=features, feature_names=np.array(TICK_FEATURES), tick_ms=np.int64(TICK_MS),
                 context=np.float32(context), schema=np.array(SESSION_SCHEMA))
    return path


def read_session_features(path: Path) -> Tuple[np.ndarray, float]:
    """(features [T, TICK_FEATURE_COUNT] float32, context) of a session file; ValueError if foreign."""
    with np.load(str(path), allow_pickle=False) as data:
        if "schema" not in data or str(data["schema"]) != SESSION_SCHEMA:
            raise ValueError(f"{path} is not an {SESSION_SCHEMA} session file")
        names = tuple(str(n) for n in data["feature_names"])
        if names != TICK_FEATURES:
            raise ValueError(f"{path} has features {names[:3]}... that differ from this version's "
                             f"{TICK_FEATURE_COUNT} tick features")
        return data["features"].astype(np.float32), float(data["context"])
