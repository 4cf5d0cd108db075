"""Fleet reporting over MQTT (paho-mqtt, the `fleet` extra): an on-disk queue drained in order.

Topics (`mqtt.topic_prefix`, default `edge`), payload schemas in edge/reporting/schemas/:
- `<prefix>/<gateway>/<person>/nightly`: one message per person and night (QoS 1, not
  retained), `nightly_payload.schema.json` (edge nightly);
- `<prefix>/<gateway>/state`: the gateway's last state (QoS 1, retained),
  `gateway_state.schema.json` (edge nightly);
- `<prefix>/<site>/session`: one kiosk session's summary (QoS 1, not retained),
  `kiosk_session.schema.json` (edge kiosk with `kiosk.report: true`).
No raw audio or images, no names: a person is the opaque id of its inbox folder. The care
team's `edge fleet serve` subscribes to all three (edge.apps.fleet).

Every message is first written to the queue (`mqtt.queue_dir`/outbox.sqlite, owner-only)
under a message id that is the same when the same night is reported again (a rerun after
a crash adds nothing), then the queue is drained oldest first: publish one message, wait
for the broker's PUBACK, mark it sent, the next one. A broker that cannot be reached leaves
the rest for the next run, in order; a message marked sent is never sent again. (QoS 1 is
at-least-once on the wire: a job killed between the PUBACK and the mark sends that one
message again; every payload carries its `message_id` for consumers to drop repeats.)
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple
from urllib.parse import urlparse

from edge.errors import EdgeError, first_line
from edge.store.files import FILE_MODE, private_dir

QOS = 1
SENT_KEEP_DAYS = 30.0
FLEET_EXTRA_HINT = "pip install 'edge-depression-screening[fleet]' (paho-mqtt)"


@dataclass
class BrokerSettings:
    host: str
    port: int
    tls: bool = False
    ca_file: Optional[str] = None
    username: Optional[str] = None
    password_file: Optional[str] = None
    timeout_s: float = 10.0

    @property
    def address(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_mqtt_url(url: str, settings: BrokerSettings) -> BrokerSettings:
    """`mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (TLS) over the profile's broker address."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
        raise EdgeError(f"--mqtt must look like mqtt://HOST:PORT or mqtts://HOST:PORT, got {url!r}")
    try:
        port = parsed.port
    except ValueError:
        raise EdgeError(f"--mqtt: the port in {url!r} must be a number from 1 to 65535") from None
    tls = parsed.scheme == "mqtts" or (settings.tls and parsed.scheme != "mqtt")
    return BrokerSettings(parsed.hostname, port or (8883 if tls else 1883), tls, settings.ca_file,
                          settings.username, settings.password_file, settings.timeout_s)


def broker_settings(mqtt) -> BrokerSettings:
    """The broker of a profile's `mqtt` section."""
    return BrokerSettings(mqtt.host, int(mqtt.port), bool(mqtt.tls), mqtt.ca_file, mqtt.username,
                          mqtt.password_file, float(mqtt.timeout_s))


def nightly_topic(prefix: str, gateway: str, person: str) -> str:
    return f"{prefix}/{gateway}/{person}/nightly"


def state_topic(prefix: str, gateway: str) -> str:
    return f"{prefix}/{gateway}/state"


def session_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/session"


def check_topic_part(key: str, value: str) -> None:
    """One level of a topic (a gateway or site id, the prefix may have levels): no wildcards."""
    if any(c in value for c in "+#") or (key != "mqtt.topic_prefix" and "/" in value) or not value.strip():
        raise EdgeError(f"key '{key}' must be a non-empty MQTT topic level without + # or /, got {value!r}")


class Outbox:
    """The on-disk queue (an SQLite file in `queue_dir`, owner-only)."""

    def __init__(self, queue_dir: str):
        folder = private_dir(queue_dir)
        self.path = folder / "outbox.sqlite"
        try:
            if not self.path.exists():
                os.close(os.open(str(self.path), os.O_WRONLY | os.O_CREAT, FILE_MODE))
            self.db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                            "message_id TEXT UNIQUE NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, "
                            "retain INTEGER NOT NULL, queued_utc TEXT NOT NULL, sent_utc TEXT)")
        except (OSError, sqlite3.Error) as exc:
            raise EdgeError(f"mqtt.queue_dir: {folder} cannot hold the message queue: {first_line(exc)}") from None

    def enqueue(self, message_id: str, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Queue a message; False when one with this id was queued before (sent or not)."""
        cursor = self.db.execute("INSERT OR IGNORE INTO outbox (message_id, topic, payload, retain, queued_utc) "
                                 "VALUES (?, ?, ?, ?, ?)", (message_id, topic, payload, int(retain),
                                                           time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
        return cursor.rowcount == 1

    def pending(self) -> List[Tuple[int, str, str, bytes, bool]]:
        return [(r[0], r[1], r[2], bytes(r[3]), bool(r[4])) for r in self.db.execute(
            "SELECT seq, message_id, topic, payload, retain FROM outbox WHERE sent_utc IS NULL ORDER BY seq")]

    def mark_sent(self, seq: int) -> None:
        self.db.execute("UPDATE outbox SET sent_utc=? WHERE seq=?",
                        (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), seq))

    def prune(self, keep_days: float = SENT_KEEP_DAYS) -> None:
        """Forget sent messages older than keep_days (their ids guard a rerun of the same night only)."""
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - keep_days * 86400))
        self.db.execute("DELETE FROM outbox WHERE sent_utc IS NOT NULL AND sent_utc < ?", (cutoff,))

    def count_pending(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox WHERE sent_utc IS NULL").fetchone()[0])

    def close(self) -> None:
        self.db.close()


@dataclass
class DrainResult:
    sent: int
    left: int
    error: Optional[str] = None


def _import_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        return None
    return mqtt


def publish_outbox(outbox: Outbox, settings: BrokerSettings, client_id: str) -> DrainResult:
    """Publish every queued message in order (see the module docstring)."""
    outbox.prune()
    pending = outbox.pending()
    if not pending:
        return DrainResult(0, 0)
    mqtt = _import_paho()
    if mqtt is None:
        return DrainResult(0, len(pending), f"paho-mqtt is not installed: {FLEET_EXTRA_HINT}")
    try:
        client = mqtt_client(settings, client_id)
    except EdgeError as exc:
        return DrainResult(0, len(pending), str(exc))
    connected = threading.Event()
    refused: List[str] = []

    def on_connect(client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=max(5, int(settings.timeout_s * 3)))
    except (OSError, ValueError) as exc:
        return DrainResult(0, len(pending), f"broker {settings.address} unreachable: {first_line(exc)}")
    sent = 0
    client.loop_start()
    try:
        if not connected.wait(settings.timeout_s) or refused:
            why = refused[0] if refused else f"no answer in {settings.timeout_s:g} s"
            return DrainResult(0, len(pending), f"broker {settings.address} refused the connection: {why}")
        for seq, _message_id, topic, payload, retain in pending:
            info = client.publish(topic, payload, qos=QOS, retain=retain)
            try:
                info.wait_for_publish(settings.timeout_s)
            except (RuntimeError, ValueError) as exc:
                return DrainResult(sent, len(pending) - sent, f"publishing stopped: {first_line(exc)}")
            if not info.is_published():
                return DrainResult(sent, len(pending) - sent,
                                   f"broker {settings.address} did not acknowledge in {settings.timeout_s:g} s")
            outbox.mark_sent(seq)
            sent += 1
        return DrainResult(sent, 0)
    finally:
        client.disconnect()
        client.loop_stop()


def mqtt_client(settings: BrokerSettings, client_id: str, mqtt5: bool = False, **options):
    """A paho-mqtt 2.x client for `settings` (TLS, user and password file applied), not connected.

    mqtt5: MQTT 5 (shared subscriptions, session expiry; the fleet consumer), else 3.1.1 with a
    clean session (the publishers). options: more keyword arguments for paho's Client (e.g.
    manual_ack=True). EdgeError when paho-mqtt is missing or the password file cannot be read."""
    mqtt = _import_paho()
    if mqtt is None:
        raise EdgeError(f"paho-mqtt is not installed: {FLEET_EXTRA_HINT}")
    if mqtt5:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **options)
    else:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, **options)
    client.connect_timeout = settings.timeout_s
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file)
    if settings.username:
        password = None
        if settings.password_file:
            try:
                with open(settings.password_file) as f:
                    password = f.read().strip()
            except OSError as exc:
                raise EdgeError(f"mqtt.password_file {settings.password_file}: {first_line(exc)}") from None
        client.username_pw_set(settings.username, password)
    return client


SCHEMAS = ("nightly_payload", "gateway_state", "kiosk_session")


def schema_path(name: str) -> Path:
    """A payload schema shipped with the package (one of SCHEMAS)."""
    if name not in SCHEMAS:
        raise ValueError(f"no payload schema {name!r} (known: {', '.join(SCHEMAS)})")
    return Path(__file__).parent / "schemas" / f"{name}.schema.json"
