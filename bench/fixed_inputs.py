"""The fixed inputs every benchmark run uses, so speed is measured beside quality.

`bench/fixed_inputs.npz` (committed, about 80 KB) holds:
  faces_lfw     uint8 [40, 25, 25]  LFW faces 60-99 of scikit-image's `lfw_subset` (the
                                    faces export/ keeps out of quantizer calibration)
  face_astronaut uint8 [S, S]       the astronaut portrait's face, cut with the crop rule
  ticks         float16 [2, 300, 43] two synthetic 30 s sessions of edge.features.tick
                                    vectors (export.data.synthetic, seed 6; not training
                                    data), stored as float16 to halve the file: they are
                                    read back as float32 and every file gets the same values

The device needs only numpy and OpenCV to read them (`load_faces`, `load_ticks`);
`python bench/fixed_inputs.py` rebuilds the file on a host with the `train` extra.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FIXED_INPUTS = Path(__file__).resolve().parent / "fixed_inputs.npz"
SESSION_SEED = 6
SESSION_TICKS = 300


def _load() -> dict:
    with np.load(FIXED_INPUTS) as data:
        return {key: data[key] for key in data.files}


def load_faces(input_size: int = 64) -> np.ndarray:
    """Preprocessed faces float32 [82, 1, S, S] in [-1, 1]: the 41 fixed faces and their
    mirror images, prepared by the device's own `edge.features.face.preprocess_faces`."""
    from edge.features.face import preprocess_faces

    data = _load()
    crops = list(data["faces_lfw"]) + [data["face_astronaut"]]
    crops = crops + [np.ascontiguousarray(c[:, ::-1]) for c in crops]
    return preprocess_faces(crops, input_size)


def load_ticks() -> np.ndarray:
    """Tick vectors float32 [sessions, ticks, 43] (100 ms apart)."""
    return _load()["ticks"].astype(np.float32)


def rebuild(path: Path = FIXED_INPUTS) -> Path:
    """Write the .npz from scikit-image's data and the synthetic generator (host side)."""
    from export.data.faces import TEST_IDS, astronaut_face, lfw_faces
    from export.data.synthetic import synthetic_sessions

    faces = lfw_faces()[list(TEST_IDS)]
    sessions = synthetic_sessions(2, steps=SESSION_TICKS, config_name="edge", seed=SESSION_SEED)
    ticks = np.stack([s.features for s in sessions]).astype(np.float32)
    np.savez_compressed(path, faces_lfw=faces, face_astronaut=astronaut_face(),
                        ticks=ticks.astype(np.float16))
    return path


if __name__ == "__main__":
    print(f"wrote {rebuild()}")
