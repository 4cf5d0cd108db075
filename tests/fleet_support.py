"""Real parts for the fleet tests: a persistent Mosquitto, a throw-away PostgreSQL cluster, a simulated
fleet made by the gateway's own code, and `edge fleet serve` as a real process.

The simulated fleet: each gateway is a real nightly job (edge.apps.nightly.job.Night on its own
NightlyStore) whose day rows are written as the job writes them after its recordings (no models
run: the day rows stand for the recordings), then the job's own trend, payload and state builders
make the messages and edge's Outbox and publish_outbox send them, in order, as a gateway does.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import yaml
from nightly_support import Broker, env_with_repo, free_port, need

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")


# ----------------------------------------------------------------------------- Mosquitto
class PersistentBroker(Broker):
    """Mosquitto 2 as the care team runs it: persistence on (sessions and queued messages survive a
    restart), a queue per client far above the default 1000, MQTT 5. Started and stopped as the
    nightly tests' Broker (a clean SIGTERM: Mosquitto writes its persistence file)."""

    def __init__(self, folder: Path, port: Optional[int] = None, extra: str = ""):
        need("mosquitto")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = folder / "mosquitto.conf"
        # Started as root, Mosquitto drops to its own user (as on Debian): its folder must be that user's,
        # and outside pytest's root-only tmp tree, else it cannot save what it must keep over a restart.
        self.store_dir = Path(tempfile.mkdtemp(prefix="edge-fleet-mosquitto-"))
        if os.geteuid() == 0:
            try:
                shutil.chown(self.store_dir, user="mosquitto")
            except LookupError:
                pass
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {self.store_dir}/\nautosave_interval 1\n"
                             "max_queued_messages 1000000\nmax_inflight_messages 0\n" + extra)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.store_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- PostgreSQL
class PostgresCluster:
    """A throw-away cluster (initdb in a temporary folder, as `nobody`, a Unix socket only)."""

    def __init__(self):
        if not (PG_BIN / "initdb").exists():
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql; `make test` does it as root)")
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            pytest.skip("initdb refuses root and runuser is missing")
        self.dir = Path(tempfile.mkdtemp(prefix="edge-fleet-pg-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.dir, user="nobody")
        self._run([str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
                   "--no-sync"])
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-o",
                   f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off", "-l", str(self.dir / "log"),
                   "start"])
        self.count = 0

    def _run(self, command: List[str]) -> None:
        proc = subprocess.run(self.as_user + command, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"PostgreSQL cannot start here: {(proc.stderr or proc.stdout).strip()[-300:]}")

    def new_database(self) -> str:
        """A fresh database's URL (postgresql://...)."""
        import sqlalchemy as sa

        self.count += 1
        name = f"fleet{self.count}"
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        engine.dispose()
        return f"postgresql://postgres@/{name}?host={self.dir}&port={self.port}"

    def url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@/{name}?host={self.dir}&port={self.port}"

    def stop(self) -> None:
        subprocess.run(self.as_user + [str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "stop", "-m", "fast"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------- the simulated fleet
VOICE_BASE = {"pause_ratio": 0.25, "speaking_rate": 2.2, "f0_mean_st": 36.0, "f0_var": 0.12, "loudness": 0.6,
              "jitter": 0.02, "shimmer_db": 1.1}


def _day_row(person: str, day: date, rng: random.Random, drift: float) -> Dict:
    row = {"person": person, "day": day.isoformat(), "recordings": 2, "audio_s": 95.0, "phq8_n": 2,
           "phq8_mu": max(0.0, 5.0 + rng.gauss(0, 0.4) + drift), "phq8_sigma": 1.5}
    for measure, value in VOICE_BASE.items():
        row[measure] = value * (1 + rng.gauss(0, 0.02))
    return row


Night = Tuple[str, List[Tuple[str, str, bytes, bool]]]  # (night, [(message_id, topic, payload, retain)])


def simulate_fleet(folder: Path, gateways: int, persons: int, nights: int, seed: int = 7,
                   prefix: str = "edge") -> Dict[str, List[Night]]:
    """Every gateway's messages night by night, made by the nightly job's own builders (see the module
    docstring). One person in three drifts upwards from the middle of the month (flags); one day in
    eight has no data."""
    from edge import load_config, nightly_topic, state_topic
    from edge.apps.nightly.job import Night as Job

    rng = random.Random(seed)
    first = date(2026, 11, 1)
    fleet: Dict[str, List[Night]] = {}
    for g in range(gateways):
        gateway = f"gw{g:03d}"
        home = folder / gateway
        home.mkdir(parents=True)
        profile = home / "profile.yaml"
        profile.write_text(yaml.safe_dump({
            "profile": "wearable_gateway", "video": {"source": None}, "audio": {"source": None},
            "output": {"dir": str(home / "out"), "database": str(home / "trends.sqlite")},
            "nightly": {"gateway_id": gateway, "inbox": str(home / "inbox"), "quarantine": str(home / "q"),
                        "reports": str(home / "reports"), "baseline_days": 7},
            "mqtt": {"topic_prefix": prefix}}))
        config = load_config(str(profile))
        job = Job(config, home / "inbox", str(home / "trends.sqlite"), home / "out", home / "reports", None)
        job._demo_weights = True  # as the job knows it after its first recording (the demo models)
        job.store.db.execute("PRAGMA synchronous=OFF")  # a simulated gateway's own disk: speed over durability
        people = [f"p{k:02d}" for k in range(persons)]
        drifting = {p for k, p in enumerate(people) if (k + g) % 3 == 0}
        fleet[gateway] = []
        for n in range(nights):
            night = first + timedelta(days=n + 1)
            day = night - timedelta(days=1)
            for person in people:
                if rng.random() < 0.125:
                    continue  # no recording that day
                drift = 6.0 if person in drifting and n >= nights // 2 else 0.0
                row = _day_row(person, day, rng, drift)
                job.store.db.execute(f"INSERT OR REPLACE INTO days ({', '.join(row)}) "
                                     f"VALUES ({', '.join('?' for _ in row)})", list(row.values()))
            job.night = night.isoformat()
            job.run_id = f"{night.strftime('%Y%m%d')}T030000Z-{gateway}"
            job.store.start_run(job.run_id)
            messages = []
            flagged = 0
            for person in job.store.persons():
                trend = job.trend(person)
                flagged += bool(trend.flags)
                message_id = f"{gateway}/{person}/{job.night}/{n}"
                payload = job.nightly_payload(trend, message_id)
                messages.append((message_id, nightly_topic(prefix, gateway, person),
                                 json.dumps(payload, sort_keys=True).encode(), False))
            state = job.state_payload(job.store.finish_run(job.run_id), flagged)
            messages.append((state["message_id"], state_topic(prefix, gateway),
                             json.dumps(state, sort_keys=True).encode(), True))
            fleet[gateway].append((job.night, messages))
        job.close()
    return fleet


def publish_nights(fleet: Dict[str, List[Night]], queue_root: Path, port: int, nights: range,
                   offline: Dict[str, range] = None, broker_may_fail: bool = False) -> int:
    """Each gateway queues its nights in its own outbox and publishes it (edge.publish_outbox) unless it is
    offline that night; a gateway back online sends what waited first, in order. The messages sent.
    broker_may_fail: a broker that goes away meanwhile leaves the rest in the outboxes (else it fails)."""
    from concurrent.futures import ThreadPoolExecutor

    from edge import BrokerSettings, Outbox, publish_outbox

    settings = BrokerSettings("127.0.0.1", port, timeout_s=10.0)

    def one(gateway: str, n: int) -> int:
        outbox = Outbox(str(queue_root / gateway))
        try:
            for message_id, topic, payload, retain in fleet[gateway][n][1]:
                outbox.enqueue(message_id, topic, payload, retain)
            if offline and n in offline.get(gateway, ()):
                return 0
            done = publish_outbox(outbox, settings, client_id=f"edge-nightly-{gateway}")
            assert done.error is None or broker_may_fail, done.error
            return done.sent
        finally:
            outbox.close()

    sent = 0
    with ThreadPoolExecutor(8) as pool:  # the gateways are separate machines: they publish side by side
        for n in nights:
            sent += sum(pool.map(one, list(fleet), [n] * len(fleet)))
    return sent


def expected_ids(fleet: Dict[str, List[Night]], nights: range) -> List[str]:
    return [mid for its in fleet.values() for n in nights for mid, _t, _p, _r in its[n][1]]


# ----------------------------------------------------------------------------- the service
def care_profile(folder: Path, port: int, database: str, share_group: Optional[str] = None,
                 **fleet) -> Path:
    settings = {"database": database, "port": 0, "share_group": share_group, "batch_messages": 200}
    settings.update(fleet)
    path = folder / "care_team.yaml"
    path.write_text(yaml.safe_dump({"profile": "care_team", "video": {"source": None}, "audio": {"source": None},
                                    "output": {"database": None},
                                    "mqtt": {"host": "127.0.0.1", "port": port, "timeout_s": 5},
                                    "fleet": settings}))
    return path


class Service:
    """`edge fleet serve` as a real process (its dashboard on a free port)."""

    def __init__(self, profile: Path, client_id: str = "edge-fleet-1", log: Optional[Path] = None):
        self.log_path = log or profile.with_name(f"{client_id}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "fleet", "serve", "--config", str(profile),
                                      "--client-id", client_id], cwd=str(profile.parent), stdout=subprocess.PIPE,
                                     stderr=self.log, env=env_with_repo())
        self.url = None
        self.admin_password = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            if "first start: user 'admin' with password " in line:
                self.admin_password = line.split("with password ")[1].split()[0]
            if line.startswith("edge fleet: dashboard "):
                self.url = line.split()[3].rstrip(";")
                break
        assert self.url, f"edge fleet serve did not start: {self.log_path.read_text()[-2000:]}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def wait_stored(store, count: int, timeout_s: float = 60.0, table: str = "messages") -> int:
    deadline = time.monotonic() + timeout_s
    have = store.count(table)
    while have < count and time.monotonic() < deadline:
        time.sleep(0.2)
        have = store.count(table)
    return have
