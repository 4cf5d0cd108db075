"""`edge fleet`: the care team's side (a server app, x86 Debian; the `fleet-server` extra).

    edge fleet serve --config firmware_configs/care_team.yaml [--client-id ID] [--port N]
    edge fleet user add NAME --config PROFILE        (the password from stdin or a prompt)

serve: one process that subscribes to every gateway's nightly summaries and states and every
kiosk's session summaries (edge.apps.fleet.consumer), checks them (ingest), stores each once
(store: SQLite or PostgreSQL) and shows who needs a call (web, views; users: log-ins). A
screening aid, not a diagnosis.
"""
from __future__ import annotations


def add_arguments(parser, common) -> None:
    """The `edge fleet` subcommands (argparse; nothing heavy imported here)."""
    sub = parser.add_subparsers(dest="fleet_command", required=True)
    p = sub.add_parser("serve", parents=[common], help="receive, store and show the fleet's results")
    p.add_argument("--config", required=True, help="care-team profile (e.g. firmware_configs/care_team.yaml)")
    p.add_argument("--client-id", metavar="ID", help="MQTT client id (overrides fleet.client_id; one per process)")
    p.add_argument("--port", type=int, metavar="N", help="dashboard port (overrides fleet.port; 0: a free one)")
    p.add_argument("--database", metavar="URL", help="overrides fleet.database (a file, or postgresql://...)")
    p = sub.add_parser("user", help="care-team users of the dashboard")
    users = p.add_subparsers(dest="user_command", required=True)
    p = users.add_parser("add", parents=[common], help="add a user or set a user's password")
    p.add_argument("name")
    p.add_argument("--config", required=True, help="care-team profile (its fleet.database)")
    p.add_argument("--database", metavar="URL", help="overrides fleet.database")


def run(args) -> int:
    from edge.apps.fleet.serve import run as run_fleet

    return run_fleet(args)
