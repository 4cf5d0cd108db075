"""The results database: WAL, one row per session, no raw media unless asked."""
from __future__ import annotations

import sqlite3

import numpy as np

from edge.store import ResultStore


def summary(session_id="s1", complete=True):
    return {"session_id": session_id, "started_utc": "2026-11-23T10:00:00Z", "duration_s": 12.5,
            "complete": complete, "profile": "desktop", "sources": {"video": "v.mp4", "audio": "a.wav"},
            "screening": {"emotion_vote": {"status": "ok", "pattern": "PPN", "level": "Low"},
                          "phq8": {"status": "ok", "mu": 6.5, "sigma": 1.2, "band": "mild",
                                   "note": "demo weights, not for screening"}}}


def test_sessions_are_stored_in_wal_mode(tmp_path):
    path = tmp_path / "db" / "sessions.sqlite"
    store = ResultStore(str(path))
    assert store.journal_mode() == "wal"
    store.save_session(summary("a"))
    store.save_session(summary("b", complete=False))
    store.close()
    db = sqlite3.connect(str(path))
    rows = db.execute("SELECT session_id, complete, vote_level, phq8_band, demo_weights FROM sessions "
                      "ORDER BY session_id").fetchall()
    assert rows == [("a", 1, "Low", "mild", 1), ("b", 0, "Low", "mild", 1)]
    assert db.execute("SELECT COUNT(*) FROM session_media").fetchone()[0] == 0
    assert ResultStore(str(path)).sessions()[0]["screening"]["emotion_vote"]["pattern"] == "PPN"


def test_media_only_when_saved_explicitly(tmp_path):
    store = ResultStore(str(tmp_path / "m.sqlite"))
    store.save_session(summary("m"))
    store.save_media("m", [np.zeros((64, 64), np.uint8)] * 2, [np.ones(160, np.int16)])
    assert store.media_count() == 1
    blob, pcm = store.db.execute("SELECT face_crops_npz, audio_pcm16 FROM session_media").fetchone()
    assert len(pcm) == 320 and len(blob) > 0
