"""The results database: one row per session, written even when a session is cut short.

    store = ResultStore("out/sessions.sqlite")
    store.save_session(summary)                 # the session summary dict (SessionResult.to_dict())
    store.save_media(session_id, crops, audio)  # only with store_media: true
    store.sessions()                            # summaries, oldest first

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
from typing import Callable, Dict, Iterator, List, Tuple

import numpy as np

from edge.errors import EdgeError, first_line
from edge.store.files import FILE_MODE, private_dir

SCHEMA_VERSION = 2
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


# MIGRATIONS[v] turns a version-v database into version v + 1. Version 0 is an empty
# file or a database written before versions existed (its tables are v1's).
MIGRATIONS: Dict[int, Callable[[sqlite3.Connection], None]] = {
    0: lambda db: [db.execute(statement) for statement in _V1.split(";") if statement.strip()],
    1: _v1_to_v2,
}


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
