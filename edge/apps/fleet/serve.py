"""`edge fleet serve` and `edge fleet user add` (see edge.apps.fleet).

Start-up checks what a user can get wrong, each a one-line error and exit 2: the profile, the
server extra's packages, the database (opened and migrated), the dashboard's port. A broker that
is away is not an exit: the service keeps trying and the dashboard says so. SIGTERM or SIGINT:
the batch in hand is stored and acknowledged, then the process exits 0 (its session and the
messages that come meanwhile wait at the broker).
"""
from __future__ import annotations

import getpass
import importlib
import secrets
import signal
import sys
import threading

from edge import EdgeError, broker_settings, check_topic_part, is_loopback, load_config

NEEDED = (("sqlalchemy", "SQLAlchemy"), ("jsonschema", "jsonschema"), ("fastjsonschema", "fastjsonschema"),
          ("jinja2", "Jinja2"), ("paho.mqtt.client", "paho-mqtt"))


def _log(message: str) -> None:
    print(f"edge fleet: {message}", file=sys.stderr, flush=True)


def _check_packages() -> None:
    from edge.apps.fleet.store import SERVER_EXTRA_HINT

    missing = []
    for module, name in NEEDED:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(name)
    if missing:
        raise EdgeError(f"edge fleet needs {', '.join(missing)}: {SERVER_EXTRA_HINT}")


def open_store(args, profile):
    from edge.apps.fleet.store import FleetStore, database_url

    return FleetStore(database_url(getattr(args, "database", None) or profile.fleet.database))


def _password(name: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise EdgeError("the two passwords differ; nothing changed")
        return first
    return sys.stdin.readline().rstrip("\n")


def run(args) -> int:
    profile = load_config(args.config)
    _check_packages()
    if args.fleet_command == "user":
        from edge.apps.fleet.users import Users

        store = open_store(args, profile)
        try:
            Users(store).add(args.name, _password(args.name))
        finally:
            store.close()
        print(f"edge fleet: user {args.name} set in {store.safe_url}")
        return 0
    return serve(args, profile)


def serve(args, profile) -> int:
    from edge.apps.fleet.consumer import Consumer
    from edge.apps.fleet.ingest import Checker, subscriptions
    from edge.apps.fleet.users import Users
    from edge.apps.fleet.views import Views
    from edge.apps.fleet.web import Dashboard, DashboardServer

    fleet, mqtt = profile.fleet, profile.mqtt
    check_topic_part("mqtt.topic_prefix", mqtt.topic_prefix)
    if fleet.share_group is not None:
        check_topic_part("fleet.share_group", fleet.share_group)
    client_id = getattr(args, "client_id", None) or fleet.client_id
    port = fleet.port if getattr(args, "port", None) is None else int(args.port)
    if not 0 <= port <= 65535:
        raise EdgeError(f"--port must be a TCP port (0..65535; 0 picks a free one), got {port}")
    store = open_store(args, profile)
    server = consumer = None
    stop = threading.Event()
    received = []

    def on_signal(signum, frame) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        users = Users(store)
        if users.count() == 0:  # a fresh install: one user to start with, its password shown once
            password = secrets.token_urlsafe(12)
            users.add("admin", password, by="edge fleet serve (first start)")
            print(f"edge fleet: first start: user 'admin' with password {password} (shown once; change it with "
                  f"`edge fleet user add admin --config {args.config}`)", flush=True)
        views = Views(store, fleet.silent_hours, fleet.people_per_page)
        try:
            server = DashboardServer(fleet.host, port, Dashboard(views, users, fleet.login_hours), fleet.server_names)
        except OSError as exc:
            raise EdgeError(f"the dashboard cannot listen on {fleet.host}:{port}: {exc.strerror or exc} "
                            "(set fleet.port or --port)") from None
        if not is_loopback(fleet.host):
            _log(f"the dashboard listens on {fleet.host}: put a TLS reverse proxy in front (README)")
        filters = subscriptions(mqtt.topic_prefix, fleet.share_group)
        consumer = Consumer(store, Checker(mqtt.topic_prefix, fleet.max_payload_bytes), broker_settings(mqtt),
                            client_id, filters, fleet.session_expiry_s, fleet.batch_messages, log=_log)
        server.dashboard.broker_problem = lambda: None if consumer.stats.connected else (
            consumer.stats.last_error or "not connected to the broker yet")
        consumer.start()
        server.start()
        print(f"edge fleet: dashboard {server.url}; broker {broker_settings(mqtt).address} as {client_id}; "
              f"database {store.safe_url}; SIGTERM or Ctrl-C stops it", flush=True)
        while not stop.wait(0.5):
            pass
        name = signal.Signals(received[0]).name if received else "stop"
        consumer.stop()
        s = consumer.stats
        print(f"edge fleet: stopped ({name}): {s.received} received, {s.stored} stored, {s.duplicates} repeats "
              f"dropped, {s.dead} dead letter(s)", flush=True)
        return 0
    finally:
        if consumer is not None:
            consumer.stop()
        if server is not None:
            server.close()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
