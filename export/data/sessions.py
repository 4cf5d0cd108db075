"""A clinic's own labelled sessions: tick-feature files written on the device.

Layout: DIR/labels.csv with columns `session,phq8` (optionally `context`), and one
`DIR/<session>.npz` per row, in the format of `edge.features.tick.write_session_features`
(the `edge` config's tick vectors, 100 ms apart). A `context` column overrides the
context stored in the file.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import List

from edge.errors import EdgeError
from edge.features.tick import read_session_features
from export.data.sequences import LabelledSequence


def load_sessions(folder: Path) -> List[LabelledSequence]:
    """Labelled tick sequences of every session listed in DIR/labels.csv."""
    folder = Path(folder)
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise EdgeError(f"{labels} is missing; it lists session,phq8 per recorded session")
    out = []
    with open(labels, newline="") as f:
        for row in csv.DictReader(f):
            if "session" not in row or "phq8" not in row:
                raise EdgeError(f"{labels} needs the columns session and phq8")
            path = folder / f"{row['session']}.npz"
            if not path.is_file():
                raise EdgeError(f"session file {path} listed in {labels} is missing")
            try:
                features, context = read_session_features(path)
            except ValueError as exc:
                raise EdgeError(str(exc)) from None
            if row.get("context") not in (None, ""):
                context = float(row["context"])
            out.append(LabelledSequence(row["session"], features, context, float(row["phq8"])))
    if not out:
        raise EdgeError(f"{labels} lists no sessions")
    return out
