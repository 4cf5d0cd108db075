"""`edge nightly` over a simulated month for three people, with a real Mosquitto broker.

Recordings are espeak-ng speech (a few WAVs reused; the capture day comes from the file
name). p01 speaks in steady voices for two weeks (two days without data), then in another
voice for four days: the demo-weight model's PHQ-8 estimate rises by about 9 points, so
the drift is driven through the audio (it is a pipeline test, not a clinical one: the
weights are demo weights). p02 speaks in steady voices all month with gaps: no flag.
"""
from __future__ import annotations

import json
import sqlite3

import pytest
from nightly_support import (
    DRIFT_VOICE,
    STEADY_VOICES,
    Broker,
    Listener,
    drop,
    month,
    need,
    nightly,
    schema,
    speak,
    write_profile,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voices")
    steady = [speak(folder / f"steady{k}.wav", v) for k, v in enumerate(STEADY_VOICES)]
    return {"steady": steady, "drift": speak(folder / "drift.wav", DRIFT_VOICE)}


@pytest.fixture(scope="module")
def month_run(tmp_path_factory, voices):
    """One nightly run over the month, published to a real broker watched by a subscriber."""
    need("mosquitto")
    pytest.importorskip("paho.mqtt")
    tmp = tmp_path_factory.mktemp("month")
    broker = Broker(tmp).start()
    listener = Listener(broker.port, "care-team-live")
    profile = write_profile(tmp, mqtt_port=broker.port)
    inbox = tmp / "inbox"
    days = month(20)
    expected = {"p01": [], "p02": [], "p03": []}
    for k, day in enumerate(days):
        if k not in (5, 6):  # p01: two days without data in the baseline weeks
            wav = voices["drift"] if k >= 16 else voices["steady"][k % 4]
            drop(inbox, "p01", day, wav)
            expected["p01"].append(day.isoformat())
        if k % 5 != 3:  # p02: a gap every five days, steady all month
            drop(inbox, "p02", day, voices["steady"][(k + 1) % 4], hour=9)
            if k % 2 == 0:  # and a second check-in on some days
                drop(inbox, "p02", day, voices["steady"][(k + 2) % 4], hour=19, suffix="_evening")
            expected["p02"].append(day.isoformat())
    drop(inbox, "p03", days[-1], voices["steady"][0])  # a newcomer: baseline still forming
    expected["p03"].append(days[-1].isoformat())
    try:
        assert nightly(profile) == 0
        messages = listener.wait_for(4)
    finally:
        listener.close()
    late = Listener(broker.port, "care-team-late")  # joins after the run: gets the retained state only
    retained = late.wait_for(1, timeout_s=5)
    late.close()
    broker.stop()
    return {"tmp": tmp, "messages": messages, "retained": retained, "expected": expected}


def _payloads(messages, suffix):
    return {m["topic"]: m for m in messages if m["topic"].endswith(suffix)}


def test_every_recording_processed_once_and_inbox_emptied(month_run):
    tmp = month_run["tmp"]
    db = sqlite3.connect(str(tmp / "db" / "trends.sqlite"))
    states = dict(db.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state").fetchall())
    total = len(list((tmp / "out").glob("*/*.json")))
    assert states == {"done": total}
    assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == total
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for person, days in month_run["expected"].items():
        got = [r[0] for r in db.execute("SELECT day FROM days WHERE person=? ORDER BY day", (person,))]
        assert got == days
    assert not list((tmp / "inbox").glob("*/*.wav")), "processed recordings must leave the inbox"
    # Per-tick features were streamed to disk: one 43-value row per 100 ms tick.
    import numpy as np

    features = next((tmp / "out" / "p01").glob("*.features.npz"))
    with np.load(str(features)) as data:
        assert data["features"].shape[1] == 43 and data["features"].shape[0] > 50
    summary = json.loads(next((tmp / "out" / "p01").glob("*.json")).read_text())
    assert summary["screening"]["emotion_vote"]["status"] == "abstained"  # no video: the vote abstains
    assert summary["screening"]["phq8"]["status"] == "ok"
    assert summary["screening"]["phq8"]["input"] == "audio only: visual inputs zero"
    assert summary["nightly"]["voice"]["f0_semitone_mean"] is not None


def test_drift_raises_a_flag_that_says_what_moved(month_run):
    payload = _payloads(month_run["messages"], "/p01/nightly")["edge/gw-test/p01/nightly"]["payload"]
    flags = {f["measure"]: f for f in payload["flags"]}
    assert "phq8_mu" in flags
    flag = flags["phq8_mu"]
    assert flag["direction"] == "up" and flag["days"] == 4 and flag["change"] > 3.0
    assert abs(flag["recent"] - flag["baseline"] - flag["change"]) < 0.01
    assert "PHQ-8 estimate above the personal baseline" in flag["message"]
    assert "not a diagnosis" in flag["message"] and "depress" not in flag["message"].lower()
    assert payload["baseline"]["ready"] and payload["baseline"]["days_used"] == 12  # 14 days less 2 without data
    assert payload["days_with_data"] == 18 and payload["days_without_data"] == 1


def test_steady_person_is_not_flagged_and_newcomer_has_no_baseline(month_run):
    by_topic = _payloads(month_run["messages"], "/nightly")
    p02 = by_topic["edge/gw-test/p02/nightly"]["payload"]
    assert p02["flags"] == [] and p02["baseline"]["ready"]
    assert p02["last_day"]["recordings"] in (1, 2) and p02["last_day"]["phq8"]["mu"] < 8
    p03 = by_topic["edge/gw-test/p03/nightly"]["payload"]
    assert p03["flags"] == [] and not p03["baseline"]["ready"]


def test_payloads_match_the_schemas_and_arrive_with_qos1(month_run):
    jsonschema = pytest.importorskip("jsonschema")
    nightly_schema, state_schema = schema("nightly_payload"), schema("gateway_state")
    jsonschema.Draft202012Validator.check_schema(nightly_schema)
    jsonschema.Draft202012Validator.check_schema(state_schema)
    messages = month_run["messages"]
    assert sorted(m["topic"] for m in messages) == sorted(
        ["edge/gw-test/p01/nightly", "edge/gw-test/p02/nightly", "edge/gw-test/p03/nightly", "edge/gw-test/state"])
    for message in messages:
        assert message["qos"] == 1
        which = state_schema if message["topic"].endswith("/state") else nightly_schema
        jsonschema.validate(message["payload"], which)
        assert message["payload"]["notice"] == "Screening aid only, not a diagnosis."
        assert "wav" not in json.dumps(message["payload"]).lower()  # no file names, no raw audio
    state = [m for m in messages if m["topic"].endswith("/state")][0]["payload"]
    assert state["processed"] == sum(1 for _ in (month_run["tmp"] / "out").glob("*/*.json"))
    assert state["persons_flagged"] == 1 and state["status"] == "attention"
    with pytest.raises(jsonschema.ValidationError):  # the schema is strict enough to catch a wrong payload
        jsonschema.validate(dict(messages[0]["payload"], schema="other"), which)


def test_retained_state_reaches_a_late_subscriber(month_run):
    retained = month_run["retained"]
    assert len(retained) == 1
    assert retained[0]["topic"] == "edge/gw-test/state" and retained[0]["retain"]
    assert retained[0]["payload"]["gateway"] == "gw-test"


def test_reports_link_their_plots(month_run):
    reports = month_run["tmp"] / "reports"
    for person in ("p01", "p02", "p03"):
        pages = list((reports / person).glob("*.html"))
        assert len(pages) == 1
        page = pages[0].read_text()
        png = pages[0].with_suffix(".png")
        assert f"src='{png.name}'" in page and png.stat().st_size > 10000
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "not a diagnosis" in page and "demo weights" in page
        assert oct(png.stat().st_mode & 0o777) == "0o600"
    assert "PHQ-8 estimate above the personal baseline" in next((reports / "p01").glob("*.html")).read_text()
