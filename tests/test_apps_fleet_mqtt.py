"""`edge fleet serve` with real parts: a persistent Mosquitto, SQLite and a throw-away PostgreSQL,
a simulated fleet made by the gateways' own code (edge nightly's builders, Outbox, publish_outbox),
gateways offline for days then catching up, the consumer SIGKILLed mid-stream and restarted, the
broker restarted, two consumers on an MQTT 5 shared subscription, per-gateway broker ACLs, and a
real kiosk reporting its session. Every message stored exactly once.

The default run is 100 gateways x 2 people x 6 nights (about 1,800 messages); the full month
(100 x 10 x 30, about 33,000 messages) is the slow-marked test and bench/fleet_bench.py.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("paho.mqtt")

from fleet_support import (  # noqa: E402
    PersistentBroker,
    PostgresCluster,
    Service,
    care_profile,
    expected_ids,
    publish_nights,
    simulate_fleet,
    wait_stored,
)
from nightly_support import need  # noqa: E402

from edge.apps.fleet.store import FleetStore, database_url  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _parts():
    need("mosquitto")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return simulate_fleet(tmp_path_factory.mktemp("gateways"), 100, 2, 6)


def _stored_ids(store) -> list:
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(store.t["messages"].c.message_id))]


def _check_once(store, fleet, nights):
    wanted = expected_ids(fleet, nights)
    assert len(set(wanted)) == len(wanted)
    have = wait_stored(store, len(wanted), 60)
    time.sleep(0.5)  # anything more that was going to arrive
    ids = _stored_ids(store)
    assert sorted(ids) == sorted(wanted), f"{have} stored of {len(wanted)}"
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        last = max(night for its in fleet.values() for night, _ in its)
        people = conn.execute(sa.select(store.t["people"].c.night)).all()
        assert len(people) == len({tuple(mid.split("/")[:2]) for mid in wanted if "/state/" not in mid})
        assert {r[0] for r in people} == {last}, "every person's current state is the last night"
        gateways = conn.execute(sa.select(store.t["gateways"].c.night)).all()
        assert len(gateways) == len(fleet) and {r[0] for r in gateways} == {last}
    assert store.count("dead") == 0


def _publish_in_thread(fleet, queue_root, port, nights, offline, broker_may_fail=False):
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        sent=publish_nights(fleet, queue_root, port, nights, offline, broker_may_fail)))
    thread.start()
    return thread, result


def test_a_month_of_a_fleet_into_sqlite_through_a_kill_and_a_broker_restart(tmp_path, fleet):
    broker = PersistentBroker(tmp_path / "broker").start()
    database = tmp_path / "fleet.sqlite"
    profile = care_profile(tmp_path, broker.port, str(database))
    offline = {f"gw{g:03d}": range(1, 4) for g in range(5, 20)}  # 15 gateways away for three nights
    queues = tmp_path / "queues"
    service = Service(profile)
    try:
        publish_nights(fleet, queues, broker.port, range(0, 2), offline)
        # SIGKILL mid-stream: while night 2 goes out; night 3 comes while the service is down.
        thread, _ = _publish_in_thread(fleet, queues, broker.port, range(2, 3), offline)
        time.sleep(0.4)
        service.kill()
        thread.join()
        publish_nights(fleet, queues, broker.port, range(3, 4), offline)
        # The broker restarts while night 3 waits in the dead service's session (it saves and restores it).
        broker.stop()
        broker.start()
        service = Service(profile)
        # ... and again mid-stream: publishers then find no broker, the service loses its connection.
        thread, _ = _publish_in_thread(fleet, queues, broker.port, range(4, 5), offline, broker_may_fail=True)
        time.sleep(0.5)
        broker.stop()
        thread.join()
        broker.start()
        publish_nights(fleet, queues, broker.port, range(5, 6), None)  # everyone, and what waited, in order
        store = FleetStore(database_url(str(database)))
        _check_once(store, fleet, range(6))
        # A gateway that publishes again (killed between the broker's PUBACK and marking it sent).
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw000-again")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        again = [m for its in list(fleet.values())[:3] for _night, ms in its[:2] for m in ms]
        for _mid, topic, payload, _retain in again:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        time.sleep(1.5)
        assert store.count("messages") == len(expected_ids(fleet, range(6)))
        store.close()
    finally:
        code = service.stop()
        broker.remove()
    assert code == 0
    out = service.proc.stdout.read().decode()
    repeats = int(out.split(" repeats dropped")[0].split(", ")[-1].split()[0])
    assert repeats >= len(again), out


@pytest.fixture(scope="module")
def postgres():
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


def test_two_consumers_share_the_load_into_postgresql(tmp_path, fleet, postgres):
    broker = PersistentBroker(tmp_path / "broker").start()
    url = postgres.new_database()
    profile = care_profile(tmp_path, broker.port, url, share_group="edge-fleet")
    services = [Service(profile, "edge-fleet-a"), Service(profile, "edge-fleet-b")]
    queues = tmp_path / "queues"
    try:
        publish_nights(fleet, queues, broker.port, range(0, 2), None)
        thread, _ = _publish_in_thread(fleet, queues, broker.port, range(2, 4), None)
        time.sleep(0.4)
        services[1].kill()  # one of the two dies mid-stream; its share waits at the broker for it
        time.sleep(0.5)
        services[1] = Service(profile, "edge-fleet-b")
        thread.join()
        publish_nights(fleet, queues, broker.port, range(4, 6), None)
        store = FleetStore(database_url(url))
        _check_once(store, fleet, range(6))
        store.close()
    finally:
        codes = [s.stop() for s in services]
        broker.remove()
    assert codes == [0, 0]
    for service in services:
        out = service.proc.stdout.read().decode()
        received = int(out.split(" received")[0].split(": ")[-1])
        assert received > 100, f"both consumers take part: {out}"


def test_per_gateway_credentials_keep_a_gateway_to_its_own_topics(tmp_path, fleet):
    """deploy/mosquitto/'s ACL on a real broker: gw000 may write under edge/gw000/ only."""
    need("mosquitto_passwd")
    broker = PersistentBroker(tmp_path / "broker")
    passwords = broker.store_dir / "passwords"  # where the broker's own user can read it
    for user in ("edge-fleet", "gw000"):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if user == "edge-fleet" else []), str(passwords), user,
                        f"{user}-secret"], check=True, capture_output=True)
    acl = broker.store_dir / "edge-acl"
    acl.write_text((ROOT / "deploy" / "mosquitto" / "edge-acl").read_text())
    for path in (passwords, acl):
        path.chmod(0o600)
        shutil.chown(path, user=broker.store_dir.owner())
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
                           + f"password_file {passwords}\nacl_file {acl}\n")
    broker.start()
    for user in ("edge-fleet", "gw000"):
        (tmp_path / f"{user}.password").write_text(f"{user}-secret\n")
    profile = care_profile(tmp_path, broker.port, str(tmp_path / "fleet.sqlite"))
    import yaml

    data = yaml.safe_load(profile.read_text())
    data["mqtt"].update(username="edge-fleet", password_file=str(tmp_path / "edge-fleet.password"))
    profile.write_text(yaml.safe_dump(data))
    service = Service(profile)
    from edge import BrokerSettings, Outbox, publish_outbox

    try:
        own = fleet["gw000"][0][1]
        forged = [(mid.replace("gw000", "gw001"), topic.replace("gw000", "gw001"),
                   payload.replace(b"gw000", b"gw001"), retain) for mid, topic, payload, retain in fleet["gw000"][1][1]]
        outbox = Outbox(str(tmp_path / "queue"))
        for message in own + forged:
            outbox.enqueue(*message)
        settings = BrokerSettings("127.0.0.1", broker.port, username="gw000",
                                  password_file=str(tmp_path / "gw000.password"))
        assert publish_outbox(outbox, settings, "edge-nightly-gw000").error is None
        stranger = Outbox(str(tmp_path / "q2"))
        stranger.enqueue(*own[0])
        anonymous = publish_outbox(stranger, BrokerSettings("127.0.0.1", broker.port, timeout_s=3), "x")
        assert anonymous.sent == 0 and "refused" in anonymous.error
        store = FleetStore(database_url(str(tmp_path / "fleet.sqlite")))
        assert wait_stored(store, len(own), 20) == len(own)
        time.sleep(1.0)
        assert sorted(_stored_ids(store)) == sorted(m[0] for m in own), "the broker dropped the forged ones"
        store.close()
    finally:
        service.stop()
        broker.remove()


def test_a_kiosk_reports_its_session_and_hostile_messages_are_dead_letters(tmp_path):
    """A real `edge kiosk` with kiosk.report on: its session's summary (no media) reaches the service;
    malformed, oversized, forged and misrouted messages go to the dead letters and the service goes on."""
    import yaml
    from kiosk_support import DEMO_VIDEO, DEMO_WAV, KioskProcess, kiosk_profile, post, wait_phase

    broker = PersistentBroker(tmp_path / "broker").start()
    database = tmp_path / "fleet.sqlite"
    service = Service(care_profile(tmp_path, broker.port, str(database)))
    kiosk_dir = tmp_path / "kiosk"
    kiosk_dir.mkdir()
    profile = kiosk_profile(kiosk_dir, report=True, site_id="clinic-a")
    data = yaml.safe_load(profile.read_text())
    data["mqtt"].update(port=broker.port, queue_dir=str(kiosk_dir / "queue"), timeout_s=5)
    profile.write_text(yaml.safe_dump(data))
    import paho.mqtt.client as mqtt

    try:
        with KioskProcess("--config", str(profile), "--port", "0", "--video", DEMO_VIDEO, "--audio", DEMO_WAV) as k:
            assert k.url, k.stop()
            session_id = post(k.url, "start")[2]["state"]["session_id"]
            wait_phase(k.url, "result", 30)
            store = FleetStore(database_url(str(database)))
            assert wait_stored(store, 1, 20, table="sessions") == 1
            code, out, err = k.stop()
        assert code == 0, err
        import sqlalchemy as sa

        with store.engine.connect() as conn:
            row = conn.execute(sa.select(store.t["sessions"])).one()._mapping
        assert (row["site"], row["session_id"]) == ("clinic-a", session_id)
        assert row["demo_weights"] is True
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hostile")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        state = {"schema": "edge-gateway-state/1", "message_id": "gw9/state/1", "gateway": "gw9", "run_id": "1",
                 "started_utc": "2026-12-01T03:00:00Z", "finished_utc": "2026-12-01T03:05:00Z",
                 "night": "2026-12-01", "processed": 1, "quarantined": 0, "waiting": 0, "links_not_followed": 0,
                 "persons": 1, "persons_flagged": 0, "status": "ok", "version": "0.1.0", "notice": "n"}
        hostile = [("edge/gw9/state", b"{not json"), ("edge/gw9/state", b"{" + b" " * 70000 + b"}"),
                   ("edge/gw8/state", json.dumps(state).encode()),  # forged: gw9's payload on gw8's topic
                   ("edge/gw9/p1/nightly", json.dumps(state).encode()),  # misrouted: a state as a nightly
                   ("edge/gw9/state", json.dumps(dict(state, message_id="gw7/state/1")).encode()),
                   ("edge/gw9/state", json.dumps(state).encode())]  # and a good one after them all
        for topic, payload in hostile:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        assert wait_stored(store, 5, 20, table="dead") == 5
        assert wait_stored(store, 2, 20) == 2  # the session and the good state
        with store.engine.connect() as conn:
            reasons = [r[0] for r in conn.execute(sa.select(store.t["dead"].c.reason))]
        assert any("not UTF-8 JSON" in r for r in reasons) and any("over fleet.max_payload" in r for r in reasons)
        assert any("forged" in r for r in reasons) and any("not valid against nightly_payload" in r for r in reasons)
        store.close()
    finally:
        service.stop()
        broker.remove()


@pytest.mark.slow
def test_the_full_month_100_gateways_10_people_30_nights(tmp_path):
    """The issue's size: 100 gateways x 10 people x 30 nights, 20 gateways offline for a week, the
    consumer killed twice and the broker restarted once; about 33,000 messages, each stored once."""
    full = simulate_fleet(tmp_path / "gateways", 100, 10, 30)
    broker = PersistentBroker(tmp_path / "broker").start()
    database = tmp_path / "fleet.sqlite"
    profile = care_profile(tmp_path, broker.port, str(database))
    offline = {f"gw{g:03d}": range(10, 17) for g in range(20)}
    queues = tmp_path / "queues"
    service = Service(profile)
    try:
        for chunk in (range(0, 10), range(10, 20)):
            thread, _ = _publish_in_thread(full, queues, broker.port, chunk, offline)
            time.sleep(2.0)
            service.kill()
            time.sleep(1.0)
            service = Service(profile)
            thread.join()
        broker.stop()
        broker.start()
        publish_nights(full, queues, broker.port, range(20, 30), offline)
        store = FleetStore(database_url(str(database)))
        _check_once(store, full, range(30))
        store.close()
    finally:
        service.stop()
        broker.remove()


def test_without_a_broker_the_service_runs_and_the_dashboard_says_so(tmp_path):
    """`edge fleet serve` on a fresh machine whose broker is away: the first user is made, the dashboard
    serves and says that nothing is received; SIGTERM ends it with exit 0."""
    import re
    import urllib.parse
    import urllib.request
    from http.cookiejar import CookieJar

    from nightly_support import free_port

    service = Service(care_profile(tmp_path, free_port(), str(tmp_path / "fleet.sqlite")))
    try:
        assert service.admin_password, "a first user with its password, shown once"
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        page = opener.open(service.url + "login", timeout=10).read().decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"csrf": csrf, "user": "admin", "password": service.admin_password})
        page = opener.open(service.url + "login", form.encode(), timeout=10).read().decode()
        assert "Not receiving" in page, page[-1500:]
        time.sleep(1.0)  # paho's first attempt has failed by now
        page = opener.open(service.url, timeout=10).read().decode()
        assert re.search(r"Not receiving: the broker mqtt://127.0.0.1:\d+ cannot be reached", page), page[-1500:]
    finally:
        assert service.stop() == 0
    assert "cannot be reached; retrying" in service.log_path.read_text()
