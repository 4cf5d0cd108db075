"""`edge nightly`: the night's recordings through the models, the trends, reports and MQTT.

    edge nightly --config firmware_configs/wearable_gateway.yaml [--inbox DIR] [--db F] [--out DIR]
                 [--mqtt mqtt://HOST:PORT] [--night YYYY-mm-dd]

Flags override the profile: --inbox nightly.inbox, --db output.database (the ledger,
trends and session rows), --out output.dir (summaries and features per recording; the
reports then go to DIR/reports instead of nightly.reports), --mqtt the broker address
(and turns reporting on for this run). --night names the night (a backfill or a replay of
old recordings: the trends, reports and messages as of that night, later days left out);
otherwise the night is today's date from the clock.

Steps: scan the inbox (edge.apps.nightly.inbox); quarantine what cannot be a recording;
run each ready recording exactly once (edge.apps.nightly.db's ledger) and remove it from
the inbox once its results are committed; files still being written are waited for once,
up to `stable_seconds`; then per person the trend, the report and the nightly message,
the gateway's retained state, and the queue drained to the broker.

One job per inbox and per database at a time (two locks). Log lines carry counts and ids,
never scores (those stay in the database and the reports).

Exit codes: 0 the night ran (quarantined recordings and an unreachable broker are
reported, not failures: the next run delivers); 2 a user error (one line), among them a
wrong MQTT set-up found at start (edge.apps.nightly.broker_check); 4 a recording's
results could not be written (disk full, a folder not writable: it stays in the inbox for
the next run); 130 stopped by SIGINT/SIGTERM (what was committed stays; the rest is done
next run).
"""
from __future__ import annotations

import gc
import json
import os
import signal
import sqlite3
import stat
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Dict, List, Optional

from edge import (
    SCREENING_DISCLAIMER,
    BrokerSettings,
    EdgeError,
    Outbox,
    __version__,
    broker_settings,
    first_line,
    load_config,
    nightly_topic,
    parse_mqtt_url,
    private_dir,
    publish_outbox,
    state_topic,
)
from edge.apps.nightly.broker_check import broker_setup_errors
from edge.apps.nightly.db import MAX_ATTEMPTS, NightlyStore, utc_now
from edge.apps.nightly.inbox import Recording, Rejected, quarantine, remove_processed, scan_inbox
from edge.apps.nightly.trends import VOICE_MEASURES, Trend, days_without_data, evaluate

EXIT_NOT_SAVED = 4  # a recording's results could not be written (it stays in the inbox)
EXIT_INTERRUPTED = 130
WAIT_CAP_S = 120.0  # files still being written are waited for once, at most this long
PAYLOAD_SCHEMA = "edge-nightly/1"
STATE_SCHEMA = "edge-gateway-state/1"


class _Lock:
    """One nightly job per database and per inbox at a time (a timer run and a manual run;
    two jobs with different databases on one inbox would take the same recordings)."""

    def __init__(self, path: str, what: str = "database"):
        import fcntl

        try:
            if what == "inbox":  # the folder itself is locked: nothing is added to the inbox
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            else:
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise EdgeError(f"the {what}'s lock {path} cannot be opened: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise EdgeError(f"another edge nightly is running on this {what} (lock {path}); "
                            "wait for it to finish") from None

    def release(self) -> None:
        os.close(self.fd)


class Night:
    """One run of the job; `run(args)` below drives it."""

    def __init__(self, config, inbox: Path, db_path: str, out_dir: Path, reports_dir: Path,
                 broker: Optional[BrokerSettings], log=print, models_dir: Optional[str] = None,
                 night: Optional[str] = None):
        self.config = config
        self.nightly = config.nightly
        self.inbox = inbox
        self.out_dir = out_dir
        self.reports_dir = reports_dir
        self.quarantine_dir = Path(self.nightly.quarantine)
        self.broker = broker
        self.log = log
        self.models_dir = models_dir
        self.store = NightlyStore(db_path)
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        self.night = night or time.strftime("%Y-%m-%d")  # --night for a backfill or a replay
        self.screener = None
        self._demo_weights: Optional[bool] = None
        self._models_release: Optional[str] = None  # the signed model release that ran (edge update)
        self.processed: List[str] = []
        self.quarantined: List[str] = []
        self.skipped_links: List[str] = []
        self.not_saved: List[str] = []
        self.waiting_late = 0
        self.waiting = 0

    # ----- recordings ----------------------------------------------------------------
    def _screener(self):
        if self.screener is None:
            from edge import Screener, ScreenerOptions

            self.screener = Screener(ScreenerOptions(self.config.engine, self.models_dir))
        return self.screener

    def _quarantine(self, key: str, paths: List[Path], reason: str, **ids) -> None:
        self.store.commit_quarantined(key, reason, self.run_id, **ids)
        quarantine(key, paths, reason, self.quarantine_dir)
        self.quarantined.append(key)
        self.log(f"quarantined {key}: {reason}")

    def reject(self, item: Rejected) -> None:
        self._quarantine(item.key, [item.path] + item.companions, item.reason)

    def handle(self, rec: Recording) -> None:
        from edge.apps.nightly.process import RecordingRejected, process_recording

        files = [rec.path] + rec.companions
        ids = dict(person=rec.person, captured=rec.captured, day=rec.day, size_bytes=rec.size_bytes)
        row = self.store.state_of(rec.key)
        if row is not None and row["state"] == "done":
            remove_processed(files)  # committed by an earlier run that stopped before removing it
            self.log(f"already processed: {rec.key} (removed from the inbox)")
            return
        if row is not None and row["state"] == "quarantined":
            quarantine(rec.key, files, row["reason"], self.quarantine_dir)
            return
        try:  # checked again just before reading: still a regular file of the size the scan saw
            st = os.lstat(str(rec.path))
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode) or st.st_size != rec.size_bytes:
            self.log(f"not taken: {rec.key} changed since the scan (replaced or still growing); next run")
            self.waiting_late += 1
            return
        attempts = self.store.begin(rec.key, rec.person, rec.captured, rec.day, rec.size_bytes, self.run_id)
        if attempts > MAX_ATTEMPTS:
            self._quarantine(rec.key, files, f"processing did not finish in {MAX_ATTEMPTS} attempts "
                                             "(the job was killed or crashed each time)", **ids)
            return
        started = time.perf_counter()
        try:
            done = process_recording(self._screener(), rec, self.out_dir)
        except RecordingRejected as exc:
            self._quarantine(rec.key, files, exc.reason, **ids)
            return
        except EdgeError as exc:
            self._quarantine(rec.key, files, str(exc), **ids)
            return
        except OSError as exc:
            if exc.filename is not None and _inside(exc.filename, self.inbox):  # the recording cannot be read
                self._quarantine(rec.key, files, f"cannot be read: {exc.strerror or exc}", **ids)
                return
            # Our side failed (disk full, a folder not writable): the recording stays for the next run.
            self.not_saved.append(rec.key)
            self.log(f"NOT saved: {rec.key}: {first_line(exc)}; it stays in the inbox for the next run")
            return
        except Exception as exc:  # a bug must not stop the night; the traceback goes to the log
            traceback.print_exc(file=sys.stderr)
            self._quarantine(rec.key, files, f"internal error: {type(exc).__name__}: {first_line(exc)}", **ids)
            return
        try:
            self.store.commit_done(rec.key, done.outcome, done.summary, self.run_id)
        except (sqlite3.Error, OSError) as exc:
            self.not_saved.append(rec.key)
            self.log(f"NOT saved: {rec.key}: database {self.store.path}: {first_line(exc)}; "
                     "it stays in the inbox for the next run")
            return
        remove_processed(files)
        self.processed.append(rec.key)
        # Counts and ids only: scores stay in the database and the reports, out of the journal.
        self.log(f"processed {rec.key}: {done.outcome['duration_s']:.0f} s of audio in "
                 f"{time.perf_counter() - started:.1f} s")

    def process_inbox(self) -> None:
        n = self.nightly
        scan = scan_inbox(self.inbox, n.stable_seconds, n.done_marker, time.time())
        self._take(scan)
        if scan.waiting and not n.done_marker and 0 < scan.youngest_wait_s <= WAIT_CAP_S:
            # Files still being written: wait once for them to settle, then take what is stable.
            self.log(f"{len(scan.waiting)} file(s) still being written; waiting {scan.youngest_wait_s:.0f} s")
            time.sleep(scan.youngest_wait_s + 0.2)
            scan = scan_inbox(self.inbox, n.stable_seconds, n.done_marker, time.time())
            self._take(scan)
        self.waiting = len(scan.waiting) + self.waiting_late
        if self.waiting:
            self.log(f"{self.waiting} file(s) left for the next run (still being written or no done marker)")

    def _take(self, scan) -> None:
        for link in scan.links:
            if str(link) not in self.skipped_links:
                self.skipped_links.append(str(link))
                self.log(f"not followed: {link} is a symbolic link (the inbox takes regular files only)")
        for item in scan.rejected:
            self.reject(item)
        for rec in scan.ready:
            self.handle(rec)

    # ----- trends, reports, messages -------------------------------------------------
    def demo_weights(self) -> bool:
        if self.screener is not None:
            return bool(self.screener.demo_weights)
        if self._demo_weights is not None:
            return self._demo_weights
        return self.store.any_demo_weights()

    def trend(self, person: str) -> Trend:
        n = self.nightly
        days = [d for d in self.store.days(person) if d["day"] <= self.night]  # as of the night (a replay)
        trend = evaluate(person, days, n.baseline, n.baseline_days, n.flag_margin, n.flag_days)
        trend.labels = self.store.labels(person, upto=self.night)
        return trend

    def nightly_payload(self, trend: Trend, message_id: str) -> Dict:
        latest = trend.latest
        last_day = None
        if latest is not None:
            phq8 = None
            if latest.get("phq8_mu") is not None:
                from edge.rules.phq8 import phq8_interval

                mu, sigma = latest["phq8_mu"], latest["phq8_sigma"]
                low, high = phq8_interval(mu, sigma)
                phq8 = {"mu": round(mu, 2), "sigma": round(sigma, 2), "low": round(low, 2), "high": round(high, 2),
                        "recordings": latest["phq8_n"]}
            last_day = {"day": latest["day"], "recordings": latest["recordings"],
                        "audio_s": round(latest["audio_s"], 1), "phq8": phq8,
                        "voice": {m: None if latest.get(m) is None else round(latest[m], 4) for m in VOICE_MEASURES}}
        return {
            "schema": PAYLOAD_SCHEMA, "message_id": message_id, "gateway": self.nightly.gateway_id,
            "person": trend.person, "night": self.night, "generated_utc": utc_now(),
            "notice": SCREENING_DISCLAIMER, "demo_weights": self.demo_weights(),
            "days_with_data": len(trend.days), "days_without_data": days_without_data(trend.days, self.night),
            "last_day": last_day, "baseline": trend.baseline.to_dict(),
            "flags": [f.to_dict() for f in trend.flags],
        }

    def state_payload(self, run: Dict, flagged: int) -> Dict:
        """The gateway's retained state message (gateway_state.schema.json) for this run."""
        gateway = self.nightly.gateway_id
        return {"schema": STATE_SCHEMA, "message_id": f"{gateway}/state/{self.run_id}", "gateway": gateway,
                "run_id": self.run_id, "started_utc": run["started_utc"], "finished_utc": run["finished_utc"],
                "night": self.night, "processed": len(self.processed), "quarantined": len(self.quarantined),
                "waiting": self.waiting, "links_not_followed": len(self.skipped_links),
                "persons": len(self.store.persons()), "persons_flagged": flagged,
                "status": "attention" if (self.quarantined or flagged) else "ok",
                "version": __version__, "models_release": self._models_release, "notice": SCREENING_DISCLAIMER}

    def report_and_queue(self) -> Dict:
        from edge.apps.nightly.report import write_reports

        if self.screener is not None:  # the models are done: their memory goes before the plots'
            self._demo_weights = bool(self.screener.demo_weights)
            self._models_release = self.screener.release.label
            self.screener.close()
            self.screener = None
            gc.collect()

        outbox = Outbox(self.config.mqtt.queue_dir) if self.broker is not None else None
        prefix, gateway = self.config.mqtt.topic_prefix, self.nightly.gateway_id
        flagged = 0
        plot_note = None
        try:
            trends = [self.trend(person) for person in self.store.persons()]
            for paths in write_reports(trends, self.night, self.reports_dir, self.demo_weights()) if trends else []:
                plot_note = plot_note or paths["note"]
            for trend in trends:
                person = trend.person
                flagged += bool(trend.flags)
                if trend.flags:  # a count, never the measures' values (those are in the report)
                    self.log(f"{person}: {len(trend.flags)} flag(s); see the report")
                if outbox is not None:
                    message_id = f"{gateway}/{person}/{self.night}/{self.store.person_version(person)}"
                    payload = self.nightly_payload(trend, message_id)
                    outbox.enqueue(message_id, nightly_topic(prefix, gateway, person),
                                   json.dumps(payload, sort_keys=True).encode())
            if plot_note:
                self.log(f"reports written without plots: {plot_note}")
            run = self.store.finish_run(self.run_id)
            state = self.state_payload(run, flagged)
            result = {"state": state, "mqtt": None}
            if outbox is not None:
                outbox.enqueue(state["message_id"], state_topic(prefix, gateway),
                               json.dumps(state, sort_keys=True).encode(), retain=True)
                drained = publish_outbox(outbox, self.broker, client_id=f"edge-nightly-{gateway}")
                result["mqtt"] = drained
                if drained.error:
                    self.log(f"mqtt: {drained.error}; {drained.left} message(s) wait in {outbox.path} "
                             "for the next run")
                else:
                    self.log(f"mqtt: {drained.sent} message(s) delivered to {self.broker.address}")
            return result
        finally:
            if outbox is not None:
                outbox.close()

    def close(self) -> None:
        if self.screener is not None:
            self.screener.close()
        self.store.close()


def _inside(path: str, folder: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(str(folder)))
        return True
    except ValueError:
        return False


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def parse_night(text: Optional[str]) -> Optional[str]:
    """`--night YYYY-mm-dd` (a backfill or a replay: the trends as of that night), or None
    (tonight, from the clock)."""
    if text is None:
        return None
    from datetime import datetime

    try:
        if len(text) != 10:
            raise ValueError
        return datetime.strptime(text, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise EdgeError(f"--night must be a date YYYY-mm-dd, got {text[:40]!r}") from None


def run(args) -> int:
    night_day = parse_night(getattr(args, "night", None))
    config = load_config(args.config)
    n = config.nightly
    inbox = Path(getattr(args, "inbox", None) or n.inbox)
    if not inbox.is_dir():
        raise EdgeError(f"inbox {inbox} is not a folder; create it or set nightly.inbox / --inbox")
    db_path = getattr(args, "db", None) or config.output.database
    if not db_path:
        raise EdgeError("edge nightly needs a database: set output.database in the profile or give --db FILE")
    out = getattr(args, "out", None)
    out_dir = Path(out or config.output.dir)
    reports_dir = Path(out) / "reports" if out else Path(n.reports)
    for key, value in (("nightly.gateway_id", n.gateway_id), ("mqtt.topic_prefix", config.mqtt.topic_prefix)):
        if any(c in value for c in "+#") or (key == "nightly.gateway_id" and "/" in value):
            raise EdgeError(f"{args.config}: key '{key}' must not contain MQTT wildcards"
                            f"{' or /' if key == 'nightly.gateway_id' else ''}, got {value!r}")
    broker = None
    mqtt_url = getattr(args, "mqtt", None)
    if config.mqtt.enabled or mqtt_url:
        broker = broker_settings(config.mqtt)
        if mqtt_url:
            broker = parse_mqtt_url(mqtt_url, broker)
        problems = broker_setup_errors(broker)  # a wrong set-up is the user's to fix: exit 2 now
        if problems:
            raise EdgeError(f"{args.config}: {problems[0]}"
                            + (f" (and {len(problems) - 1} more: edge config check)" if len(problems) > 1 else ""))
    private_dir(Path(db_path).parent)
    inbox_lock = _Lock(str(inbox), "inbox")
    try:
        lock = _Lock(str(db_path) + ".lock")
    except BaseException:
        inbox_lock.release()
        raise
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    night = None
    try:
        night = Night(config, inbox, str(db_path), out_dir, reports_dir, broker,
                      models_dir=getattr(args, "models_dir", None), night=night_day)
        night.store.start_run(night.run_id)
        night.process_inbox()
        night.report_and_queue()
        print(f"night {night.night} ({night.run_id}): {len(night.processed)} processed, "
              f"{len(night.quarantined)} quarantined, {night.waiting} waiting, "
              f"{len(night.skipped_links)} link(s) not followed"
              + (f", {len(night.not_saved)} NOT saved (left in the inbox)" if night.not_saved else "")
              + f". {SCREENING_DISCLAIMER}", flush=True)
        return EXIT_NOT_SAVED if night.not_saved else 0
    except KeyboardInterrupt:
        print("edge nightly: stopped; committed recordings are kept, the rest is done next run", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        if night is not None:
            night.close()
        lock.release()
        inbox_lock.release()
