"""`edge nightly`: the wearable gateway's batch job (edge.apps.nightly.job).

inbox: which recordings are ready; db: the exactly-once ledger and the trend per person
and day; process: one recording through the Screener and the vocal measures; trends:
baseline and flags; report: PNG + HTML per person and night; the messages go out through
edge's MQTT outbox (edge.reporting). A screening aid, not a diagnosis.
"""
from __future__ import annotations


def run(args) -> int:
    """The `edge nightly` command (see edge.apps.nightly.job)."""
    from edge.apps.nightly.job import run as run_job

    return run_job(args)
