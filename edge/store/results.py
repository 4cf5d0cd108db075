"""The results database: one row per session, written even when a session is cut short.

    store = ResultStore("out/sessions.sqlite")
    store.save_session(summary)                 # the session summary dict
    store.save_media(session_id, crops, audio)  # only with store_media: true

WAL journal so a reader (a kiosk, a nightly report) never blocks the device writing.
"""
from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Dict, List

import numpy as np

from edge.errors import EdgeError

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    started_utc TEXT NOT NULL,
    duration_s REAL NOT NULL,
    complete INTEGER NOT NULL,
    profile TEXT,
    video_source TEXT,
    audio_source TEXT,
    vote_status TEXT,
    vote_pattern TEXT,
    vote_level TEXT,
    phq8_status TEXT,
    phq8_mu REAL,
    phq8_sigma REAL,
    phq8_band TEXT,
    demo_weights INTEGER NOT NULL,
    summary_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS session_media (
    session_id TEXT PRIMARY KEY REFERENCES sessions(session_id),
    face_crops_npz BLOB,
    audio_pcm16 BLOB,
    audio_rate_hz INTEGER
);
"""


class ResultStore:
    def __init__(self, path: str):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=10.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
            self.db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise EdgeError(f"results database {path} cannot be opened: {exc}") from None

    def save_session(self, summary: Dict) -> None:
        screening = summary.get("screening", {})
        vote = screening.get("emotion_vote", {})
        phq8 = screening.get("phq8", {})
        sources = summary.get("sources", {})
        row = (
            summary["session_id"], summary["started_utc"], float(summary.get("duration_s", 0.0)),
            int(bool(summary.get("complete"))), summary.get("profile"),
            sources.get("video"), sources.get("audio"),
            vote.get("status"), vote.get("pattern"), vote.get("level"),
            phq8.get("status"), phq8.get("mu"), phq8.get("sigma"), phq8.get("band"),
            int("note" in phq8), json.dumps(summary),
        )
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)

    def save_media(self, session_id: str, crops: List[np.ndarray], audio: List[np.ndarray],
                   rate_hz: int = 16000) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, crops=np.stack(crops) if crops else np.zeros((0, 64, 64), np.uint8))
        pcm = np.concatenate(audio).astype("<i2").tobytes() if audio else b""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO session_media VALUES (?,?,?,?)",
                            (session_id, buffer.getvalue(), pcm, rate_hz))

    def sessions(self) -> List[Dict]:
        cursor = self.db.execute("SELECT summary_json FROM sessions ORDER BY started_utc")
        return [json.loads(r[0]) for r in cursor.fetchall()]

    def media_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM session_media").fetchone()[0])

    def journal_mode(self) -> str:
        return str(self.db.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        self.db.close()
