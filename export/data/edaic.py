"""E-DAIC layout loader: OpenFace AU intensities + eGeMAPS audio, PHQ-8 from the split CSVs.

Layout (as distributed):

    ROOT/train_split.csv, dev_split.csv, test_split.csv   Participant_ID, ..., PHQ_Score, ...
    ROOT/<id>_P/features/<id>_OpenFace2.1.0_Pose_gaze_AUs.csv   30 fps, AU01_r ... AU45_r
    ROOT/<id>_P/features/<id>_OpenSMILE2.3.0_egemaps.csv        100 Hz, name;frameTime;23 LLDs

Each participant becomes one sequence for the `paper` config: the 17 AU intensities of
every `stride`-th video frame (stride 3: 30 fps -> 10 steps a second, our tick rate)
followed by the first eGeMAPS row at or after it in time (the last row past the end).
Context z is 1 for participants 600 and above (interviews led by the autonomous agent)
and 0 below (human-controlled agent).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List

import numpy as np

from edge.errors import EdgeError
from export.data.sequences import LabelledSequence
from export.data.synthetic import PAPER_AUS

SPLITS = ("train", "dev", "test")
AUTONOMOUS_FROM_ID = 600


def _read_table(path: Path) -> Dict[str, np.ndarray]:
    """Numeric columns of a CSV (',' or ';'), keyed by stripped header name."""
    text = path.read_text()
    delimiter = ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    header = [h.strip().strip("'\"") for h in rows[0]]
    columns: Dict[str, np.ndarray] = {}
    for i, name in enumerate(header):
        try:
            columns[name] = np.array([float(r[i]) for r in rows[1:] if len(r) > i], dtype=np.float64)
        except ValueError:
            continue  # text columns (e.g. eGeMAPS `name`)
    return columns


def split_scores(root: Path, split: str) -> Dict[int, float]:
    """Participant id -> PHQ-8 score from ROOT/<split>_split.csv."""
    path = Path(root) / f"{split}_split.csv"
    if not path.is_file():
        raise EdgeError(f"E-DAIC split file {path} is missing; expected {', '.join(SPLITS)} split CSVs")
    table = _read_table(path)
    score_key = next((k for k in table if k.lower().replace("_", "") in ("phqscore", "phq8score")), None)
    if "Participant_ID" not in table or score_key is None:
        raise EdgeError(f"{path} needs the columns Participant_ID and PHQ_Score")
    return {int(p): float(s) for p, s in zip(table["Participant_ID"], table[score_key])}


def load_participant(root: Path, participant: int, score: float, stride: int = 3) -> LabelledSequence:
    """One participant's aligned [T, 17 + audio] sequence (see the module docstring)."""
    folder = Path(root) / f"{participant}_P" / "features"
    au_path = folder / f"{participant}_OpenFace2.1.0_Pose_gaze_AUs.csv"
    audio_path = folder / f"{participant}_OpenSMILE2.3.0_egemaps.csv"
    for path in (au_path, audio_path):
        if not path.is_file():
            raise EdgeError(f"E-DAIC feature file {path} is missing")
    aus = _read_table(au_path)
    missing = [a for a in PAPER_AUS if a not in aus]
    if missing or "timestamp" not in aus:
        raise EdgeError(f"{au_path} lacks columns {missing or ['timestamp']}")
    audio = _read_table(audio_path)
    if "frameTime" not in audio:
        raise EdgeError(f"{audio_path} lacks the frameTime column")
    audio_names = [k for k in audio if k != "frameTime"]
    video_t = aus["timestamp"][::stride]
    visual = np.stack([aus[a][::stride] for a in PAPER_AUS], axis=1)
    audio_t = audio["frameTime"]
    at_or_after = np.clip(np.searchsorted(audio_t, video_t), 0, len(audio_t) - 1)
    acoustic = np.stack([audio[k] for k in audio_names], axis=1)[at_or_after]
    features = np.concatenate([visual, acoustic], axis=1).astype(np.float32)
    context = 1.0 if participant >= AUTONOMOUS_FROM_ID else 0.0
    return LabelledSequence(str(participant), features, context, score)


def load_edaic(root: Path, stride: int = 3) -> Dict[str, List[LabelledSequence]]:
    """{'train': [...], 'dev': [...], 'test': [...]} of labelled sequences from an E-DAIC tree."""
    out = {}
    for split in SPLITS:
        scores = split_scores(root, split)
        out[split] = [load_participant(root, p, s, stride) for p, s in sorted(scores.items())]
    return out
