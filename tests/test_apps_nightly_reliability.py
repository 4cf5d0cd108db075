"""`edge nightly` when things go wrong: SIGKILL half-way, bad files, links out of the inbox,
files still being written, a second job at the same time."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from nightly_support import drop, env_with_repo, month, nightly, write_profile

from edge.errors import EdgeError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_WAV = os.path.join(ROOT, "edge", "samples", "demo_speech.wav")


@pytest.fixture(scope="module")
def speech():
    """The bundled 5 s speech sample: short check-ins keep these tests fast."""
    return DEMO_WAV


def _db(tmp):
    return sqlite3.connect(str(tmp / "db" / "trends.sqlite"))


@pytest.mark.slow
def test_sigkill_half_way_then_rerun_commits_each_recording_once(tmp_path, speech):
    profile = write_profile(tmp_path)
    days = month(12)
    for day in days:
        drop(tmp_path / "inbox", "p01", day, speech)
    code = (f"import sys, argparse; sys.path.insert(0, {ROOT!r}); from edge.apps.nightly.job import run; "
            f"run(argparse.Namespace(config={str(profile)!r}, inbox=None, db=None, out=None, mqtt=None))")
    proc = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env_with_repo(), text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if sum(line.startswith("processed ") for line in seen) == 4:
            time.sleep(0.15)  # into the fifth recording
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    db = _db(tmp_path)
    done_before = db.execute("SELECT COUNT(*) FROM recordings WHERE state='done'").fetchone()[0]
    assert 4 <= done_before < len(days), "the job must have been killed half-way"
    db.close()

    assert nightly(profile) == 0
    db = _db(tmp_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = db.execute("SELECT key, state, attempts, session_id FROM recordings ORDER BY key").fetchall()
    assert len(rows) == len(days) and {r[1] for r in rows} == {"done"}
    # One session row per recording (no duplicate from the killed attempt), one day row per day.
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT session_id) FROM sessions").fetchone() == (len(days), len(days))
    assert [r[3] for r in rows] == [r[0] for r in db.execute(
        "SELECT r.session_id FROM recordings r JOIN sessions s ON s.session_id = r.session_id ORDER BY r.key")]
    assert db.execute("SELECT COUNT(*), SUM(recordings) FROM days").fetchone() == (len(days), len(days))
    assert sorted(r[2] for r in rows).count(2) <= 1  # at most the one that was running when killed ran twice
    assert not list((tmp_path / "inbox").glob("*/*.wav"))
    # A third run finds nothing to do and adds nothing.
    assert nightly(profile) == 0
    assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == len(days)


def test_bad_files_are_quarantined_with_their_reason_and_the_night_goes_on(tmp_path, speech):
    profile = write_profile(tmp_path)
    inbox = tmp_path / "inbox"
    day = month(1)[0]
    good = drop(inbox, "p01", day, speech)
    folder = inbox / "p01"
    stem = day.strftime("%Y%m%d")
    (folder / f"{stem}T090000.wav").write_bytes(b"")  # empty
    (folder / f"{stem}T100000.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage")  # corrupt
    (folder / f"{stem}T110000.wav").write_bytes(b"ID3\x03\x00\x00\x00" + os.urandom(2000))  # an MP3 named .wav
    (folder / f"{stem}T120000.ogg").write_bytes(b"OggS" + os.urandom(100))  # Ogg in name only
    with open(DEMO_WAV, "rb") as f:  # a float header with 16-bit samples: no such encoding
        data = bytearray(f.read())
    data[20:22] = (3).to_bytes(2, "little")
    (folder / f"{stem}T130000.wav").write_bytes(bytes(data))
    (folder / "recording.wav").write_bytes(open(DEMO_WAV, "rb").read())  # no capture time in the name
    (inbox / "loose.wav").write_bytes(b"RIFF")  # not in a person folder
    assert nightly(profile) == 0
    quarantine = tmp_path / "quarantine"
    reasons = {p.name[:-len(".reason.txt")]: p.read_text() for p in quarantine.rglob("*.reason.txt")}
    assert "empty file" in reasons[f"{stem}T090000.wav"]
    assert reasons[f"{stem}T100000.wav"].startswith("corrupt: its fmt chunk")
    assert "looks like MP3" in reasons[f"{stem}T110000.wav"]
    assert reasons[f"{stem}T120000.ogg"].startswith("corrupt: Ogg")  # an Ogg page header and noise
    assert "unsupported encoding: WAV IEEE float 16-bit" in reasons[f"{stem}T130000.wav"]
    assert "no capture time" in reasons["recording.wav"]
    assert "person folder" in reasons["loose.wav"]
    for name in reasons:  # the file itself moved beside its reason, owner-only
        moved = next(quarantine.rglob(name))
        assert oct(moved.stat().st_mode & 0o777) == "0o600"
    assert not good.exists()
    db = _db(tmp_path)
    assert db.execute("SELECT state FROM recordings WHERE key=?", (f"p01/{good.name}",)).fetchone()[0] == "done"
    assert db.execute("SELECT COUNT(*) FROM recordings WHERE state='quarantined'").fetchone()[0] == len(reasons)
    assert sorted(p.name for p in inbox.rglob("*") if p.is_file()) == []
    # Quarantined files are not looked at again.
    assert nightly(profile) == 0
    assert db.execute("SELECT COUNT(*) FROM recordings").fetchone()[0] == len(reasons) + 1


def test_links_out_of_the_inbox_are_not_followed(tmp_path, speech):
    profile = write_profile(tmp_path)
    inbox = tmp_path / "inbox"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = drop(outside, "p09", month(1)[0], speech)  # a real recording outside the inbox
    (inbox / "p01").mkdir()
    link = inbox / "p01" / secret.name
    link.symlink_to(secret)
    (inbox / "p09").symlink_to(secret.parent)  # a person folder that is a link
    before = secret.read_bytes()
    assert nightly(profile) == 0
    assert link.is_symlink() and (inbox / "p09").is_symlink()  # left where they are
    assert secret.read_bytes() == before  # the target is neither read into results nor moved
    db = _db(tmp_path)
    assert db.execute("SELECT COUNT(*) FROM recordings").fetchone()[0] == 0
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.json"))
    assert not (tmp_path / "quarantine").exists()


@pytest.mark.slow
def test_files_still_being_written_wait_and_done_markers(tmp_path, speech):
    profile = write_profile(tmp_path, stable_seconds=3600)
    inbox = tmp_path / "inbox"
    fresh = drop(inbox, "p01", month(1)[0], speech)
    assert nightly(profile) == 0
    assert fresh.exists()  # changed within the last hour: not taken, not waited for
    old = time.time() - 7200
    os.utime(str(fresh), (old, old))
    assert nightly(profile) == 0
    assert not fresh.exists()

    profile = write_profile(tmp_path, stable_seconds=1)  # a short settle time is waited for in the run
    second = drop(inbox, "p01", month(2)[0], speech)
    started = time.monotonic()
    assert nightly(profile) == 0
    assert not second.exists() and time.monotonic() - started >= 0.5

    profile = write_profile(tmp_path, stable_seconds=0, done_marker=".done")
    third = drop(inbox, "p01", month(3)[0], speech)
    assert nightly(profile) == 0
    assert third.exists()  # no marker yet
    marker = third.with_name(third.name + ".done")
    marker.write_text("")
    assert nightly(profile) == 0
    assert not third.exists() and not marker.exists()
    db = _db(tmp_path)
    assert db.execute("SELECT COUNT(*) FROM recordings WHERE state='done'").fetchone()[0] == 3


def test_sidecar_gives_person_and_time_and_bad_ids_are_refused(tmp_path, speech):
    profile = write_profile(tmp_path)
    inbox = tmp_path / "inbox"
    wav = drop(inbox, "p01", month(1)[0], speech, suffix="_watch")
    captured = (month(1)[0] - timedelta(days=3)).isoformat() + "T07:30:00"
    wav.with_name(wav.name[:-4] + ".json").write_text(f'{{"person": "p07", "captured": "{captured}"}}')
    (inbox / "Jane Doe").mkdir()
    bad = drop(inbox, "x", month(1)[0], speech)
    bad.rename(inbox / "Jane Doe" / bad.name)
    assert nightly(profile) == 0
    db = _db(tmp_path)
    row = db.execute("SELECT person, captured, day FROM recordings WHERE key=?", (f"p01/{wav.name}",)).fetchone()
    assert row == ("p07", captured, captured[:10])
    reason = db.execute("SELECT reason FROM recordings WHERE key LIKE 'Jane Doe/%'").fetchone()[0]
    assert "not an opaque id" in reason


def test_one_job_at_a_time_and_one_line_errors(tmp_path):
    profile = write_profile(tmp_path)
    from edge.apps.nightly.job import _Lock

    (tmp_path / "db").mkdir()
    lock = _Lock(str(tmp_path / "db" / "trends.sqlite") + ".lock")
    try:
        with pytest.raises(EdgeError, match="another edge nightly is running"):
            nightly(profile)
    finally:
        lock.release()
    with pytest.raises(EdgeError, match="inbox .* is not a folder"):
        nightly(profile, inbox=str(tmp_path / "missing"))
    with pytest.raises(EdgeError, match="--mqtt must look like"):
        nightly(profile, mqtt="http://example:1883")


def test_edge_nightly_on_the_command_line(tmp_path):
    profile = write_profile(tmp_path)
    drop(tmp_path / "inbox", "p01", month(1)[0], DEMO_WAV)
    run = subprocess.run([sys.executable, "-m", "edge", "nightly", "--config", str(profile), "--out",
                          str(tmp_path / "elsewhere")], capture_output=True, text=True, env=env_with_repo(), cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "1 processed" in run.stdout and "not a diagnosis" in run.stdout
    assert list((tmp_path / "elsewhere" / "p01").glob("*.json"))
    assert list((tmp_path / "elsewhere" / "reports" / "p01").glob("*.html"))
    bad = subprocess.run([sys.executable, "-m", "edge", "nightly", "--config", str(profile), "--mqtt", "mqtt://"],
                         capture_output=True, text=True, env=env_with_repo(), cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--mqtt must look like" in bad.stderr
