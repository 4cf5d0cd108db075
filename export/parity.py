"""Golden parity: how far a converted file's outputs are from the PyTorch reference."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from edge.backends import open_backend


def run_file(fmt: str, path: Path, inputs: np.ndarray) -> np.ndarray:
    """Run a single-input, single-output model file on each row of `inputs` (batch 1)."""
    backend = open_backend(fmt, path)
    return np.concatenate([backend.run(x[None])[0] for x in inputs])


def classification_parity(reference: np.ndarray, candidate: np.ndarray) -> Dict[str, float]:
    """Top-1 agreement and the largest absolute probability difference."""
    return {
        "n_inputs": int(len(reference)),
        "top1_agreement": float(np.mean(reference.argmax(1) == candidate.argmax(1))),
        "max_abs_prob_diff": float(np.max(np.abs(reference - candidate))),
        "mean_abs_prob_diff": float(np.mean(np.abs(reference - candidate))),
    }
