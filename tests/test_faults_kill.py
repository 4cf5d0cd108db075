"""SIGKILL at random moments around the end of a session (the writes), many times over one
database: afterwards the database passes `PRAGMA integrity_check`, every session that was
printed as saved is in it with a summary that parses, and no file is empty or truncated."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from faults_helpers import (
    DEMO_VIDEO,
    DEMO_WAV,
    ROOT,
    assert_no_partial_files,
    edge_cmd,
    integrity,
    session_ids,
    write_profile,
)

RUNS = 40


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_session(tmp_path, capsys):
    from edge.cli import main

    prof = write_profile(tmp_path)
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".20261130T000000Z-abcdef.json.{dead.pid}.tmp"
    stale.write_text('{"session_id": "cut sh')
    live = out / f".20261130T000000Z-fedcba.json.{os.getpid()}.tmp"  # a writer still at work
    live.write_text("{")
    assert main(["run", "--config", str(prof), "--video", DEMO_VIDEO, "--fast", "--duration", "0.3"]) == 0
    assert not stale.exists() and live.exists()
    live.unlink()
    assert_no_partial_files(out)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_reported_saved(tmp_path):
    rng = random.Random(1414)
    prof = write_profile(tmp_path, output={"tick_jsonl": True})
    out = tmp_path / "out"
    db = out / "sessions.sqlite"
    cmd = edge_cmd("run", "--config", str(prof), "--video", DEMO_VIDEO, "--audio", DEMO_WAV, "--fast", "--json",
                   "--duration", "0.5")
    # Calibrate: how long a whole run takes here, so that the kills land around its writes.
    started = time.monotonic()
    subprocess.run(cmd, cwd=str(ROOT), capture_output=True, check=True, timeout=120)
    whole_s = time.monotonic() - started
    reported_saved, killed = [], 0
    for _ in range(RUNS):
        proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=rng.uniform(0.6, 1.1) * whole_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        stdout, _ = proc.communicate(timeout=60)
        for line in stdout.splitlines():
            if line.startswith('{"summary"'):
                summary = json.loads(line)["summary"]
                if summary.get("database") and summary.get("summary_file"):
                    reported_saved.append(summary)
        assert integrity(db) == "ok" if db.exists() else True
    assert killed >= RUNS // 3, f"only {killed} of {RUNS} runs were killed; the window missed"
    ids = set(session_ids(db))
    for summary in reported_saved:
        assert summary["session_id"] in ids
        assert json.loads(open(summary["summary_file"]).read())["session_id"] == summary["session_id"]
    # Every summary on disk has its row (the row is written first), and parses.
    for path in out.glob("*.json"):
        assert json.loads(path.read_text())["session_id"] in ids
    # What the last killed run left (its tick lines' .part) goes at the next start.
    subprocess.run(cmd, cwd=str(ROOT), capture_output=True, check=True, timeout=120)
    assert_no_partial_files(out)
    assert integrity(db) == "ok"
