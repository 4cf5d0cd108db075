"""A kiosk session's summary for the care team (`kiosk.report`): built from the saved result,
queued in the on-disk outbox at once, published in the background (the next visitor never waits
for the broker). No images, no audio, no names: the random session id and the kiosk's site id.
"""
from __future__ import annotations

import json
import sys
import threading
from typing import Dict, Optional

from edge import SCREENING_DISCLAIMER, __version__
from edge.reporting.mqtt import BrokerSettings, Outbox, publish_outbox, session_topic

SESSION_SCHEMA = "edge-kiosk-session/1"


def _text(value, limit: int = 500) -> Optional[str]:
    return None if value is None else str(value)[:limit]


def session_payload(summary: Dict, site: str) -> Dict:
    """The kiosk_session.schema.json payload of one session's summary (SessionResult.to_dict())."""
    screening = summary.get("screening", {})
    vote = screening.get("emotion_vote", {})
    phq8 = screening.get("phq8", {})
    interval = phq8.get("interval") or [None, None]
    ok = phq8.get("status") == "ok"
    return {
        "schema": SESSION_SCHEMA, "message_id": f"{site}/session/{summary['session_id']}", "site": site,
        "session_id": summary["session_id"], "started_utc": summary["started_utc"],
        "duration_s": float(summary.get("duration_s", 0.0)), "complete": bool(summary.get("complete")),
        "stop_reason": _text(summary.get("stop_reason")) or "",
        "vote": {"status": "ok" if vote.get("status") == "ok" else "abstained",
                 "level": vote.get("level") if vote.get("status") == "ok" else None,
                 "reason": _text(vote.get("reason"))},
        "phq8": {"status": "ok" if ok else "abstained", "mu": phq8.get("mu") if ok else None,
                 "low": interval[0] if ok else None, "high": interval[1] if ok else None,
                 "band": _text(phq8.get("band"), 40) if ok else None, "reason": _text(phq8.get("reason"))},
        "face_share": float(screening.get("face_share", 0.0)),
        "voiced_share": float(screening.get("voiced_share", 0.0)),
        "demo_weights": bool(summary.get("demo_weights")), "notice": SCREENING_DISCLAIMER, "version": __version__,
    }


class SessionReporter:
    """Queue each saved session's summary (`publish(result)`) and publish the queue from a thread.

    settings: the broker (edge.broker_settings(profile.mqtt)); queue_dir: the outbox folder;
    prefix, site: the topic <prefix>/<site>/session. A broker that is away leaves the messages in
    the outbox for the next session (in order, none twice)."""

    def __init__(self, settings: BrokerSettings, queue_dir: str, prefix: str, site: str, log=None):
        self.settings = settings
        self.queue_dir = queue_dir
        self.prefix = prefix
        self.site = site
        self.log = log or (lambda message: print(f"edge kiosk: {message}", file=sys.stderr, flush=True))
        self._lock = threading.Lock()
        self._again = False
        self._thread: Optional[threading.Thread] = None
        Outbox(queue_dir).close()  # the folder and queue are checked at start (one-line EdgeError)

    def publish(self, result) -> None:
        """Queue `result`'s summary (a SessionResult) now; publish in the background."""
        payload = session_payload(result.to_dict(), self.site)
        outbox = Outbox(self.queue_dir)  # a connection per thread (SQLite)
        try:
            outbox.enqueue(payload["message_id"], session_topic(self.prefix, self.site),
                           json.dumps(payload, sort_keys=True).encode())
        finally:
            outbox.close()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._again = True
                return
            self._thread = threading.Thread(target=self._drain, name="session report", daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        while True:
            outbox = Outbox(self.queue_dir)
            try:
                done = publish_outbox(outbox, self.settings, client_id=f"edge-kiosk-{self.site}")
            finally:
                outbox.close()
            if done.error:
                self.log(f"mqtt: {done.error}; {done.left} session summary(ies) wait for the next session")
            with self._lock:
                if not self._again:
                    self._thread = None
                    return
                self._again = False

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait for a publication in progress (what is left stays queued)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
