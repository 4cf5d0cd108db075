"""The results database: one row per session, written even when a session is cut short.

    store = ResultStore("out/sessions.sqlite")
    store.save_session(summary)                 # the session summary dict (SessionResult.to_dict())
    store.save_media(session_id, crops, audio)  # only with store_media: true
    store.save_questionnaire(record)            # a kiosk visit's PHQ-8 answers, what was shown, consent
    store.sessions()                            # summaries, oldest first
    store.labelled_pairs()                      # consented, complete visits with their features file

WAL journal so a reader (a kiosk, a nightly report) never blocks the device writing.
The schema has a version (`PRAGMA user_version`, SCHEMA_VERSION); opening an older
database migrates it in one transaction, a newer one is refused with one line. Rows are
written and read by column name. The file is created owner-only (0600): it holds health
results (SQLite gives its -wal and -shm files the same mode).
"""
from __future__ import annotations

import errno
import io
import json
import os
import sqlite3
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from edge.errors import EdgeError, first_line
from edge.store.files import FILE_MODE, private_dir

SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 10.0

_V1 = """
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


def _v1_to_v2(db: sqlite3.Connection) -> None:
    """v2: the stop reason, the PHQ-8 interval and an index by start time."""
    for column, kind in (("stop_reason", "TEXT"), ("phq8_low", "REAL"), ("phq8_high", "REAL")):
        db.execute(f"ALTER TABLE sessions ADD COLUMN {column} {kind}")
    db.execute("CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions(started_utc)")


_V3_QUESTIONNAIRES = """
CREATE TABLE IF NOT EXISTS questionnaires (
    session_id TEXT PRIMARY KEY REFERENCES sessions(session_id),
    source TEXT NOT NULL,
    instrument TEXT NOT NULL,
    given_utc TEXT NOT NULL,
    answers_json TEXT NOT NULL,
    items_answered INTEGER NOT NULL,
    score INTEGER,
    band TEXT,
    research_consent INTEGER NOT NULL,
    features_file TEXT,
    shown_json TEXT
)
"""


def _v2_to_v3(db: sqlite3.Connection) -> None:
    """v3: the questionnaire a visitor answered (the PHQ-8: answers, score, band), what the
    visitor was shown, and the research consent that makes it a labelled pair."""
    db.execute(_V3_QUESTIONNAIRES)


# MIGRATIONS[v] turns a version-v database into version v + 1. Version 0 is an empty
# file or a database written before versions existed (its tables are v1's).
MIGRATIONS: Dict[int, Callable[[sqlite3.Connection], None]] = {
    0: lambda db: [db.execute(statement) for statement in _V1.split(";") if statement.strip()],
    1: _v1_to_v2,
    2: _v2_to_v3,
}

QUESTIONNAIRE_COLUMNS = ("session_id", "source", "instrument", "given_utc", "answers_json", "items_answered",
                         "score", "band", "research_consent", "features_file", "shown_json")


def summary_row(summary: Dict) -> Dict:
    """The columns of one session's row, by name, from its summary dict."""
    screening = summary.get("screening", {})
    vote = screening.get("emotion_vote", {})
    phq8 = screening.get("phq8", {})
    sources = summary.get("sources", {})
    interval = phq8.get("interval") or [None, None]
    return {
        "session_id": summary["session_id"], "started_utc": summary["started_utc"],
        "duration_s": float(summary.get("duration_s", 0.0)), "complete": int(bool(summary.get("complete"))),
        "stop_reason": summary.get("stop_reason"), "profile": summary.get("profile"),
        "video_source": sources.get("video"), "audio_source": sources.get("audio"),
        "vote_status": vote.get("status"), "vote_pattern": vote.get("pattern"), "vote_level": vote.get("level"),
        "phq8_status": phq8.get("status"), "phq8_mu": phq8.get("mu"), "phq8_sigma": phq8.get("sigma"),
        "phq8_low": interval[0], "phq8_high": interval[1], "phq8_band": phq8.get("band"),
        "demo_weights": int("note" in phq8), "summary_json": json.dumps(summary),
    }


def _writable(path: Path) -> bool:
    effective = os.access in os.supports_effective_ids  # a setuid service is judged as itself
    return os.access(str(path), os.W_OK, effective_ids=effective)


class ResultStore:
    def __init__(self, path: str, timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        try:
            private_dir(self.path.parent)
            if not self.path.exists():  # create it owner-only before SQLite does (umask-free)
                os.close(os.open(str(self.path), os.O_WRONLY | os.O_CREAT, FILE_MODE))
            self._check_writable()
            self.db = sqlite3.connect(str(self.path), timeout=timeout_s)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise EdgeError(f"results database {path} cannot be opened: {first_line(exc)}") from None

    def _check_writable(self) -> None:
        """Refuse a read-only database before SQLite opens it: SQLite would create its -wal
        and -shm with the database's (read-only) mode, and a read-only -shm left behind
        breaks every later writer even once the database is writable again. Side files
        left read-only (by an older version or another tool) are made owner-only again."""
        if not _writable(self.path):
            raise OSError(errno.EACCES, "the database file is read-only (make it writable by this user)")
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            try:
                if side.exists() and not _writable(side) and side.stat().st_uid == os.geteuid():
                    os.chmod(str(side), FILE_MODE)
            except OSError:
                pass  # gone meanwhile, or not ours: SQLite reports what it cannot use

    def _migrate(self) -> None:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise EdgeError(f"results database {self.path} has schema version {version}, newer than this "
                            f"program's {SCHEMA_VERSION}; upgrade the package")
        if version == SCHEMA_VERSION:
            return
        with self.db:  # one transaction: a failed migration leaves the old version intact
            self.db.execute("BEGIN IMMEDIATE")
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])  # another writer may have done it
            if version == 0 and self._has_table("sessions"):
                version = 1  # written before schema versions: v1's tables
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](self.db)
                version += 1
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _has_table(self, name: str) -> bool:
        found = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        return found is not None

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def save_session(self, summary: Dict) -> None:
        row = summary_row(summary)
        columns = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO sessions ({columns}) VALUES ({marks})", row)

    def save_media(self, session_id: str, crops: List[np.ndarray], audio: List[np.ndarray],
                   rate_hz: int = 16000) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, crops=np.stack(crops) if crops else np.zeros((0, 64, 64), np.uint8))
        pcm = np.concatenate(audio).astype("<i2").tobytes() if audio else b""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO session_media (session_id, face_crops_npz, audio_pcm16, "
                            "audio_rate_hz) VALUES (:id, :crops, :pcm, :rate)",
                            {"id": session_id, "crops": buffer.getvalue(), "pcm": pcm, "rate": rate_hz})

    def save_questionnaire(self, record: Dict) -> None:
        """One visit's questionnaire (QUESTIONNAIRE_COLUMNS; answers_json and shown_json may be
        given as `answers` (a list) and `shown` (a dict)). Its session row must be saved first."""
        row = {name: record.get(name) for name in QUESTIONNAIRE_COLUMNS}
        if "answers" in record:
            row["answers_json"] = json.dumps(list(record["answers"]))
        if "shown" in record:
            row["shown_json"] = json.dumps(record["shown"])
        row["research_consent"] = int(bool(row["research_consent"]))
        row["items_answered"] = int(row["items_answered"] or 0)
        columns = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO questionnaires ({columns}) VALUES ({marks})", row)

    def questionnaire(self, session_id: str) -> Optional[sqlite3.Row]:
        return self.db.execute("SELECT * FROM questionnaires WHERE session_id = ?", (session_id,)).fetchone()

    def labelled_pairs(self, since_utc: str = "") -> List[sqlite3.Row]:
        """Visits whose visitor opted in to research, answered every item and whose features
        were kept: (session_id, score, answers_json, features_file, given_utc), oldest first."""
        return list(self.db.execute(
            "SELECT q.session_id, q.score, q.answers_json, q.features_file, q.given_utc FROM questionnaires q "
            "JOIN sessions s ON s.session_id = q.session_id WHERE q.research_consent = 1 AND q.score IS NOT NULL "
            "AND q.features_file IS NOT NULL AND s.started_utc >= ? ORDER BY s.started_utc", (since_utc,)))

    def rows(self, since_utc: str = "") -> Iterator[sqlite3.Row]:
        """Session rows (columns by name), oldest first, from `since_utc` on."""
        return iter(self.db.execute("SELECT * FROM sessions WHERE started_utc >= ? ORDER BY started_utc",
                                    (since_utc,)))

    def sessions(self) -> List[Dict]:
        return [json.loads(row["summary_json"]) for row in self.rows()]

    def has_session(self, session_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)).fetchone() is not None

    def media_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM session_media").fetchone()[0])

    def journal_mode(self) -> str:
        return str(self.db.execute("PRAGMA journal_mode").fetchone()[0])

    def columns(self) -> Tuple[str, ...]:
        return tuple(row["name"] for row in self.db.execute("PRAGMA table_info(sessions)"))

    def close(self) -> None:
        self.db.close()
