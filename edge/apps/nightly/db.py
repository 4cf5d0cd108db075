"""The nightly job's database: the ledger of recordings and the trend per person and day.

It lives in the same SQLite file as the session rows (`output.database`, or `--db`): the
`sessions` table is edge.store.ResultStore's (versioned by `PRAGMA user_version`), the
tables here are versioned by their own row in `nightly_meta` so the two schemas move
independently. WAL journal, owner-only file.

Exactly once: a recording's row goes `started` (attempts + 1, committed before any work)
and then `done` or `quarantined` in ONE transaction together with its session row and
its day's trend row. A job killed in between leaves `started`; the next run does the
recording again and commits it once. A recording that was `started` MAX_ATTEMPTS times
without finishing (it kills the job) is quarantined.

Labels: a PHQ-8 questionnaire given beside a recording (the sidecar's `phq8`, issue 19) is
stored in `labels`, one row per person and date (a later recording's answers for the same
date replace it), in the same transaction as the recording. The reports draw it beside the
model's estimate; it is what the person answered, not a model output.
"""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Callable, Dict, Iterator, List, Optional

from edge import EdgeError, ResultStore, first_line, summary_row

NIGHTLY_SCHEMA_VERSION = 2
MAX_ATTEMPTS = 3

# Day columns that hold a vocal measure, with the VoiceResult field each one averages.
VOICE_COLUMNS = {
    "pause_ratio": "pause_ratio",
    "speaking_rate": "voiced_segments_per_speech_sec",
    "f0_mean_st": "f0_semitone_mean",
    "f0_var": "f0_semitone_stddev_norm",
    "loudness": "loudness_mean",
    "jitter": "jitter_local",
    "shimmer_db": "shimmer_local_db",
}

_V1 = """
CREATE TABLE IF NOT EXISTS nightly_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    key TEXT PRIMARY KEY,
    person TEXT,
    captured TEXT,
    day TEXT,
    size_bytes INTEGER,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    session_id TEXT,
    duration_s REAL,
    speech_s REAL,
    phq8_status TEXT,
    phq8_mu REAL,
    phq8_sigma REAL,
    phq8_reason TEXT,
    vote_status TEXT,
    vote_level TEXT,
    voice_json TEXT,
    reason TEXT,
    summary_file TEXT,
    features_file TEXT,
    run_id TEXT,
    updated_utc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_by_person_day ON recordings(person, day);
CREATE TABLE IF NOT EXISTS days (
    person TEXT NOT NULL,
    day TEXT NOT NULL,
    recordings INTEGER NOT NULL,
    audio_s REAL NOT NULL,
    phq8_n INTEGER NOT NULL,
    phq8_mu REAL,
    phq8_sigma REAL,
    pause_ratio REAL,
    speaking_rate REAL,
    f0_mean_st REAL,
    f0_var REAL,
    loudness REAL,
    jitter REAL,
    shimmer_db REAL,
    PRIMARY KEY (person, day)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_utc TEXT NOT NULL,
    finished_utc TEXT,
    processed INTEGER NOT NULL DEFAULT 0,
    quarantined INTEGER NOT NULL DEFAULT 0
);
"""

_V2 = """
CREATE TABLE IF NOT EXISTS labels (
    person TEXT NOT NULL,
    date TEXT NOT NULL,
    instrument TEXT NOT NULL,
    answers_json TEXT NOT NULL,
    total INTEGER NOT NULL,
    recording TEXT NOT NULL,
    stored_utc TEXT NOT NULL,
    PRIMARY KEY (person, date, instrument)
);
ALTER TABLE days ADD COLUMN snr_db REAL;
ALTER TABLE days ADD COLUMN reasons_json TEXT;
"""

MIGRATIONS: Dict[int, Callable[[sqlite3.Connection], None]] = {
    0: lambda db: [db.execute(s) for s in _V1.split(";") if s.strip()],
    1: lambda db: [db.execute(s) for s in _V2.split(";") if s.strip()],
}


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class NightlyStore:
    """Ledger + trends; see the module docstring."""

    def __init__(self, path: str):
        self.path = path
        ResultStore(path).close()  # creates the file owner-only and the `sessions` table at its version
        try:
            self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            raise EdgeError(f"nightly database {path} cannot be opened: {first_line(exc)}") from None

    def _version(self) -> int:
        try:
            row = self.db.execute("SELECT value FROM nightly_meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        version = self._version()
        if version > NIGHTLY_SCHEMA_VERSION:
            raise EdgeError(f"nightly database {self.path} has nightly schema {version}, newer than this "
                            f"program's {NIGHTLY_SCHEMA_VERSION}; upgrade the package")
        if version == NIGHTLY_SCHEMA_VERSION:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()
            while version < NIGHTLY_SCHEMA_VERSION:
                MIGRATIONS[version](self.db)
                version += 1
            self.db.execute("INSERT OR REPLACE INTO nightly_meta VALUES ('schema_version', ?)", (str(version),))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # ----- ledger --------------------------------------------------------------------
    def state_of(self, key: str) -> Optional[sqlite3.Row]:
        return self.db.execute("SELECT * FROM recordings WHERE key=?", (key,)).fetchone()

    def begin(self, key: str, person: Optional[str], captured: Optional[str], day: Optional[str],
              size_bytes: int, run_id: str) -> int:
        """Mark a recording started (committed now); returns its attempt number."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.state_of(key)
            attempts = (int(row["attempts"]) if row else 0) + 1
            # INSERT OR IGNORE + UPDATE rather than an upsert: SQLite 3.22 (Ubuntu 18.04, Jetson) has none.
            self.db.execute("INSERT OR IGNORE INTO recordings (key, person, captured, day, state, updated_utc)"
                            " VALUES (?, ?, ?, ?, 'started', ?)", (key, person, captured, day, utc_now()))
            self.db.execute("UPDATE recordings SET state='started', attempts=?, run_id=?, size_bytes=?,"
                            " updated_utc=? WHERE key=?", (attempts, run_id, size_bytes, utc_now(), key))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return attempts

    def commit_done(self, key: str, outcome: Dict, summary: Dict, run_id: str) -> None:
        """The recording's results, its session row and its day's trend, in one transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "UPDATE recordings SET state='done', session_id=:session_id, duration_s=:duration_s,"
                " speech_s=:speech_s, phq8_status=:phq8_status, phq8_mu=:phq8_mu, phq8_sigma=:phq8_sigma,"
                " phq8_reason=:phq8_reason, vote_status=:vote_status, vote_level=:vote_level,"
                " voice_json=:voice_json, reason=NULL, summary_file=:summary_file, features_file=:features_file,"
                " run_id=:run_id, updated_utc=:now WHERE key=:key",
                dict(outcome, voice_json=json.dumps(outcome["voice"]), run_id=run_id, now=utc_now(), key=key))
            row = summary_row(summary)
            columns = ", ".join(row)
            self.db.execute(f"INSERT OR REPLACE INTO sessions ({columns}) VALUES "
                            f"({', '.join(':' + c for c in row)})", row)
            person, day = self.db.execute("SELECT person, day FROM recordings WHERE key=?", (key,)).fetchone()
            self._update_day(person, day)
            label = outcome.get("phq8_label")
            if label is not None:
                self.db.execute("INSERT OR REPLACE INTO labels (person, date, instrument, answers_json, total,"
                                " recording, stored_utc) VALUES (?, ?, 'phq8', ?, ?, ?, ?)",
                                (person, label["date"], json.dumps(label["answers"]), int(label["total"]), key,
                                 utc_now()))
            self.db.execute("UPDATE runs SET processed = processed + 1 WHERE run_id=?", (run_id,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def commit_quarantined(self, key: str, reason: str, run_id: str, person: Optional[str] = None,
                           captured: Optional[str] = None, day: Optional[str] = None, size_bytes: int = 0) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("INSERT OR IGNORE INTO recordings (key, person, captured, day, size_bytes, state,"
                            " updated_utc) VALUES (?, ?, ?, ?, ?, 'quarantined', ?)",
                            (key, person, captured, day, size_bytes, utc_now()))
            self.db.execute("UPDATE recordings SET state='quarantined', reason=?, run_id=?, updated_utc=?"
                            " WHERE key=?", (reason, run_id, utc_now(), key))
            self.db.execute("UPDATE runs SET quarantined = quarantined + 1 WHERE run_id=?", (run_id,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _update_day(self, person: str, day: str) -> None:
        """Recompute one (person, day) trend row from its done recordings.

        PHQ-8: the mean of the recordings' estimates and of their sigmas, weighted by
        duration (sigma is each check-in's own uncertainty, not shrunk by averaging).
        Vocal measures: means weighted by each recording's speech time, over the recordings
        where the voice allowed the measure."""
        rows = self.db.execute("SELECT duration_s, speech_s, phq8_status, phq8_mu, phq8_sigma, voice_json "
                               "FROM recordings WHERE person=? AND day=? AND state='done'", (person, day)).fetchall()
        audio_s = sum(float(r["duration_s"] or 0.0) for r in rows)
        ok = [r for r in rows if r["phq8_status"] == "ok"]
        weights = [max(float(r["duration_s"] or 0.0), 1e-6) for r in ok]
        total = sum(weights)
        mu = sum(w * r["phq8_mu"] for w, r in zip(weights, ok)) / total if ok else None
        sigma = sum(w * r["phq8_sigma"] for w, r in zip(weights, ok)) / total if ok else None
        values = {"person": person, "day": day, "recordings": len(rows), "audio_s": audio_s, "phq8_n": len(ok),
                  "phq8_mu": mu, "phq8_sigma": sigma}
        voices = [(max(float(r["speech_s"] or 0.0), 1e-6), json.loads(r["voice_json"] or "{}")) for r in rows]
        reasons = {}
        for column, name in VOICE_COLUMNS.items():
            have = [(w, v[name]) for w, v in voices if v.get(name) is not None]
            weight = sum(w for w, _ in have)
            values[column] = sum(w * x for w, x in have) / weight if have else None
            if not have:  # no reading that day: say why (the voice measures' own reason)
                why = next((v.get("reasons", {}).get(name) for _, v in voices if v.get("reasons", {}).get(name)),
                           None)
                reasons[column] = why or "no recording of the day allowed this measure"
        # The recordings' SNR (speech level above the noise floor), weighted like the measures.
        snrs = [(w, v["snr_db"]) for w, v in voices if v.get("snr_db") is not None]
        values["snr_db"] = sum(w * x for w, x in snrs) / sum(w for w, _ in snrs) if snrs else None
        values["reasons_json"] = json.dumps(reasons, sort_keys=True) if reasons else None
        columns = ", ".join(values)
        self.db.execute(f"INSERT OR REPLACE INTO days ({columns}) VALUES ({', '.join(':' + c for c in values)})",
                        values)

    # ----- runs ----------------------------------------------------------------------
    def start_run(self, run_id: str) -> None:
        self.db.execute("INSERT INTO runs (run_id, started_utc) VALUES (?, ?)", (run_id, utc_now()))

    def finish_run(self, run_id: str) -> Dict:
        self.db.execute("UPDATE runs SET finished_utc=? WHERE run_id=?", (utc_now(), run_id))
        return dict(self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone())

    # ----- reading -------------------------------------------------------------------
    def persons(self) -> List[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT person FROM days ORDER BY person")]

    def days(self, person: str) -> List[Dict]:
        """The person's trend rows, oldest first (days without data have no row); `reasons`:
        measure -> why it has no reading that day."""
        rows = [dict(r) for r in self.db.execute("SELECT * FROM days WHERE person=? ORDER BY day", (person,))]
        for row in rows:
            row["reasons"] = json.loads(row.pop("reasons_json", None) or "{}")
        return rows

    def labels(self, person: str, upto: Optional[str] = None) -> List[Dict]:
        """The person's PHQ-8 questionnaires, oldest first: {"date", "total", "answers"}."""
        rows = self.db.execute("SELECT date, total, answers_json FROM labels WHERE person=? AND instrument='phq8'"
                               " AND date <= ? ORDER BY date", (person, upto or "9999-12-31"))
        return [{"date": r[0], "total": int(r[1]), "answers": json.loads(r[2])} for r in rows]

    def person_version(self, person: str) -> int:
        """Changes whenever a recording of the person is committed (for message ids)."""
        row = self.db.execute("SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM recordings "
                              "WHERE person=? AND state='done'", (person,)).fetchone()
        return int(row[0]) * 1000003 + int(row[1])

    def recordings(self, state: Optional[str] = None) -> Iterator[sqlite3.Row]:
        if state is None:
            return iter(self.db.execute("SELECT * FROM recordings ORDER BY key"))
        return iter(self.db.execute("SELECT * FROM recordings WHERE state=? ORDER BY key", (state,)))

    def any_demo_weights(self) -> bool:
        """True when any stored session ran on demo weights (reports say so)."""
        row = self.db.execute("SELECT MAX(demo_weights) FROM sessions").fetchone()
        return bool(row and row[0])

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        self.db.close()
