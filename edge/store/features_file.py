"""A session's tick vectors streamed to disk as they close (`--save-features`).

The `.npz` layout is `edge.features.tick.write_session_features`'s (read back by
`read_session_features` and the trainer). Rows go to an owner-only `.part` file as
ticks close, so a session of any length keeps none of them in memory; `close()` writes
the `.npz` around them (copied in 1 MB blocks) and renames it into place.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Union

import numpy as np

from edge.features.tick import SESSION_SCHEMA, TICK_FEATURE_COUNT, TICK_FEATURES, TICK_MS
from edge.store.files import open_private, part_path, write_atomic

_BLOCK_BYTES = 1 << 20


class SessionFeatureWriter:
    def __init__(self, path: Union[str, Path], context: float = 0.0):
        self.path = Path(path)
        self.context = float(context)
        self.rows = 0
        self._part = part_path(self.path)  # .<name>.<pid>.part: a killed run's is removed at the next start
        self._file = open_private(self._part, "wb")

    def append(self, vector: np.ndarray) -> None:
        row = np.asarray(vector, "<f4").reshape(-1)
        if row.shape != (TICK_FEATURE_COUNT,):
            raise ValueError(f"a tick vector has {TICK_FEATURE_COUNT} values, got {row.shape}")
        self._file.write(row.tobytes())
        self.rows += 1

    def close(self) -> Path:
        """Write the `.npz` (atomically) and remove the `.part` file; OSError if it fails."""
        self._file.close()
        try:
            write_atomic(self.path, self._write_npz, binary=True)
        finally:
            self._remove_part()
        return self.path

    def abort(self) -> None:
        """Drop what was streamed (the session's features are not wanted after all)."""
        self._file.close()
        self._remove_part()

    def _remove_part(self) -> None:
        try:
            os.unlink(str(self._part))
        except OSError:
            pass

    def _write_npz(self, f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("features.npy", "w", force_zip64=True) as member:
                header = {"descr": "<f4", "fortran_order": False, "shape": (self.rows, TICK_FEATURE_COUNT)}
                np.lib.format.write_array_header_1_0(member, header)
                with open(str(self._part), "rb") as rows:
                    for block in iter(lambda: rows.read(_BLOCK_BYTES), b""):
                        member.write(block)
            extras = {"feature_names": np.array(TICK_FEATURES), "tick_ms": np.int64(TICK_MS),
                      "context": np.float32(self.context), "schema": np.array(SESSION_SCHEMA)}
            for name, value in extras.items():
                with archive.open(name + ".npy", "w") as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
