"""`edge nightly` on what gateways really hand it (issues 18, 19, 21): recordings in the formats
wearables write, truncated files (quarantined and kept), hostile and PHQ-8 sidecars, a replayed
night (--night), a wrong MQTT set-up (exit 2 at start) against a broker that is only away
(queued, exit 0), and one job per inbox."""
from __future__ import annotations

import json
import re
import sqlite3
import struct
import subprocess
import sys
from datetime import date, timedelta

import numpy as np
import pytest
import yaml
from nightly_support import env_with_repo, free_port, month, nightly, pending_ids, write_profile

from edge.errors import EdgeError
from tests.conftest import ROOT

DEMO_WAV = ROOT / "edge" / "samples" / "demo_speech.wav"
CLIP_S = 3.0


@pytest.fixture(scope="module")
def clip():
    """The first 3 s of the bundled speech sample (16 kHz mono float)."""
    sf = pytest.importorskip("soundfile", reason="the `formats` extra (soundfile) is not installed")
    x, rate = sf.read(str(DEMO_WAV), dtype="float32")
    assert rate == 16000
    return x[: int(CLIP_S * rate)]


def _db(tmp):
    return sqlite3.connect(str(tmp / "db" / "trends.sqlite"))


def _name(day: date, hour: int = 8) -> str:
    return f"{day.strftime('%Y%m%d')}T{hour:02d}0000"


def _write(path, x, rate, subtype, container):
    import soundfile as sf

    if rate != 16000:  # what a 44.1/48 kHz recorder would have written (linear interpolation is enough here)
        t = np.arange(int(len(x) * rate / 16000)) * 16000 / rate
        x = np.interp(t, np.arange(len(x)), x).astype(np.float32)
    sf.write(str(path), np.stack([x, x], axis=1), rate, subtype=subtype, format=container)
    return path


def test_recordings_in_every_format_and_truncated_ones_kept_in_quarantine(tmp_path, clip):
    profile = write_profile(tmp_path)
    folder = tmp_path / "inbox" / "p01"
    folder.mkdir(parents=True)
    days = iter(month(12))
    taken = {  # (rate, subtype, container, suffix): what a wearable or phone writes
        "wav24x": (44100, "PCM_24", "WAVEX", ".wav"), "float": (44100, "FLOAT", "WAV", ".wav"),
        "ulaw": (16000, "ULAW", "WAV", ".wav"), "alaw": (16000, "ALAW", "WAV", ".wav"),
        "flac": (48000, "PCM_16", "FLAC", ".flac"), "opus": (48000, "OPUS", "OGG", ".opus"),
        "vorbis": (44100, "VORBIS", "OGG", ".ogg")}
    names = {}
    for kind, (rate, subtype, container, suffix) in taken.items():
        names[kind] = _name(next(days)) + suffix
        _write(folder / names[kind], clip, rate, subtype, container)
    # Truncated: a header claiming 22 s with 0.002 s present; a WAV cut at a quarter; a cut FLAC.
    long = np.tile(clip, 8)[: 22 * 16000]
    cut = {}
    for kind, suffix, keep in (("header_22s", ".wav", lambda raw: raw[:44 + 128]),
                               ("quarter", ".wav", lambda raw: raw[: len(raw) // 4]),
                               ("flac_cut", ".flac", lambda raw: raw[: len(raw) // 3])):
        name = _name(next(days)) + suffix
        path = _write(folder / name, long, 16000, "PCM_16", "FLAC" if suffix == ".flac" else "WAV")
        path.write_bytes(keep(path.read_bytes()))
        cut[kind] = (name, path.read_bytes())
    mp3_tag = _name(next(days)) + ".wav"  # a WAV header around MP3 frames: named, not "corrupt"
    data = bytes(3200)
    (folder / mp3_tag).write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 0x55, 1, 16000, 2000, 1, 0) + b"data" + struct.pack("<I", len(data)) + data)
    assert nightly(profile) == 0
    db = _db(tmp_path)
    rows = {r[0].split("/")[1]: r[1:] for r in db.execute("SELECT key, state, duration_s, reason FROM recordings")}
    for kind, name in names.items():
        state, duration_s, reason = rows[name]
        assert state == "done", (kind, reason)
        assert abs(duration_s - CLIP_S) <= 0.15, (kind, duration_s)
    quarantine = tmp_path / "quarantine" / "p01"
    for kind, (name, raw) in cut.items():
        state, _, reason = rows[name]
        assert state == "quarantined" and reason.startswith("truncated: "), (kind, reason)
        assert (quarantine / name).read_bytes() == raw  # kept as it came, never deleted
        assert (quarantine / (name + ".reason.txt")).read_text().startswith("truncated: ")
    assert rows[cut["header_22s"][0]][2] == "truncated: the header declares 22.000 s, the file holds 0.002 s"
    assert rows[mp3_tag][0] == "quarantined" and rows[mp3_tag][2].startswith("unsupported encoding: WAV MP3")
    # Nothing of the truncated files entered the trend: one day row per whole recording.
    assert db.execute("SELECT COUNT(*) FROM days").fetchone()[0] == len(taken)


def test_hostile_and_questionnaire_sidecars(tmp_path, clip, capsys):
    import soundfile as sf

    profile = write_profile(tmp_path)
    inbox = tmp_path / "inbox"
    day = month(2)[0]
    sidecars = {
        "deep": "[" * 30000 + "]" * 30000,  # within the size cap: the depth cap refuses it
        "big": "[" * 100000 + "]" * 100000,
        "null_person": '{"person": null}',
        "number_person": '{"person": 123}',
        "huge_person": json.dumps({"person": "x" * 60000}),
        "bad_answers": json.dumps({"phq8": {"answers": [1, 2, 3, 4, 0, 0, 0, 0], "date": day.isoformat()}}),
        "seven_answers": json.dumps({"phq8": {"answers": [1] * 7, "date": day.isoformat()}}),
        "bad_date": json.dumps({"phq8": {"answers": [1] * 8, "date": "2026-13-45"}}),
        "answers_as_text": json.dumps({"phq8": {"answers": ["1"] * 8, "date": day.isoformat()}}),
        "good_phq8": json.dumps({"phq8": {"answers": [2, 1, 1, 0, 3, 1, 0, 1], "date": day.isoformat()}}),
    }
    (inbox / "p01").mkdir()
    for hour, (kind, text) in enumerate(sidecars.items()):
        stem = f"{_name(day, hour)}_{kind}"
        sf.write(str(inbox / "p01" / f"{stem}.wav"), clip, 16000, subtype="PCM_16")
        (inbox / "p01" / f"{stem}.json").write_text(text)
    (inbox / "p02").mkdir()
    sf.write(str(inbox / "p02" / f"{_name(day)}.wav"), clip, 16000, subtype="PCM_16")  # someone else's night
    assert nightly(profile) == 0
    out = capsys.readouterr().out
    db = _db(tmp_path)
    reasons = {r[0].split("_", 1)[1][:-4]: r[1] for r in db.execute(
        "SELECT key, reason FROM recordings WHERE state='quarantined'")}
    assert "nested 30000 levels deep" in reasons["deep"] and len(reasons["deep"]) < 200
    assert "more than the 65536 a sidecar may have" in reasons["big"]
    assert "'person' must be a string, got NoneType" in reasons["null_person"]
    assert "'person' must be a string, got int" in reasons["number_person"]
    assert "not an opaque id" in reasons["huge_person"] and len(reasons["huge_person"]) < 300
    for kind in ("bad_answers", "seven_answers", "answers_as_text"):
        assert "'phq8.answers' must be 8 whole numbers from 0 to 3" in reasons[kind], kind
    assert "'phq8.date' must be a date" in reasons["bad_date"]
    assert set(reasons) == set(sidecars) - {"good_phq8"}
    done = {r[0] for r in db.execute("SELECT person FROM recordings WHERE state='done'")}
    assert done == {"p01", "p02"}  # the good recordings of the night, both people, went through
    assert db.execute("SELECT person, date, total, answers_json FROM labels").fetchall() == [
        ("p01", day.isoformat(), 9, "[2, 1, 1, 0, 3, 1, 0, 1]")]
    page = next((tmp_path / "reports" / "p01").glob("*.html")).read_text()
    assert f"PHQ-8 questionnaire answered by the person: 9 points on {day.isoformat()}" in page
    # The journal gets counts and ids, never a score.
    processed = [line for line in out.splitlines() if line.startswith("processed ")]
    assert len(processed) == 2 and not any("PHQ" in line or "+/-" in line for line in processed), processed
    assert not any("flag" in line and ":" in line.split("flag", 1)[1] for line in out.splitlines())


def test_a_replayed_night_reports_as_of_that_night(tmp_path, clip):
    import soundfile as sf

    profile = write_profile(tmp_path)
    folder = tmp_path / "inbox" / "p01"
    folder.mkdir(parents=True)
    start = date(2026, 3, 1)
    for k in range(5):
        sf.write(str(folder / f"{_name(start + timedelta(days=k))}.wav"), clip, 16000, subtype="PCM_16")
    night = (start + timedelta(days=2)).isoformat()
    assert nightly(profile, night=night) == 0
    reports = tmp_path / "reports" / "p01"
    assert sorted(p.name for p in reports.iterdir()) == [f"{night}.html", f"{night}.png"]
    page = (reports / f"{night}.html").read_text()
    assert f"Night {night}" in page and f"Latest day with data: {night}" in page  # later days left out
    db = _db(tmp_path)
    assert db.execute("SELECT COUNT(*) FROM days").fetchone()[0] == 5  # every recording was processed
    with pytest.raises(EdgeError, match="--night must be a date YYYY-mm-dd"):
        nightly(profile, night="2026-02-30")


def _mqtt_profile(tmp, **mqtt):
    profile = write_profile(tmp, mqtt_port=free_port())
    data = yaml.safe_load(profile.read_text())
    data["mqtt"].update(mqtt)
    profile.write_text(yaml.safe_dump(data))
    return profile


def test_a_wrong_mqtt_setup_stops_at_start_and_an_absent_broker_queues(tmp_path):
    from edge.apps.config_check import check_file

    garbage_ca = tmp_path / "ca.pem"
    garbage_ca.write_text("not a certificate\n")
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    cases = [
        (dict(username="gw", password_file=str(tmp_path / "missing-password")),
         "key 'mqtt.password_file': .*missing-password does not exist"),
        (dict(tls=True, ca_file=str(tmp_path / "missing-ca.pem")), "key 'mqtt.ca_file': .*missing-ca.pem does not"),
        (dict(tls=True, ca_file=str(garbage_ca)), "holds no usable CA certificate"),
        (dict(ca_file=str(garbage_ca)), "mqtt.ca_file' is set .* but the connection is plain MQTT"),
        (dict(port=8883), "is 8883 \\(MQTT over TLS\\) but mqtt.tls is false"),
        (dict(password_file=str(password)), "mqtt.password_file' is set but mqtt.username is not"),
    ]
    for k, (settings, message) in enumerate(cases):
        case = tmp_path / f"case{k}"
        case.mkdir()
        profile = _mqtt_profile(case, **settings)
        with pytest.raises(EdgeError, match=message) as info:
            nightly(profile)
        assert "\n" not in str(info.value)
        assert any(re.search(message, line) for line in check_file(str(profile))), message
        assert not (case / "mqtt-queue").exists()  # nothing queued behind a set-up that cannot work
    proc = subprocess.run([sys.executable, "-m", "edge", "nightly", "--config",
                           str(tmp_path / "case0" / "profile.yaml")], capture_output=True, text=True,
                          env=env_with_repo(), cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "password_file" in proc.stderr
    # A usable set-up with the broker away: the night runs, the messages wait, exit 0.
    away = tmp_path / "away"
    away.mkdir()
    profile = _mqtt_profile(away, username="gw", password_file=str(password))
    assert check_file(str(profile)) == []
    assert nightly(profile) == 0
    assert pending_ids(away / "mqtt-queue")  # the gateway state, queued for the next run


def test_one_job_per_inbox_whatever_the_database(tmp_path):
    from edge.apps.nightly.job import _Lock

    profile = write_profile(tmp_path)
    lock = _Lock(str(tmp_path / "inbox"), "inbox")
    try:
        with pytest.raises(EdgeError, match="another edge nightly is running on this inbox"):
            nightly(profile, db=str(tmp_path / "other" / "trends.sqlite"))
    finally:
        lock.release()
    assert nightly(profile, db=str(tmp_path / "other" / "trends.sqlite")) == 0
    assert not [p for p in (tmp_path / "inbox").iterdir()]  # the lock adds nothing to the inbox
