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


def test_a_version_2_database_gains_the_questionnaires_table(tmp_path):
    """v2 -> v3 in one transaction: the sessions kept, the questionnaire table added; a visit's
    questionnaire stored by name; only consented, complete visits with features are labels."""
    from edge.store.results import MIGRATIONS, SCHEMA_VERSION, _v1_to_v2

    path = tmp_path / "v2.sqlite"
    db = sqlite3.connect(str(path))
    MIGRATIONS[0](db)
    _v1_to_v2(db)
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = ResultStore(str(path))
    assert store.schema_version == SCHEMA_VERSION == 3
    store.save_session(summary("kept"))
    store.save_session(summary("stopped", complete=False))
    store.save_questionnaire({"session_id": "kept", "source": "kiosk", "instrument": "phq8",
                              "given_utc": "2026-11-23T10:01:00Z", "answers": [1, 2, 3, 0, 1, 2, 3, 0],
                              "items_answered": 8, "score": 12, "band": "moderate", "research_consent": True,
                              "features_file": "kept.npz", "shown": {"result": True}})
    store.save_questionnaire({"session_id": "stopped", "source": "kiosk", "instrument": "phq8",
                              "given_utc": "2026-11-23T10:02:00Z", "answers": [1, None] + [None] * 6,
                              "items_answered": 1, "score": None, "research_consent": True,
                              "shown": {"result": False, "why": "stopped"}})
    row = store.questionnaire("kept")
    assert row["score"] == 12 and row["answers_json"] == "[1, 2, 3, 0, 1, 2, 3, 0]" and row["research_consent"] == 1
    assert [p["session_id"] for p in store.labelled_pairs()] == ["kept"]
    store.close()
    assert ResultStore(str(path)).questionnaire("stopped")["items_answered"] == 1  # reopened: no migration again
