"""Where a session's results go: tick lines and features as ticks close, then the
summary JSON and the database row.

    writer = SessionWriter(config.output, session_id, save_features="s.npz", context=0.0)
    for tick in run:
        writer.tick(tick)
    lost = writer.close(run.result)   # [] when everything was saved (media: result.media)

Every folder and file is checked at construction (a one-line EdgeError before the
session starts) and created owner-only. A session counts as saved only when its row and
its summary are durably written (edge.store.files); whatever failed is named in `lost`
and in the result's warnings, with where the rest went, and the others are still
written.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Dict, List, Optional

from edge.engine.results import SessionResult, Tick
from edge.errors import EdgeError, first_line
from edge.store import ResultStore
from edge.store.features_file import SessionFeatureWriter
from edge.store.files import (
    open_private,
    part_path,
    private_dir,
    publish_part,
    remove_quietly,
    remove_stale_temporaries,
    write_text_atomic,
)


def _writable_dir(path: Path, what: str, create: bool) -> None:
    try:
        if create:
            private_dir(path)
        elif not path.is_dir():
            raise EdgeError(f"{what}: folder {path} does not exist; create it or choose another path")
    except OSError as exc:
        raise EdgeError(f"{what}: folder {path} cannot be created ({exc.strerror or exc}); "
                        "choose another path") from None
    if not os.access(str(path), os.W_OK | os.X_OK):
        raise EdgeError(f"{what}: folder {path} is not writable; choose another path")


def check_outputs(out, save_features: Optional[str]) -> None:
    """One-line EdgeError now, before the session, when an output cannot be written later:
    output.dir (summary, tick lines), the database's folder, the --save-features folder."""
    _writable_dir(Path(out.dir), "output.dir", create=True)
    if out.database:
        if Path(out.database).is_dir():
            raise EdgeError(f"output.database: {out.database} is a folder; give a file path")
        _writable_dir(Path(out.database).parent, "output.database", create=True)
    if save_features:
        target = Path(save_features)
        if target.is_dir():
            raise EdgeError(f"--save-features: {save_features} is a folder; give a file path (.npz)")
        _writable_dir(target.parent if str(target.parent) else Path("."), "--save-features", create=False)


class SessionWriter:
    """One session's outputs; see the module docstring."""

    def __init__(self, out, session_id: str, save_features: Optional[str] = None, context: float = 0.0,
                 summary_path: Optional[str] = None):
        """out: the profile's `output` section; save_features: a `.npz` path for the
        per-tick features (None: not kept); context: the LSTM-MoE context flag written
        with them; summary_path: where the summary goes (default output.dir/<id>.json)."""
        check_outputs(out, save_features)
        # What a killed or crashed run left: a summary's temporary, tick lines' and features' parts.
        remove_stale_temporaries(out.dir)
        if save_features:
            remove_stale_temporaries(Path(save_features).parent)
        self.out = out
        self.session_id = session_id
        self.summary_path = Path(summary_path) if summary_path else Path(out.dir) / f"{session_id}.json"
        self.warnings: List[str] = []
        self._ticks = None
        # Tick lines grow in a part file, renamed when the session is saved, removed when it
        # is lost: no 0-byte or orphan .ticks.jsonl is left by a lost or killed session.
        self.ticks_path = Path(out.dir) / f"{session_id}.ticks.jsonl"
        self._ticks_part = part_path(self.ticks_path)
        self._features: Optional[SessionFeatureWriter] = None
        self._features_lost = False
        # A full disk or inode table shows here, before the session: one line, nothing kept.
        try:
            if out.tick_jsonl:
                self._ticks = open_private(self._ticks_part, "w")
        except OSError as exc:
            raise EdgeError(f"output.dir: cannot write {self.ticks_path} ({exc.strerror or exc}); "
                            "free space or choose another folder") from None
        try:
            if save_features:
                self._features = SessionFeatureWriter(save_features, context)
        except OSError as exc:
            self.abort()
            raise EdgeError(f"--save-features: cannot write {save_features} ({exc.strerror or exc}); "
                            "free space or choose another path") from None

    def tick(self, tick: Tick) -> None:
        """Stream one closed tick to the tick-lines file and the features file (if asked).
        A write that fails stops that stream with a warning; the session goes on."""
        if self._ticks is not None:
            try:
                self._ticks.write(json.dumps(tick.to_dict()) + "\n")
            except OSError as exc:
                self.warnings.append(f"tick lines stopped at tick {tick.index}, NOT saved: {first_line(exc)}")
                self._close_quietly("_ticks")
                remove_quietly(self._ticks_part)  # its last line may be cut in half
        if self._features is not None:
            try:
                self._features.append(tick.features)
            except OSError as exc:
                self.warnings.append(f"features NOT saved to {self._features.path}: {first_line(exc)}")
                self._features.abort()
                self._features = None
                self._features_lost = True  # asked for and lost: the session is not reported saved

    def _close_quietly(self, name: str) -> None:
        handle = getattr(self, name)
        setattr(self, name, None)
        try:
            handle.close()
        except OSError:
            pass

    def abort(self) -> None:
        """The session is not kept (its input was rejected): remove what was streamed."""
        if self._ticks is not None:
            self._close_quietly("_ticks")
        remove_quietly(self._ticks_part)
        if self._features is not None:
            self._features.abort()
            self._features = None

    def close(self, result: SessionResult, extra: Optional[Dict] = None) -> List[str]:
        """Write the features, the database row (with `result.media` when the profile keeps
        media) and the summary, each on its own; the names of those that were not saved
        (also added to the result's warnings). extra: sections an application adds to the
        summary file (the nightly job's voice measures)."""
        lost: List[str] = ["features"] if self._features_lost else []
        ticks_done = False
        if self._ticks is not None:
            try:
                self._ticks.flush()
                os.fsync(self._ticks.fileno())
                self._ticks.close()
                ticks_done = True
            except OSError as exc:
                self._close_quietly("_ticks")
                self.warnings.append(f"tick lines NOT saved: {first_line(exc)}")
            self._ticks = None
        if self._features is not None:
            try:
                result.outputs["features_file"] = str(self._features.close())
            except OSError as exc:
                lost.append("features")
                self.warnings.append(f"features NOT saved to {self._features.path}: {first_line(exc)}")
            self._features = None
        result.outputs["summary_file"] = str(self.summary_path)  # the row names where its summary is
        if self.out.database:
            try:
                self._save_row(result)
                result.outputs["database"] = self.out.database
            except (EdgeError, OSError, sqlite3.Error) as exc:
                lost.append("database row")
                self.warnings.append(f"database row NOT saved to {self.out.database}: {first_line(exc)}")
        result.warnings.extend(self.warnings)
        self.warnings = []
        # The summary is written last and carries every warning, the lost row's included.
        try:
            summary = result.to_dict()
            summary.update(extra or {})
            write_text_atomic(self.summary_path, json.dumps(summary, indent=2))
        except OSError as exc:
            del result.outputs["summary_file"]
            lost.append("summary")
            result.warnings.append(f"summary NOT saved to {self.summary_path}: {first_line(exc)}")
        self._publish_ticks(ticks_done and "summary" not in lost, result)
        return lost

    def _publish_ticks(self, keep: bool, result: SessionResult) -> None:
        """The tick lines under their real name when the session's summary was saved (they
        are its detail); removed otherwise, as after a write that failed."""
        if keep:
            try:
                publish_part(self._ticks_part, self.ticks_path)
                return
            except OSError as exc:
                result.warnings.append(f"tick lines NOT saved to {self.ticks_path}: {first_line(exc)}")
        remove_quietly(self._ticks_part)

    def _save_row(self, result: SessionResult) -> None:
        store = ResultStore(self.out.database)
        try:
            summary = result.to_dict()
            summary["database"] = self.out.database
            store.save_session(summary)
            if self.out.store_media and result.media is not None:
                store.save_media(result.session_id, list(result.media.face_crops), list(result.media.audio_pcm16))
        finally:
            store.close()
