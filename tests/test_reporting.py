"""edge.reporting: the kiosk session summary (schema-valid, no media), the reporter's outbox against a real
Mosquitto (away: queued; back: delivered in order, none twice), topic checks and the shipped schemas.
(The nightly job's use of the same outbox: test_apps_nightly_fleet.py; a real kiosk: test_apps_fleet_mqtt.py.)"""
from __future__ import annotations

import json

import pytest
from nightly_support import Broker, Listener, need

from edge import BrokerSettings, EdgeError, SessionReporter, check_topic_part, schema_path, session_payload

OK = {"session_id": "20261204T101500Z-3f2a", "started_utc": "2026-12-04T10:15:00Z", "duration_s": 40.04,
      "complete": True, "stop_reason": "complete", "demo_weights": True,
      "screening": {"face_share": 0.931, "voiced_share": 0.412,
                    "emotion_vote": {"status": "ok", "level": "Low", "pattern": "PPN", "parts": []},
                    "phq8": {"status": "ok", "mu": 6.2, "sigma": 1.6, "interval": [3.1, 9.3], "band": "mild (5-9)"}},
      "sources": {"video": "camera:0", "audio": "mic"}, "telemetry": {}, "summary_file": "/var/lib/x.json"}
ABSTAINED = dict(OK, complete=False, stop_reason="walked away: no face for 8 s",
                 screening={"face_share": 0.1, "voiced_share": 0.0,
                            "emotion_vote": {"status": "abstained", "reason": "too few face frames (12 of 30)"},
                            "phq8": {"status": "abstained", "reason": "too little voice"}})


class _Result:
    def __init__(self, summary):
        self.summary = summary

    def to_dict(self):
        return dict(self.summary)


def _validate(payload):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(payload, json.loads(schema_path("kiosk_session").read_text()))


@pytest.mark.parametrize("summary", [OK, ABSTAINED], ids=["readings", "abstained"])
def test_a_session_summary_is_schema_valid_and_carries_no_media_or_paths(summary):
    payload = session_payload(summary, "clinic-a")
    _validate(payload)
    assert payload["message_id"] == f"clinic-a/session/{summary['session_id']}"
    assert "sources" not in payload and "summary_file" not in payload  # no device paths or sources
    assert payload["demo_weights"] is True and "not a diagnosis" in payload["notice"]
    if summary is ABSTAINED:
        assert payload["vote"] == {"status": "abstained", "level": None, "reason": "too few face frames (12 of 30)"}
        assert payload["phq8"]["mu"] is None and payload["phq8"]["reason"] == "too little voice"


def test_the_shipped_schemas_are_found_and_unknown_names_refused():
    for name in ("nightly_payload", "gateway_state", "kiosk_session"):
        assert json.loads(schema_path(name).read_text())["type"] == "object"
    with pytest.raises(ValueError):
        schema_path("../../etc/passwd")


def test_topic_levels_without_wildcards():
    check_topic_part("kiosk.site_id", "clinic-a")
    check_topic_part("mqtt.topic_prefix", "provider/region-1")
    for bad in ("a/b", "a+", "#", " "):
        with pytest.raises(EdgeError, match="kiosk.site_id"):
            check_topic_part("kiosk.site_id", bad)


def test_the_reporter_queues_while_the_broker_is_away_then_delivers_in_order(tmp_path):
    need("mosquitto")
    pytest.importorskip("paho.mqtt")
    broker = Broker(tmp_path)  # not started: away
    settings = BrokerSettings("127.0.0.1", broker.port, timeout_s=2)
    reporter = SessionReporter(settings, str(tmp_path / "queue"), "edge", "clinic-a", log=lambda m: None)
    first = dict(OK, session_id="s1")
    reporter.publish(_Result(first))
    reporter.close()
    broker.start()
    try:
        listener = Listener(broker.port, "care-team", topic="edge/+/session")
        reporter.publish(_Result(dict(OK, session_id="s2")))
        reporter.publish(_Result(first))  # the same session again: never twice
        got = listener.wait_for(2)
        reporter.close()
        listener.close()
    finally:
        broker.stop()
    assert [m["payload"]["session_id"] for m in got] == ["s1", "s2"]
    assert all(m["topic"] == "edge/clinic-a/session" and m["qos"] == 1 for m in got)
