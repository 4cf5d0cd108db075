"""What the care team's `edge fleet serve` sustains (issue 22's targets).

    python bench/fleet_bench.py                         # SQLite and PostgreSQL, 100 x 10 x 10, pages
    python bench/fleet_bench.py --nights 30 --json out.json
    python bench/fleet_bench.py --engines sqlite --skip-pages

1. Ingest: a simulated fleet (`--gateways` x `--persons` x `--nights`, made by the nightly job's own
   builders, tests/fleet_support.py) is published to a persistent Mosquitto while the service is
   down, so it waits in the service's session; then one `edge fleet serve` process, pinned to one
   CPU, takes it all: messages per second from its first stored message to the last (wall time;
   the broker and this script run on the other CPU). Target: at least 1,000 a second into SQLite
   and into PostgreSQL (a throw-away cluster on this machine, fsync on).
2. Pages: a database holding `--people` (10,000) people x 90 days (900,000 day rows, one person in
   ten with an open flag, 1,000 gateways), filled in bulk; the dashboard's pages fetched over HTTP
   as a logged-in user: the people list (open flags first), a person's 90 days, the gateways.
   Median and max of `--page-runs` fetches each. Target: under 300 ms.

Needs the fleet-server extra, mosquitto and (for PostgreSQL) Debian's postgresql package.
It imports the test suite's helpers (tests/fleet_support.py): run it from a checkout.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent


def _helpers():
    tests = str(ROOT / "tests")
    if tests not in sys.path:  # the helpers live with the tests (brokers, clusters, the simulated fleet)
        sys.path.insert(0, tests)
    import fleet_support

    return fleet_support


def ingest(engine: str, folder: Path, fleet, total: int, cpu: int, postgres=None) -> Dict:
    fs = _helpers()
    from edge.apps.fleet.store import FleetStore, database_url

    broker = fs.PersistentBroker(folder / "broker").start()
    database = postgres.new_database() if engine == "postgresql" else str(folder / "fleet.sqlite")
    profile = fs.care_profile(folder, broker.port, database, batch_messages=500)
    try:
        first = fs.Service(profile)  # makes the session at the broker, then goes away
        first.stop()
        published_s = time.monotonic()
        sent = fs.publish_nights(fleet, folder / "queues", broker.port, range(len(next(iter(fleet.values())))))
        published_s = time.monotonic() - published_s
        assert sent == total, (sent, total)
        store = FleetStore(database_url(database))
        env = fs.env_with_repo()
        cpu_before = _child_cpu()
        proc = subprocess.Popen([sys.executable, "-m", "edge", "fleet", "serve", "--config", str(profile)],
                                cwd=str(folder), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        started = time.monotonic()
        t0 = n0 = None
        count = 0
        while count < total and time.monotonic() - started < 600:
            time.sleep(0.1)
            count = store.count("messages")
            if t0 is None and count > 0:
                t0, n0 = time.monotonic(), count
        t1 = time.monotonic()
        proc.terminate()
        proc.wait(30)
        cpu_s = round(_child_cpu() - cpu_before, 2)  # the consumer's whole life: start-up, catch-up, stop
        store.close()
        rate = (count - n0) / (t1 - t0) if t0 and t1 > t0 else 0.0
        return {"engine": engine, "messages": total, "stored": count, "seconds": round(t1 - t0, 2) if t0 else None,
                "messages_per_s": round(rate, 1), "publish_s": round(published_s, 1), "consumer_cpu_s": cpu_s,
                "target_per_s": 1000, "met": rate >= 1000 and count == total}
    finally:
        broker.remove()


def _child_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round(usage.ru_utime + usage.ru_stime, 2)


def fill_for_pages(store, people: int, days: int, seed: int = 3) -> None:
    """people x days of day rows, flags for one in ten, 1,000 gateways, in bulk (not through MQTT)."""
    import sqlalchemy as sa

    from edge.apps.fleet.store import VOICE

    rng = random.Random(seed)
    end = time.strftime("%Y-%m-%d")
    from datetime import date, timedelta

    last = date.fromisoformat(end)
    day_list = [(last - timedelta(days=days - 1 - k)).isoformat() for k in range(days)]
    gateways = [f"gw{g:04d}" for g in range(1000)]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t = store.t
    with store.engine.begin() as conn:
        conn.execute(t["gateways"].insert(), [{"gateway": g, "kind": "gateway", "first_seen_utc": now,
                                               "last_seen_utc": now if k % 50 else "2026-01-01T00:00:00Z",
                                               "state_utc": now, "night": end, "status": "ok", "waiting": 0,
                                               "quarantined": 0, "persons": 10, "persons_flagged": 1,
                                               "version": "0.1.0", "run_id": "r"} for k, g in enumerate(gateways)])
        base = {"mode": "first_days", "days_wanted": 14, "days_used": 14, "ready": True, "first_day": day_list[0],
                "last_day": day_list[13], "phq8_mu": 5.0, "voice": {m: 1.0 for m in VOICE}}
        rows, flags = [], []
        for i in range(people):
            g, p = gateways[i % len(gateways)], f"p{i // len(gateways):03d}"
            flagged = i % 10 == 0
            rows.append({"gateway": g, "person": p, "night": end, "generated_utc": now, "days_with_data": days,
                         "days_without_data": 0, "demo_weights": True, "open_flags": int(flagged),
                         "last_day": end, "baseline_json": json.dumps(base), "notice": "Screening aid only."})
            if flagged:
                flags.append({"gateway": g, "person": p, "measure": "phq8_mu", "since": day_list[-5],
                              "label": "PHQ-8 estimate", "direction": "up", "days": 5, "baseline": 5.0,
                              "recent": 9.5, "change": 4.5, "threshold": 3.0, "unit": "points",
                              "message": "PHQ-8 estimate above the personal baseline for 5 days", "first_night": end,
                              "last_night": end, "open": True})
        conn.execute(t["people"].insert(), rows)
        conn.execute(t["flags"].insert(), flags)
    chunk: List[Dict] = []
    for i in range(people):
        g, p = gateways[i % len(gateways)], f"p{i // len(gateways):03d}"
        for day in day_list:
            row = {"gateway": g, "person": p, "day": day, "generated_utc": now, "recordings": 2, "audio_s": 90.0,
                   "phq8_mu": 5 + rng.gauss(0, 1), "phq8_low": 2.0, "phq8_high": 8.0}
            row.update({m: 1 + rng.gauss(0, 0.05) for m in VOICE})
            chunk.append(row)
        if len(chunk) >= 20000:
            with store.engine.begin() as conn:
                conn.execute(t["person_days"].insert(), chunk)
            chunk = []
    if chunk:
        with store.engine.begin() as conn:
            conn.execute(t["person_days"].insert(), chunk)
    if not store.sqlite:
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))


def pages(engine: str, folder: Path, people: int, runs: int, postgres=None) -> Dict:
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    from edge.apps.fleet.store import FleetStore, database_url
    from edge.apps.fleet.users import Users
    from edge.apps.fleet.views import Views
    from edge.apps.fleet.web import Dashboard, DashboardServer

    url = postgres.new_database() if engine == "postgresql" else str(folder / "pages.sqlite")
    store = FleetStore(database_url(url))
    filled = time.monotonic()
    fill_for_pages(store, people, 90)
    filled = time.monotonic() - filled
    users = Users(store)
    users.add("bench", "bench password 1")
    server = DashboardServer("127.0.0.1", 0, Dashboard(Views(store, 36, 100), users, 1.0)).start()
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(server.url + "login").read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    opener.open(server.url + "login", urllib.parse.urlencode({"csrf": csrf, "user": "bench",
                                                              "password": "bench password 1"}).encode()).read()
    out = {"engine": engine, "people": people, "day_rows": store.count("person_days"), "fill_s": round(filled, 1),
           "target_ms": 300, "pages": {}}
    try:
        for name, path in (("people (open flags first)", ""), ("a person, 90 days", "person/gw0000/p000?days=90"),
                           ("gateways (1,000)", "gateways")):
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                body = opener.open(server.url + path).read()
                times.append((time.perf_counter() - t) * 1000)
            assert b"A screening aid" in body
            out["pages"][name] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
    finally:
        server.close()
        store.close()
    out["met"] = all(p["median_ms"] < 300 for p in out["pages"].values())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--persons", type=int, default=10)
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--people", type=int, default=10000)
    parser.add_argument("--page-runs", type=int, default=20)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU the consumer is pinned to")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    fs = _helpers()
    engines = [e for e in args.engines.split(",") if e]
    results: Dict = {"machine": f"{os.cpu_count()} CPUs", "ingest": [], "pages": []}
    with tempfile.TemporaryDirectory(prefix="edge-fleet-bench-") as tmp:
        folder = Path(tmp)
        postgres = None
        if "postgresql" in engines:
            import pytest

            try:
                postgres = fs.PostgresCluster()
            except pytest.skip.Exception as exc:
                print(f"PostgreSQL left out: {exc}", file=sys.stderr)
                engines.remove("postgresql")
        try:
            if not args.skip_ingest:
                t = time.monotonic()
                fleet = fs.simulate_fleet(folder / "gateways", args.gateways, args.persons, args.nights)
                total = sum(len(m) for its in fleet.values() for _n, m in its)
                print(f"simulated fleet: {args.gateways} gateways x {args.persons} people x {args.nights} nights, "
                      f"{total} messages, made in {time.monotonic() - t:.1f} s", flush=True)
                for engine in engines:
                    (folder / engine).mkdir()
                    r = ingest(engine, folder / engine, fleet, total, args.cpu, postgres)
                    results["ingest"].append(r)
                    print(f"ingest into {engine}: {r['messages_per_s']:.0f} messages/s on one CPU "
                          f"({r['stored']}/{r['messages']} in {r['seconds']} s; consumer CPU {r['consumer_cpu_s']} s)"
                          f" target 1,000: {'met' if r['met'] else 'NOT met'}", flush=True)
            if not args.skip_pages:
                for engine in engines:
                    r = pages(engine, folder, args.people, args.page_runs, postgres)
                    results["pages"].append(r)
                    for name, p in r["pages"].items():
                        print(f"page time, {engine}, {r['people']} people x 90 days ({r['day_rows']} day rows): "
                              f"{name}: median {p['median_ms']} ms, max {p['max_ms']} ms (target 300 ms)", flush=True)
        finally:
            if postgres is not None:
                postgres.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
