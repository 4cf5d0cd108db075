"""The MQTT side of `edge fleet serve`: a persistent MQTT 5 session, QoS 1, acknowledged after commit.

- Connects with clean_start off and a session expiry (`fleet.session_expiry_s`): while the
  service is down the broker keeps its subscriptions and queues the messages for it
  (Mosquitto: `max_queued_messages` must be raised from its default of 1000, deploy/mosquitto/).
- Manual acknowledgement: a message's PUBACK goes to the broker only after the transaction
  that stored it (or its dead letter) committed. A consumer killed in between gets the message
  again from the broker, finds its message_id stored and adds nothing: nothing lost, nothing
  twice.
- Messages are stored in batches (`fleet.batch_messages` a transaction); the broker may have
  that many and more in flight (MQTT 5 Receive Maximum).
- `fleet.share_group`: the subscriptions are shared (`$share/<group>/...`); the broker gives
  each message to one of the group's processes, all writing to one PostgreSQL.
- A database that is away (a restart, a full disk) stops the acknowledgements, not the
  messages: the batch is tried again until it commits; a message the database refuses on its
  own goes to the dead-letter table with the reason. One bad message never stops the service.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from edge import BrokerSettings, first_line, mqtt_client
from edge.apps.fleet.ingest import Checker
from edge.apps.fleet.store import BatchResult, FleetStore, Message

RETRY_S = 1.0


@dataclass
class ConsumerStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    batches: int = 0
    connected: bool = False
    last_error: Optional[str] = None


class Consumer:
    """See the module docstring. start() connects (and keeps reconnecting); stop() finishes the
    batch in hand, then disconnects (the session stays at the broker)."""

    def __init__(self, store: FleetStore, checker: Checker, settings: BrokerSettings, client_id: str,
                 filters: Sequence[str], session_expiry_s: int, batch_messages: int,
                 log: Callable[[str], None] = print):
        self.store = store
        self.checker = checker
        self.settings = settings
        self.client_id = client_id
        self.filters = tuple(filters)
        self.session_expiry_s = int(session_expiry_s)
        self.batch_messages = int(batch_messages)
        self.log = log
        self.stats = ConsumerStats()
        self._inbox: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="fleet store", daemon=True)
        self.client = None

    # ----- MQTT ---------------------------------------------------------------------------
    def start(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.client = client = mqtt_client(self.settings, self.client_id, mqtt5=True, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        client.reconnect_delay_set(1, 30)
        client.max_inflight_messages_set(max(20, self.batch_messages))
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        properties.ReceiveMaximum = min(65535, max(20, 2 * self.batch_messages))
        self._worker.start()
        client.connect_async(self.settings.host, self.settings.port, keepalive=30, clean_start=False,
                             properties=properties)
        client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self.stats.last_error = f"broker {self.settings.address} refused the connection: {reason_code}"
            self.log(self.stats.last_error)
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.stats.connected = True
        self.stats.last_error = None
        resumed = "resumed its session" if flags.session_present else "new session"
        self.log(f"connected to {self.settings.address} as {self.client_id} ({resumed}); subscribing to "
                 + ", ".join(self.filters))
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])

    def _on_connect_fail(self, client, userdata) -> None:
        away = f"the broker {self.settings.address} cannot be reached"
        if self.stats.last_error != away:  # once per outage, not at every retry
            self.stats.last_error = away
            self.log(f"{away}; retrying (messages wait at the broker for this session, or on the devices while "
                     "the broker itself is away)")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.stats.connected = False
        if not self._stop.is_set():
            self.log(f"disconnected from {self.settings.address} ({reason_code}); reconnecting")

    def _on_message(self, client, userdata, message) -> None:
        self._inbox.put((message.topic, bytes(message.payload), message.mid, message.qos))

    # ----- storing ------------------------------------------------------------------------
    def _next_batch(self) -> List[Tuple[str, bytes, int, int]]:
        try:
            batch = [self._inbox.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + 0.05  # a short wait fills a batch under load, costs little when idle
        while len(batch) < self.batch_messages:
            try:
                batch.append(self._inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while not self._stop.is_set() or not self._inbox.empty():
            batch = self._next_batch()
            if not batch:
                if self._stop.is_set():
                    return
                continue
            self.stats.received += len(batch)
            self.store_and_ack(batch)

    def store_and_ack(self, batch: List[Tuple[str, bytes, int, int]]) -> BatchResult:
        """Check, store (one transaction, retried while the database is away), then acknowledge."""
        messages: List[Message] = []
        dead: List[Tuple[str, str, bytes]] = []
        for topic, payload, _mid, _qos in batch:
            checked = self.checker.check(topic, payload)
            if isinstance(checked, str):
                dead.append((topic, checked, payload))
                self.log(f"dead letter from {topic[:120]!r}: {checked}")
            else:
                messages.append(checked)
        result = self._store(messages, dead)
        if result is None:  # stopped while the database was away: the broker keeps them (not acknowledged)
            return BatchResult()
        self.stats.stored += result.stored
        self.stats.duplicates += result.duplicates
        self.stats.dead += result.dead
        self.stats.batches += 1
        if self.client is not None:
            for _topic, _payload, mid, qos in batch:
                if qos > 0:
                    self.client.ack(mid, qos)
        return result

    def _store(self, messages: List[Message], dead: List[Tuple[str, str, bytes]]) -> Optional[BatchResult]:
        import sqlalchemy as sa

        while True:
            try:
                return self.store.store_batch(messages, dead)
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                if getattr(exc, "connection_invalidated", False) or isinstance(exc, sa.exc.InterfaceError) \
                        or _database_away(exc):
                    self.stats.last_error = f"database away: {first_line(exc.orig or exc)}"
                    self.log(f"{self.stats.last_error}; the batch waits (not acknowledged)")
                    if self._stop.wait(RETRY_S):
                        return None
                    continue
                return self._one_by_one(messages, dead, exc)
            except sa.exc.DBAPIError as exc:
                return self._one_by_one(messages, dead, exc)

    def _one_by_one(self, messages: List[Message], dead: List[Tuple[str, str, bytes]], first) -> BatchResult:
        """The batch was refused: each message on its own, what the database refuses to the dead letters."""
        import json

        import sqlalchemy as sa

        self.log(f"a batch was refused ({first_line(getattr(first, 'orig', None) or first)}); one by one")
        total = self.store.store_batch([], dead)
        for message in messages:
            try:
                one = self.store.store_batch([message])
            except sa.exc.DBAPIError as exc:
                payload = json.dumps(message.payload).encode()
                one = self.store.store_batch([], [(f"({message.kind} from {message.source})",
                                                   f"the database refused it: {first_line(exc.orig or exc)}",
                                                   payload)])
            total.stored += one.stored
            total.duplicates += one.duplicates
            total.dead += one.dead
        return total

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout_s)
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


def _database_away(exc) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return any(w in text for w in ("could not connect", "connection", "server closed", "terminating",
                                   "database is locked", "disk i/o", "unable to open"))
