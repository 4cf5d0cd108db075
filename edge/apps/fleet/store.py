"""The care team's database: SQLite by default, PostgreSQL by URL, one code path (SQLAlchemy Core).

Each message is stored once by its `message_id`: the id goes into `messages` with
INSERT ... ON CONFLICT DO NOTHING in the same transaction as the message's rows, so a message
delivered twice (a consumer killed before its acknowledgement, a gateway that published again)
finds its id there and adds nothing. A batch is one transaction; the consumer acknowledges its
messages to the broker only after the commit.

Versioned migrations (`MIGRATIONS`, the version in `fleet_meta`) run at start on both engines.
A nightly message updates the person's current state (flags, baseline) only when it is the
newest night seen for that person: a gateway catching up after days offline, or two consumers
taking one person's nights out of order, never turns a newer state back.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from edge import EdgeError, first_line

try:
    import sqlalchemy as sa
except ImportError:  # the dashboard's server needs it; the device side never imports this module
    sa = None

SERVER_EXTRA_HINT = "pip install 'edge-depression-screening[fleet-server]'"
VOICE = ("pause_ratio", "speaking_rate", "f0_mean_st", "f0_var", "loudness", "jitter", "shimmer_db")
MEASURES = ("phq8_mu",) + VOICE
DEAD_PAYLOAD_CHARS = 2000  # what a dead letter keeps of a payload (for the reason; never the whole)


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _tables(meta):
    S, F, Int, B, T = sa.String, sa.Float, sa.Integer, sa.Boolean, sa.Text
    t = {}
    t["meta"] = sa.Table("fleet_meta", meta, sa.Column("key", S(64), primary_key=True),
                         sa.Column("value", S(200), nullable=False))
    t["messages"] = sa.Table("messages", meta, sa.Column("message_id", S(200), primary_key=True),
                             sa.Column("kind", S(16), nullable=False), sa.Column("source", S(100), nullable=False),
                             sa.Column("received_utc", S(20), nullable=False))
    t["gateways"] = sa.Table(
        "gateways", meta, sa.Column("gateway", S(100), primary_key=True), sa.Column("kind", S(16), nullable=False),
        sa.Column("first_seen_utc", S(20), nullable=False), sa.Column("last_seen_utc", S(20), nullable=False),
        sa.Column("state_utc", S(20)), sa.Column("night", S(10)), sa.Column("status", S(16)),
        sa.Column("waiting", Int), sa.Column("quarantined", Int), sa.Column("persons", Int),
        sa.Column("persons_flagged", Int), sa.Column("version", S(40)), sa.Column("run_id", S(100)))
    t["people"] = sa.Table(
        "people", meta, sa.Column("gateway", S(100), primary_key=True), sa.Column("person", S(64), primary_key=True),
        sa.Column("night", S(10), nullable=False), sa.Column("generated_utc", S(20), nullable=False),
        sa.Column("days_with_data", Int), sa.Column("days_without_data", Int), sa.Column("demo_weights", B),
        sa.Column("open_flags", Int, nullable=False), sa.Column("last_day", S(10)),
        sa.Column("baseline_json", T), sa.Column("notice", S(200)))
    t["person_days"] = sa.Table(
        "person_days", meta, sa.Column("gateway", S(100), primary_key=True),
        sa.Column("person", S(64), primary_key=True), sa.Column("day", S(10), primary_key=True),
        sa.Column("generated_utc", S(20), nullable=False), sa.Column("recordings", Int), sa.Column("audio_s", F),
        sa.Column("phq8_low", F), sa.Column("phq8_high", F), *[sa.Column(m, F) for m in MEASURES])
    t["flags"] = sa.Table(
        "flags", meta, sa.Column("id", Int, primary_key=True, autoincrement=True),
        sa.Column("gateway", S(100), nullable=False), sa.Column("person", S(64), nullable=False),
        sa.Column("measure", S(32), nullable=False), sa.Column("since", S(10), nullable=False),
        sa.Column("label", S(100)), sa.Column("direction", S(8)), sa.Column("days", Int),
        sa.Column("baseline", F), sa.Column("recent", F), sa.Column("change", F), sa.Column("threshold", F),
        sa.Column("unit", S(40)), sa.Column("message", S(1000)), sa.Column("first_night", S(10)),
        sa.Column("last_night", S(10)), sa.Column("open", B, nullable=False),
        sa.Column("acked_by", S(100)), sa.Column("acked_utc", S(20)), sa.Column("ack_note", S(2000)),
        sa.UniqueConstraint("gateway", "person", "measure", "since", name="flags_one_per_run"))
    sa.Index("flags_open", t["flags"].c.open, t["flags"].c.gateway, t["flags"].c.person)
    t["sessions"] = sa.Table(
        "kiosk_sessions", meta, sa.Column("site", S(100), primary_key=True),
        sa.Column("session_id", S(80), primary_key=True), sa.Column("started_utc", S(40), nullable=False),
        sa.Column("duration_s", F), sa.Column("complete", B), sa.Column("stop_reason", S(500)),
        sa.Column("vote_status", S(16)), sa.Column("vote_level", S(8)), sa.Column("vote_reason", S(500)),
        sa.Column("phq8_status", S(16)), sa.Column("phq8_mu", F), sa.Column("phq8_low", F),
        sa.Column("phq8_high", F), sa.Column("phq8_band", S(40)), sa.Column("phq8_reason", S(500)),
        sa.Column("demo_weights", B), sa.Column("received_utc", S(20), nullable=False))
    sa.Index("sessions_by_site", t["sessions"].c.site, t["sessions"].c.started_utc)
    t["dead"] = sa.Table(
        "dead_letters", meta, sa.Column("digest", S(64), primary_key=True),
        sa.Column("received_utc", S(20), nullable=False), sa.Column("topic", S(300), nullable=False),
        sa.Column("reason", S(500), nullable=False), sa.Column("size_bytes", Int, nullable=False),
        sa.Column("payload_start", T))
    t["users"] = sa.Table("users", meta, sa.Column("name", S(64), primary_key=True),
                          sa.Column("password_hash", S(300), nullable=False),
                          sa.Column("created_utc", S(20), nullable=False))
    t["logins"] = sa.Table("web_sessions", meta, sa.Column("token_hash", S(64), primary_key=True),
                           sa.Column("user_name", S(64), nullable=False), sa.Column("csrf", S(64), nullable=False),
                           sa.Column("expires", F, nullable=False))
    t["audit"] = sa.Table("audit", meta, sa.Column("id", Int, primary_key=True, autoincrement=True),
                          sa.Column("utc", S(20), nullable=False), sa.Column("user_name", S(64), nullable=False),
                          sa.Column("action", S(32), nullable=False), sa.Column("target", S(300)),
                          sa.Column("note", S(2000)))
    return t


def _v1(conn, tables) -> None:
    tables["meta"].metadata.create_all(conn)


# version -> the step that brings a database from version-1 to it (never edit a shipped step: add one)
MIGRATIONS: Dict[int, Callable] = {1: _v1}
SCHEMA_VERSION = max(MIGRATIONS)


@dataclass
class Message:
    """One message that passed validation (edge.apps.fleet.ingest)."""

    kind: str  # nightly | state | session
    source: str  # the gateway or kiosk site named by the topic
    payload: Dict


@dataclass
class BatchResult:
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    kinds: Dict[str, int] = field(default_factory=dict)


def database_url(value: str) -> str:
    """`fleet.database`: a URL (postgresql://...) as given, a path as an SQLite URL."""
    if "://" in value:
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value
    return "sqlite:///" + value


class FleetStore:
    """The database (see the module docstring). url: as `database_url()` gives it."""

    def __init__(self, url: str):
        if sa is None:
            raise EdgeError(f"edge fleet needs SQLAlchemy: {SERVER_EXTRA_HINT}")
        self.url = url
        kwargs: Dict = {"future": True}
        if url.startswith("sqlite"):
            from pathlib import Path

            from edge import private_dir

            path = url.split("sqlite:///", 1)[-1]
            if path and path != ":memory:":
                try:
                    private_dir(Path(path).parent)
                except OSError as exc:
                    raise EdgeError(f"fleet.database {path}: cannot be opened: its folder: {first_line(exc)}") \
                        from None
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            self.engine = sa.create_engine(url, **kwargs)
        except (ImportError, sa.exc.ArgumentError) as exc:
            raise EdgeError(f"fleet.database {url!r} cannot be used: {first_line(exc)} ({SERVER_EXTRA_HINT})") from None
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.meta = sa.MetaData()
        self.t = _tables(self.meta)
        try:
            self.migrate()
        except sa.exc.OperationalError as exc:
            raise EdgeError(f"fleet.database {self.safe_url}: cannot be opened: {first_line(exc.orig)}") from None

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _insert(self, table):
        if self.sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(table)

    # ----- migrations ---------------------------------------------------------------------
    def version(self, conn) -> int:
        if not sa.inspect(conn).has_table("fleet_meta"):
            return 0
        row = conn.execute(sa.select(self.t["meta"].c.value).where(self.t["meta"].c.key == "schema_version")).first()
        return int(row[0]) if row else 0

    def migrate(self) -> int:
        """Bring the database to SCHEMA_VERSION, one step a transaction; the version it had."""
        with self.engine.begin() as conn:
            if not self.sqlite:  # two processes starting at once: one migrates, the other waits
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7261902)"))
            start = self.version(conn)
            if start > SCHEMA_VERSION:
                raise EdgeError(f"fleet.database {self.safe_url} has schema version {start}, newer than this "
                                f"edge ({SCHEMA_VERSION}); upgrade edge")
            for version in range(start + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](conn, self.t)
                meta = self.t["meta"]
                conn.execute(self._insert(meta).values(key="schema_version", value=str(version))
                             .on_conflict_do_update(index_elements=[meta.c.key], set_={"value": str(version)}))
        return start

    # ----- writing messages ---------------------------------------------------------------
    def store_batch(self, messages: List[Message], dead: Iterable[Tuple[str, str, bytes]] = ()) -> BatchResult:
        """Store valid messages (each once by message_id) and dead letters (topic, reason, payload)
        in one transaction."""
        result = BatchResult()
        now = utc_now()
        with self.engine.begin() as conn:
            dead_rows = [_dead_row(topic, reason, payload, now) for topic, reason, payload in dead]
            if dead_rows:
                conn.execute(self._insert(self.t["dead"]).on_conflict_do_nothing(), dead_rows)
                result.dead = len(dead_rows)
            if not messages:
                return result
            new_ids = self._claim(conn, messages, now)
            fresh = [m for m in messages if m.payload["message_id"] in new_ids]
            # The same id twice in one batch: the first copy only.
            seen, unique = set(), []
            for m in fresh:
                if m.payload["message_id"] not in seen:
                    seen.add(m.payload["message_id"])
                    unique.append(m)
            result.stored = len(unique)
            result.duplicates = len(messages) - len(unique)
            for kind in ("nightly", "state", "session"):
                of_kind = [m for m in unique if m.kind == kind]
                result.kinds[kind] = len(of_kind)
            self._gateways(conn, unique, now)
            self._nightly(conn, [m.payload for m in unique if m.kind == "nightly"])
            self._sessions(conn, [m.payload for m in unique if m.kind == "session"], now)
        return result

    def _claim(self, conn, messages: List[Message], now: str) -> set:
        """Insert the ids; the ones that were not there before (ON CONFLICT DO NOTHING ... RETURNING)."""
        table = self.t["messages"]
        rows, seen = [], set()
        for m in messages:
            mid = m.payload["message_id"]
            if mid not in seen:
                seen.add(mid)
                rows.append({"message_id": mid, "kind": m.kind, "source": m.source, "received_utc": now})
        # executemany with RETURNING (SQLAlchemy's "insertmanyvalues": a few multi-row statements, compiled once)
        statement = self._insert(table).on_conflict_do_nothing().returning(table.c.message_id)
        return {r[0] for r in conn.execute(statement, rows)}

    def _gateways(self, conn, messages: List[Message], now: str) -> None:
        table = self.t["gateways"]
        latest: Dict[str, Dict] = {}
        for m in messages:
            when = m.payload.get("finished_utc") or m.payload.get("generated_utc") or now
            if m.kind == "session":
                when = now  # a kiosk's session start time is the visitor's, not a heartbeat
            row = latest.setdefault(m.source, {"gateway": m.source, "kind": "kiosk" if m.kind == "session"
                                               else "gateway", "first_seen_utc": now, "last_seen_utc": when})
            row["last_seen_utc"] = max(row["last_seen_utc"], when)
            if m.kind == "state" and (row.get("night") or "", row.get("state_utc") or "") <= (
                    m.payload["night"], m.payload["finished_utc"]):
                p = m.payload
                row.update(state_utc=p["finished_utc"], night=p["night"], status=p["status"], waiting=p["waiting"],
                           quarantined=p["quarantined"], persons=p["persons"], persons_flagged=p["persons_flagged"],
                           version=p["version"][:40], run_id=p["run_id"][:100])
        state_cols = ("state_utc", "night", "status", "waiting", "quarantined", "persons", "persons_flagged",
                      "version", "run_id")
        plain = [r for r in latest.values() if "state_utc" not in r]
        with_state = [dict({c: None for c in state_cols}, **r) for r in latest.values() if "state_utc" in r]
        for rows, columns in ((plain, ()), (with_state, state_cols)):
            if not rows:
                continue
            stmt = self._insert(table)
            newer_seen = sa.case((stmt.excluded.last_seen_utc > table.c.last_seen_utc, stmt.excluded.last_seen_utc),
                                 else_=table.c.last_seen_utc)
            # The gateway's night first (two runs can finish in the same second), then its clock.
            newer_state = sa.or_(table.c.night.is_(None), stmt.excluded.night > table.c.night,
                                 sa.and_(stmt.excluded.night == table.c.night,
                                         stmt.excluded.state_utc >= table.c.state_utc))
            updates = {"last_seen_utc": newer_seen}
            for c in columns:
                updates[c] = sa.case((newer_state, getattr(stmt.excluded, c)), else_=getattr(table.c, c))
            conn.execute(stmt.on_conflict_do_update(index_elements=[table.c.gateway], set_=updates), rows)

    def _nightly(self, conn, payloads: List[Dict]) -> None:
        if not payloads:
            return
        days = self.t["person_days"]
        day_rows: Dict[Tuple[str, str, str], Dict] = {}
        newest: Dict[Tuple[str, str], Dict] = {}
        for p in payloads:
            key = (p["gateway"], p["person"])
            if key not in newest or (p["night"], p["generated_utc"]) >= (newest[key]["night"],
                                                                       newest[key]["generated_utc"]):
                newest[key] = p
            last = p["last_day"]
            if last is None:
                continue
            phq8 = last["phq8"] or {}
            row = {"gateway": p["gateway"], "person": p["person"], "day": last["day"],
                   "generated_utc": p["generated_utc"], "recordings": last["recordings"], "audio_s": last["audio_s"],
                   "phq8_mu": phq8.get("mu"), "phq8_low": phq8.get("low"), "phq8_high": phq8.get("high")}
            row.update({m: last["voice"].get(m) for m in VOICE})
            old = day_rows.get((p["gateway"], p["person"], last["day"]))
            if old is None or old["generated_utc"] <= row["generated_utc"]:
                day_rows[(p["gateway"], p["person"], last["day"])] = row
        if day_rows:
            stmt = self._insert(days)
            columns = [c.name for c in days.c if c.name not in ("gateway", "person", "day")]
            newer = stmt.excluded.generated_utc >= days.c.generated_utc
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[days.c.gateway, days.c.person, days.c.day],
                set_={c: getattr(stmt.excluded, c) for c in columns}, where=newer), list(day_rows.values()))
        people = self.t["people"]
        rows = [{"gateway": p["gateway"], "person": p["person"], "night": p["night"],
                 "generated_utc": p["generated_utc"], "days_with_data": p["days_with_data"],
                 "days_without_data": p["days_without_data"], "demo_weights": p["demo_weights"],
                 "open_flags": len(p["flags"]), "last_day": (p["last_day"] or {}).get("day"),
                 "baseline_json": json.dumps(p["baseline"], sort_keys=True), "notice": p["notice"][:200]}
                for p in newest.values()]
        stmt = self._insert(people)
        newer = sa.or_(stmt.excluded.night > people.c.night,
                       sa.and_(stmt.excluded.night == people.c.night,
                               stmt.excluded.generated_utc >= people.c.generated_utc))
        columns = [c.name for c in people.c if c.name not in ("gateway", "person")]
        updated = conn.execute(stmt.on_conflict_do_update(
            index_elements=[people.c.gateway, people.c.person], set_={c: getattr(stmt.excluded, c) for c in columns},
            where=newer).returning(people.c.gateway, people.c.person), rows)
        current = [newest[(r[0], r[1])] for r in updated]
        self._flags(conn, current)

    def _flags(self, conn, payloads: List[Dict]) -> None:
        """The persons whose newest night this is: their flags as that night says (others close)."""
        if not payloads:
            return
        flags = self.t["flags"]
        with_flags = [p for p in payloads if p["flags"]]
        # Close what these persons had open; the upsert below opens again what is still flagged.
        for chunk in _chunks(payloads, 200):
            conn.execute(flags.update().where(flags.c.open.is_(True), sa.or_(*[
                sa.and_(flags.c.gateway == p["gateway"], flags.c.person == p["person"]) for p in chunk]))
                .values(open=False))
        rows = []
        for p in with_flags:
            for f in p["flags"]:
                rows.append({"gateway": p["gateway"], "person": p["person"], "measure": f["measure"],
                             "since": f["since"], "label": f["label"][:100], "direction": f["direction"],
                             "days": f["days"], "baseline": f["baseline"], "recent": f["recent"],
                             "change": f["change"], "threshold": f["threshold"], "unit": f["unit"][:40],
                             "message": f["message"][:1000], "first_night": p["night"], "last_night": p["night"],
                             "open": True})
        if rows:
            stmt = self._insert(flags)
            keep = ("label", "direction", "days", "baseline", "recent", "change", "threshold", "unit", "message",
                    "last_night", "open")
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[flags.c.gateway, flags.c.person, flags.c.measure, flags.c.since],
                set_={c: getattr(stmt.excluded, c) for c in keep}), rows)

    def _sessions(self, conn, payloads: List[Dict], now: str) -> None:
        if not payloads:
            return
        rows = [{"site": p["site"], "session_id": p["session_id"], "started_utc": p["started_utc"],
                 "duration_s": p["duration_s"], "complete": p["complete"], "stop_reason": p["stop_reason"],
                 "vote_status": p["vote"]["status"], "vote_level": p["vote"]["level"],
                 "vote_reason": p["vote"]["reason"], "phq8_status": p["phq8"]["status"], "phq8_mu": p["phq8"]["mu"],
                 "phq8_low": p["phq8"]["low"], "phq8_high": p["phq8"]["high"], "phq8_band": p["phq8"]["band"],
                 "phq8_reason": p["phq8"]["reason"], "demo_weights": p["demo_weights"], "received_utc": now}
                for p in payloads]
        conn.execute(self._insert(self.t["sessions"]).on_conflict_do_nothing(), rows)

    # ----- people who use the dashboard ----------------------------------------------------
    def add_audit(self, conn, user: str, action: str, target: Optional[str], note: Optional[str] = None) -> None:
        conn.execute(self.t["audit"].insert().values(utc=utc_now(), user_name=user, action=action,
                                                     target=target, note=note))

    def count(self, name: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.t[name])).scalar())

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process kill
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _dead_row(topic: str, reason: str, payload: bytes, now: str) -> Dict:
    digest = hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + payload).hexdigest()
    start = payload[:DEAD_PAYLOAD_CHARS].decode("utf-8", "replace").replace("\0", "\\0")
    return {"digest": digest, "received_utc": now, "topic": topic[:300], "reason": reason[:500],
            "size_bytes": len(payload), "payload_start": start}


def _chunks(items: List, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]
