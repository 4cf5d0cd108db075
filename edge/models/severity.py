"""The LSTM-MoE's wrapper: a streaming PHQ-8 estimate, advanced a tick (or a chunk) at a time.

    stream = SeverityStream.from_manifest(backend="onnx", precision="fp32")
    for vector in tick_vectors:                  # edge.features.tick vectors, 100 ms apart
        estimate = stream.step(vector)           # mu, sigma (PHQ-8 points), band
    stream.reset()                               # next session

The model file takes (features [1, T, D], context [1, 1], h [L, 1, H], c [L, 1, H]) and
returns (mu [1, T], sigma [1, T], h, c); the (h, c) it returns is fed to the next call,
so a session run chunk by chunk gives the one-shot outputs. A file exported for one
step at a time (TFLite, T = 1) is looped over the chunk. The PHQ-8 scale and bands are
edge.rules.phq8.
"""
from __future__ import annotations

import re
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from edge import DEMO_WEIGHTS_NOTICE
from edge.backends import Backend
from edge.errors import EdgeError
from edge.features import audio
from edge.features.tick import FRAMES_PER_TICK, TICK_MS
from edge.manifest import ModelManifest, load_manifest
from edge.rules.phq8 import PHQ8_MAX, phq8_band

MODEL_NAME = "lstm_moe"
_IO_NAMES = ("mu", "sigma", "h", "c")


def check_audio_contract(manifest: ModelManifest) -> None:
    """Refuse a model whose audio contract (rate, window, hop, FFT, mel and MFCC sizes, tick)
    differs from what edge.features computes, naming the first mismatch."""
    ours = {"sample_rate_hz": audio.SAMPLE_RATE_HZ, "window_samples": audio.WINDOW_SAMPLES,
            "hop_samples": audio.HOP_SAMPLES, "n_fft": audio.N_FFT, "n_mels": audio.N_MELS,
            "n_mfcc": audio.N_MFCC, "frames_per_tick": FRAMES_PER_TICK}
    wanted = dict(manifest.preprocess.get("audio") or {})
    wanted.setdefault("tick_ms", manifest.preprocess.get("tick_ms"))
    ours["tick_ms"] = TICK_MS
    for key, value in ours.items():
        if wanted.get(key) != value:
            raise EdgeError(f"manifest of {manifest.name}: audio {key} is {wanted.get(key)!r}, but this runtime "
                            f"computes {value!r}; update the package or the model")


class SeverityEstimate(NamedTuple):
    """mu and sigma in PHQ-8 points (mu clipped to 0..24), its band, and the step count."""

    mu: float
    sigma: float
    band: str
    steps: int
    note: str = ""


def io_order(specs, positions: Sequence[int]) -> List[int]:
    """Indices of (features, context, h, c) or (mu, sigma, h, c) among a file's tensors."""
    names = [s.name for s in specs]
    if all(any(n == want for n in names) for want in ("mu", "sigma", "h", "c")):
        return [names.index(want) for want in _IO_NAMES]
    if all(any(n == want for n in names) for want in ("features", "context", "h0", "c0")):
        return [names.index(want) for want in ("features", "context", "h0", "c0")]
    # Converters name signature tensors args_N / output_N; keep their numeric order.
    keys = []
    for position, name in zip(positions, names):
        match = re.search(r"(?:args|output)_(\d+)", name)
        keys.append((int(match.group(1)) if match else position, position))
    return [position for _, position in sorted(keys)]


class SeverityModel:
    """One LSTM-MoE file behind a backend, with input checks. Stateless: the caller
    passes and receives (h, c)."""

    def __init__(self, backend: Backend, feature_size: int, state_shape: Tuple[int, int, int],
                 context: float = 0.0):
        self.backend = backend
        self.feature_size = int(feature_size)
        self.state_shape = tuple(int(s) for s in state_shape)
        self.context = float(context)
        self._in = io_order(backend.inputs, range(len(backend.inputs)))
        self._out = io_order(backend.outputs, range(len(backend.outputs)))
        steps = backend.inputs[self._in[0]].shape[1]
        # A file with a fixed time axis of 1 (TFLite) is run one step per call.
        self.steps_per_call = 1 if steps == 1 else 0

    def initial_state(self) -> Tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.state_shape, np.float32), np.zeros(self.state_shape, np.float32)

    def check_features(self, features: np.ndarray) -> np.ndarray:
        """features as float32 [1, T, D]; ValueError naming the input when it is unusable."""
        array = np.asarray(features, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, None, :]
        elif array.ndim == 2:
            array = array[None]
        d = self.feature_size
        if array.ndim != 3 or array.shape[0] != 1 or array.shape[2] != d:
            raise ValueError(f"features must have shape [T, {d}] (or [{d}] for one tick, or [1, T, {d}]), "
                             f"got {list(np.shape(features))}")
        if array.shape[1] == 0:
            raise ValueError(f"features is an empty sequence (shape {list(array.shape)}); "
                             f"give at least one tick of [{d}] values")
        if not np.all(np.isfinite(array)):
            bad = np.argwhere(~np.isfinite(array))[0]
            raise ValueError(f"features contain NaN or inf (first at tick {bad[1]}, feature {bad[2]}); "
                             f"expected finite values of shape [T, {d}]")
        return array

    def check_state(self, name: str, state: np.ndarray) -> np.ndarray:
        array = np.asarray(state, dtype=np.float32)
        if array.shape != self.state_shape:
            raise ValueError(f"state {name} must have shape {list(self.state_shape)}, "
                             f"got {list(array.shape)}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"state {name} contains NaN or inf; reset the stream")
        return array

    def run(self, features: np.ndarray, h: np.ndarray, c: np.ndarray
            ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """mu [T], sigma [T] (PHQ-8 points, raw model output) and the new (h, c)."""
        x = self.check_features(features)
        h = self.check_state("h", h)
        c = self.check_state("c", c)
        context = np.full((1, 1), self.context, np.float32)
        mus, sigmas = [], []
        chunks = [x[:, t:t + 1] for t in range(x.shape[1])] if self.steps_per_call else [x]
        for chunk in chunks:
            feeds = [None] * 4
            for array, slot in zip((chunk, context, h, c), self._in):
                feeds[slot] = array
            outputs = self.backend.run(*feeds)
            mu, sigma, h, c = (outputs[i] for i in self._out)
            mus.append(np.asarray(mu, np.float32).reshape(-1))
            sigmas.append(np.asarray(sigma, np.float32).reshape(-1))
        return np.concatenate(mus), np.concatenate(sigmas), h, c


class SeverityStream:
    """A session's running PHQ-8 estimate: carries (h, c) from one call to the next."""

    def __init__(self, model: SeverityModel, demo_weights: bool = True):
        self.model = model
        self.entry: dict = {}  # the manifest's file entry, when opened from one
        self.precision_reason = ""  # why this file (edge.precision), when a loader chose it
        self.note = DEMO_WEIGHTS_NOTICE if demo_weights else ""
        self.reset()

    @classmethod
    def from_manifest(cls, backend: str = "onnx", precision: str = "fp32",
                      models_dir: Optional[str] = None, threads: int = 1,
                      context: Optional[float] = None) -> SeverityStream:
        """Open the shipped LSTM-MoE file for a backend/precision (sha256 checked).

        context: the MoE context flag z (default: the manifest's `default_context`).
        """
        manifest = load_manifest(MODEL_NAME, models_dir)
        return cls.from_file(manifest, manifest.find_file(backend, precision), threads, context)

    @classmethod
    def from_file(cls, manifest: ModelManifest, entry: dict, threads: int = 1,
                  context: Optional[float] = None, providers: Optional[Sequence[str]] = None) -> SeverityStream:
        spec = manifest.data
        check_audio_contract(manifest)
        try:
            feature_size = int(spec["features"]["size"])
            state_shape = tuple(spec["state"]["shape"])
        except (KeyError, TypeError):
            raise EdgeError(f"manifest of {MODEL_NAME} lacks features.size or state.shape; "
                            "rebuild it") from None
        chosen = spec.get("default_context", 0.0) if context is None else context
        backend = manifest.open(entry, threads=threads, providers=providers)
        model = SeverityModel(backend, feature_size, state_shape, chosen)
        stream = cls(model, demo_weights=manifest.demo_weights)
        stream.entry = entry
        return stream

    def reset(self) -> None:
        """Start a new session (zero state)."""
        self.h, self.c = self.model.initial_state()
        self.steps = 0
        self.last: Optional[SeverityEstimate] = None

    def step(self, features: np.ndarray) -> SeverityEstimate:
        """Advance by one tick [D] or a chunk [T, D]; the estimate after the last tick.

        Raises ValueError on unusable input (the state is left unchanged) and
        EdgeError if the model returns a non-finite value (the stream is reset).
        """
        mu, sigma, h, c = self.model.run(features, self.h, self.c)
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))
                and np.all(np.isfinite(h)) and np.all(np.isfinite(c))):
            self.reset()
            raise EdgeError("the severity model returned NaN or inf; the stream was reset")
        self.h, self.c = np.asarray(h, np.float32), np.asarray(c, np.float32)
        self.steps += len(mu)
        score = float(np.clip(mu[-1], 0.0, PHQ8_MAX))
        sigma_last = float(max(sigma[-1], 0.0))
        self.last = SeverityEstimate(score, sigma_last, phq8_band(score), self.steps, self.note)
        return self.last

    def window_estimate(self, window: np.ndarray) -> SeverityEstimate:
        """The non-streaming alternative: re-run the model over a whole window [T, D]
        from a zero state (what a device without carried state would do every tick).
        Leaves this stream's state alone."""
        h, c = self.model.initial_state()
        mu, sigma, _, _ = self.model.run(window, h, c)
        score = float(np.clip(mu[-1], 0.0, PHQ8_MAX)) if np.isfinite(mu[-1]) else float("nan")
        if not np.isfinite(score) or not np.isfinite(sigma[-1]):
            raise EdgeError("the severity model returned NaN or inf for the window")
        return SeverityEstimate(score, float(sigma[-1]), phq8_band(score), len(mu), self.note)
