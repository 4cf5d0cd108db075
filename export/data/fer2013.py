"""The FER2013 CSV layout: `emotion,pixels,Usage` (48x48 grey faces, 7 emotions).

Splits by `Usage`: Training -> train, PublicTest -> validation (model selection and
early stopping), PrivateTest -> test. The test split must stay out of model selection:
it is only read for the final report.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from edge.errors import EdgeError

SIDE = 48
SPLITS = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
N_CLASSES = 7


def load_fer2013_csv(path: Path) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """{split: (images uint8 [N, 48, 48], labels int64 [N])}; one-line EdgeError on a bad file."""
    if not path.is_file():
        raise EdgeError(f"FER2013 CSV {path} does not exist")
    images: Dict[str, list] = {name: [] for name in SPLITS.values()}
    labels: Dict[str, list] = {name: [] for name in SPLITS.values()}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise EdgeError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected emotion,pixels,Usage")
        for line, row in enumerate(reader, start=2):
            split = SPLITS.get(row["Usage"])
            if split is None:
                raise EdgeError(f"{path}:{line}: Usage {row['Usage']!r} is not one of {', '.join(SPLITS)}")
            try:
                label = int(row["emotion"])
                pixels = np.asarray(row["pixels"].split(), dtype=np.float32)
            except ValueError:
                raise EdgeError(f"{path}:{line}: emotion or pixels is not numeric") from None
            if not 0 <= label < N_CLASSES or pixels.size != SIDE * SIDE:
                raise EdgeError(f"{path}:{line}: need emotion 0-6 and {SIDE * SIDE} pixels, "
                                f"got emotion {label} and {pixels.size} pixels")
            images[split].append(np.clip(pixels, 0, 255).astype(np.uint8).reshape(SIDE, SIDE))
            labels[split].append(label)
    return {name: (np.asarray(images[name], dtype=np.uint8).reshape(-1, SIDE, SIDE),
                   np.asarray(labels[name], dtype=np.int64)) for name in SPLITS.values()}
