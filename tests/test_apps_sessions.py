"""`edge sessions list/export`: real sessions from the engine, stored by SessionWriter in
a real SQLite file, exported as CSV for a clinic."""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys

import pytest
from kiosk_support import DEMO_VIDEO, DEMO_WAV, ROOT, kiosk_profile

from edge.engine import Screener, ScreenerOptions
from edge.engine.outputs import SessionWriter


def _cli(*args: str):
    proc = subprocess.run([sys.executable, "-m", "edge.apps.sessions", *args], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """Two sessions: one whole (the 5 s sample), one cut short after a second."""
    tmp = tmp_path_factory.mktemp("sessions")
    screener = Screener(ScreenerOptions.from_profile(str(kiosk_profile(tmp))))
    config = screener.config
    ids = []
    for cut in (False, True):
        run = screener.run(DEMO_VIDEO, DEMO_WAV, fast=True)
        writer = SessionWriter(config.output, run.session_id)
        for tick in run:
            writer.tick(tick)
            if cut and tick.index == 10:
                run.stop("walked away: no face for 8 s")
        assert writer.close(run.result) == []
        ids.append(run.session_id)
    screener.close()
    return config.output.database, ids


def test_export_writes_every_session_as_csv(database, tmp_path):
    db, ids = database
    out = tmp_path / "clinic.csv"
    code, stdout, stderr = _cli("export", "--db", db, "--csv", str(out))
    assert code == 0, stderr
    assert "2 session(s) written" in stdout and "not a diagnosis" in stdout
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600  # health results: owner-only
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["session_id"] for r in rows] == ids
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    stored = {r["session_id"]: r for r in con.execute("SELECT * FROM sessions")}
    con.close()
    whole, cut = rows
    row = stored[whole["session_id"]]
    assert whole["complete"] == "1" and cut["complete"] == "0"
    assert cut["stop_reason"] == "walked away: no face for 8 s"
    assert whole["vote_level"] == row["vote_level"] and whole["phq8_band"] == row["phq8_band"]
    assert float(whole["phq8_mu"]) == row["phq8_mu"] and float(whole["phq8_low"]) == row["phq8_low"]
    summary = json.loads(row["summary_json"])
    assert whole["vote_message"] == summary["screening"]["emotion_vote"]["message"]
    assert whole["vote_provisional"] == "1" and whole["demo_weights"] == "1"
    assert "video_source" not in whole and DEMO_VIDEO not in out.read_text()  # no source names


def test_list_and_since(database):
    db, ids = database
    code, stdout, stderr = _cli("list", "--db", db)
    assert code == 0, stderr
    assert ids[0] in stdout and ids[1] in stdout and "cut short: walked away" in stdout
    assert "demo weights" in stdout
    code, stdout, _ = _cli("list", "--db", db, "--json", "--last", "1")
    assert [json.loads(line)["session_id"] for line in stdout.splitlines()] == [ids[1]]
    code, stdout, _ = _cli("export", "--db", db, "--csv", "-", "--since", "2999-01-01")
    assert code == 0 and stdout.strip() == ",".join(
        ["session_id", "started_utc", "duration_s", "complete", "stop_reason", "profile", "vote_status",
         "vote_level", "vote_pattern", "vote_message", "vote_provisional", "phq8_status", "phq8_mu", "phq8_sigma",
         "phq8_low", "phq8_high", "phq8_band", "demo_weights", "abstentions", "questionnaire",
         "questionnaire_score", "questionnaire_band", "questionnaire_answers", "items_answered", "shown",
         "research_consent", "labelled"])


def test_bad_input_is_one_line(database, tmp_path):
    db, _ = database
    for args, words in ((("export", "--db", str(tmp_path / "none.sqlite"), "--csv", "x.csv"), "does not exist"),
                        (("export", "--db", db, "--csv", str(tmp_path)), "is a folder"),
                        (("list", "--db", db, "--since", "yesterday"), "--since must be a date")):
        code, stdout, stderr = _cli(*args)
        assert code == 2 and words in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "none.sqlite").exists()  # nothing created by a typo
