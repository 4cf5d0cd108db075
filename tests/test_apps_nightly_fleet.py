"""Fleet reporting against a real Mosquitto: the offline queue (in order, none twice), QoS 1
redelivery to a subscriber that was away, the --mqtt override, and a missing paho-mqtt."""
from __future__ import annotations

import os
import sqlite3

import pytest
from nightly_support import Broker, Listener, drop, month, need, nightly, pending_ids, write_profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_WAV = os.path.join(ROOT, "edge", "samples", "demo_speech.wav")

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _parts():
    need("mosquitto")
    pytest.importorskip("paho.mqtt")


def test_broker_away_messages_queue_and_go_out_next_run_in_order_none_twice(tmp_path):
    broker = Broker(tmp_path)  # not started: the broker is away
    profile = write_profile(tmp_path, mqtt_port=broker.port)
    inbox, queue = tmp_path / "inbox", tmp_path / "mqtt-queue"
    days = month(3)
    drop(inbox, "p01", days[0], DEMO_WAV)
    drop(inbox, "p02", days[0], DEMO_WAV)
    assert nightly(profile) == 0
    first = pending_ids(queue)
    assert len(first) == 3 and first[-1].startswith("gw-test/state/")  # p01, p02, then the state
    drop(inbox, "p01", days[1], DEMO_WAV)
    assert nightly(profile) == 0  # still away: the queue grows, older messages first
    second = pending_ids(queue)
    assert second[:3] == first and len(second) == 5  # p01's new nightly message and a new state
    assert oct((queue / "outbox.sqlite").stat().st_mode & 0o777) == "0o600"

    broker.start()
    try:
        listener = Listener(broker.port, "care-team")
        drop(inbox, "p02", days[2], DEMO_WAV)
        assert nightly(profile) == 0  # delivers the queue in order, then this run's messages
        got = listener.wait_for(7)
        ids = [m["payload"]["message_id"] for m in got]
        assert ids[:5] == second, "queued messages must go out first, in the order they were queued"
        assert len(ids) == 7 and len(set(ids)) == 7  # + p02's new nightly message and this run's state
        assert pending_ids(queue) == []
        assert nightly(profile) == 0  # nothing new: only a new state message, nothing again
        got = listener.wait_for(8)
        ids = [m["payload"]["message_id"] for m in got]
        assert len(ids) == 8 and len(set(ids)) == 8 and ids[-1].startswith("gw-test/state/")
        assert all(m["qos"] == 1 for m in got)
        listener.close()
    finally:
        broker.stop()


def test_qos1_messages_reach_a_subscriber_that_was_away(tmp_path):
    broker = Broker(tmp_path).start()
    try:
        # A persistent session subscribes at QoS 1, then goes away.
        away = Listener(broker.port, "care-team-tablet", topic="edge/gw-test/+/nightly", clean=False)
        away.close()
        profile = write_profile(tmp_path)  # MQTT off in the profile: --mqtt turns it on for this run
        drop(tmp_path / "inbox", "p01", month(1)[0], DEMO_WAV)
        assert nightly(profile, mqtt=f"mqtt://127.0.0.1:{broker.port}") == 0
        back = Listener(broker.port, "care-team-tablet", topic="edge/gw-test/+/nightly", clean=False)
        got = back.wait_for(1)
        back.close()
        assert [m["topic"] for m in got] == ["edge/gw-test/p01/nightly"]
        assert got[0]["qos"] == 1 and not got[0]["retain"]
    finally:
        broker.stop()


def test_without_paho_the_messages_wait_with_a_clear_reason(tmp_path, monkeypatch, capsys):
    import sys

    broker = Broker(tmp_path)
    profile = write_profile(tmp_path, mqtt_port=broker.port)
    drop(tmp_path / "inbox", "p01", month(1)[0], DEMO_WAV)
    monkeypatch.setitem(sys.modules, "paho", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    assert nightly(profile) == 0
    out = capsys.readouterr().out
    assert "paho-mqtt is not installed" in out and "[fleet]" in out
    assert len(pending_ids(tmp_path / "mqtt-queue")) == 2
    db = sqlite3.connect(str(tmp_path / "db" / "trends.sqlite"))
    assert db.execute("SELECT state FROM recordings").fetchone()[0] == "done"  # the night itself went on
