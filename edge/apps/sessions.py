"""`edge sessions`: the stored sessions for a clinic (the kiosk's and `edge run`'s).

    edge sessions list   --db out/sessions.sqlite [--since 2026-11-01] [--last 20]
    edge sessions export --db out/sessions.sqlite --csv sessions.csv [--since 2026-11-01]
    edge sessions export --db out/sessions.sqlite --labels DIR      (labelled pairs, for training)

One row per session, by its anonymous id: when, how long, whether it ran to its end
(and why not), both readings with their limits, and whether the PHQ-8 model had demo
weights; for a kiosk visit also the PHQ-8 questionnaire (score, band, answers) and which
readings the visitor was shown: a reading the visitor was not shown (a visit cut short, a
sensor that stopped, an estimate from demo weights) has its status "not shown" and no
figures here, so the clinic reads what the visitor read (the stored summary keeps every
reading, for research). No pictures, sound or source names go into the export. The CSV is
written owner-only and whole or not at all (it holds health results); `--csv -` prints it.

`--labels DIR` writes the labelled pairs (visits whose visitor opted in to research and
answered every item) in the layout `python -m export train-moe --data sessions` reads:
DIR/labels.csv (session,phq8,context) and DIR/<session>.npz (the visit's tick features).
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from typing import Dict, List

from edge import SCREENING_DISCLAIMER
from edge.errors import EdgeError, first_line

EXPORT_COLUMNS = ("session_id", "started_utc", "duration_s", "complete", "stop_reason", "profile",
                  "vote_status", "vote_level", "vote_pattern", "vote_message", "vote_provisional",
                  "phq8_status", "phq8_mu", "phq8_sigma", "phq8_low", "phq8_high", "phq8_band",
                  "demo_weights", "abstentions", "questionnaire", "questionnaire_score", "questionnaire_band",
                  "questionnaire_answers", "items_answered", "shown", "research_consent", "labelled")
_READINGS = {"expression": ("vote_level", "vote_pattern", "vote_message", "vote_provisional"),
             "estimate": ("phq8_mu", "phq8_sigma", "phq8_low", "phq8_high", "phq8_band")}
_STATUS = {"expression": "vote_status", "estimate": "phq8_status"}


def _open(path: str):
    from edge.store import ResultStore

    if not os.path.isfile(path):
        raise EdgeError(f"database {path} does not exist; give the profile's output.database "
                        "(e.g. out/sessions.sqlite)")
    return ResultStore(path)


def _since(text: str) -> str:
    """A date or ISO time as the start of the range (started_utc is ISO 8601, UTC)."""
    if text and not (len(text) >= 10 and text[4] == "-" and text[7] == "-" and text[:4].isdigit()):
        raise EdgeError(f"--since must be a date like 2026-11-01 (UTC), got {text!r}")
    return text


def export_rows(path: str, since: str = "") -> List[Dict]:
    """The export's rows (EXPORT_COLUMNS), oldest first."""
    store = _open(path)
    try:
        rows = []
        for row in store.rows(_since(since)):
            try:
                summary = json.loads(row["summary_json"])
            except ValueError:
                summary = {}
            vote = summary.get("screening", {}).get("emotion_vote", {})
            out = {name: row[name] for name in EXPORT_COLUMNS if name in row.keys()}
            out["complete"] = int(row["complete"])
            out["demo_weights"] = int(row["demo_weights"])
            out["vote_message"] = vote.get("message")
            out["vote_provisional"] = int(bool(vote.get("provisional"))) if vote.get("status") == "ok" else None
            out["abstentions"] = "; ".join(summary.get("abstentions", []))
            _add_visit(out, store.questionnaire(row["session_id"]))
            rows.append(out)
        return rows
    except Exception as exc:  # a damaged row or file: one line
        if isinstance(exc, EdgeError):
            raise
        raise EdgeError(f"database {path} cannot be read: {first_line(exc)}") from None
    finally:
        store.close()


def _add_visit(out: Dict, visit) -> None:
    """A kiosk visit's questionnaire, and its readings as the visitor was shown them."""
    if visit is None:
        return
    try:
        shown = json.loads(visit["shown_json"] or "null") or {}
        answers = json.loads(visit["answers_json"] or "[]")
    except ValueError:
        shown, answers = {}, []
    out["questionnaire"] = visit["instrument"]
    out["questionnaire_score"] = visit["score"]
    out["questionnaire_band"] = visit["band"]
    out["questionnaire_answers"] = " ".join("-" if a is None else str(a) for a in answers)
    out["items_answered"] = visit["items_answered"]
    out["research_consent"] = int(visit["research_consent"])
    out["labelled"] = int(visit["features_file"] is not None)
    seen = shown.get("outcome", {}).get("shown", []) if shown.get("result") else []
    texts = shown.get("texts", {})
    out["shown"] = "; ".join(seen) if seen else f"no result ({shown.get('why', 'unknown')})"
    for name, columns in _READINGS.items():
        if name in seen and not str(texts.get(name, "")).startswith("No reading"):
            continue
        for column in columns:
            out[column] = None
        out[_STATUS[name]] = "not shown"


def write_labels(path: str, folder: str, since: str = "") -> int:
    """The labelled pairs into `folder` (see the module docstring); how many were written."""
    import shutil

    from edge.store.files import private_dir, write_text_atomic

    store = _open(path)
    try:
        pairs = store.labelled_pairs(_since(since))
    finally:
        store.close()
    try:
        private_dir(folder)
        lines = ["session,phq8"]
        for pair in pairs:
            source = pair["features_file"]
            if not os.path.isfile(source):
                raise EdgeError(f"labelled visit {pair['session_id']}: its features file {source} is missing")
            target = os.path.join(folder, f"{pair['session_id']}.npz")
            shutil.copyfile(source, target)
            os.chmod(target, 0o600)
            lines.append(f"{pair['session_id']},{int(pair['score'])}")
        write_text_atomic(os.path.join(folder, "labels.csv"), "\n".join(lines) + "\n")
    except OSError as exc:
        raise EdgeError(f"--labels {folder} cannot be written: {exc.strerror or exc}") from None
    return len(pairs)


def to_csv(rows: List[Dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in EXPORT_COLUMNS})
    return buffer.getvalue()


def export(args) -> int:
    from edge.store.files import write_text_atomic

    if getattr(args, "labels", None):
        count = write_labels(args.db, args.labels, args.since or "")
        print(f"{count} labelled visit(s) written to {args.labels} (labels.csv + features, owner-only); "
              f"train with: python -m export train-moe --data sessions --dir {args.labels} --out W.npz")
        if not args.csv:
            return 0
    if not args.csv:
        raise EdgeError("give --csv OUT (or --labels DIR)")
    rows = export_rows(args.db, args.since or "")
    text = to_csv(rows)
    if args.csv == "-":
        sys.stdout.write(text)
        return 0
    if os.path.isdir(args.csv):
        raise EdgeError(f"--csv {args.csv} is a folder; give a file path")
    try:
        write_text_atomic(args.csv, text)
    except OSError as exc:
        raise EdgeError(f"--csv {args.csv} cannot be written: {exc.strerror or exc}") from None
    print(f"{len(rows)} session(s) written to {args.csv} (owner-only). {SCREENING_DISCLAIMER}")
    return 0


def list_sessions(args) -> int:
    rows = export_rows(args.db, args.since or "")
    if args.last:
        rows = rows[-args.last:]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'session':<24} {'started (UTC)':<20} {'s':>5}  {'vote':<6} {'PHQ-8 (interval, band)':<34} note")
    for row in rows:
        if row["phq8_status"] == "ok":
            phq8 = f"{row['phq8_mu']:.1f} ({row['phq8_low']:.1f}-{row['phq8_high']:.1f}, {row['phq8_band']})"
        else:
            phq8 = row["phq8_status"] or "-"
        vote = row["vote_level"] if row["vote_status"] == "ok" else (row["vote_status"] or "-")
        notes = []
        if row.get("questionnaire_score") is not None:
            notes.append(f"PHQ-8 answered {row['questionnaire_score']} ({row['questionnaire_band']})")
        if not row["complete"]:
            notes.append(f"cut short: {row['stop_reason']}")
        if row["demo_weights"]:
            notes.append("demo weights")
        print(f"{row['session_id']:<24} {row['started_utc']:<20} {row['duration_s']:>5.1f}  {vote:<6} "
              f"{phq8:<34} {'; '.join(notes)}")
    print(f"{len(rows)} session(s). {SCREENING_DISCLAIMER}")
    return 0


def run(args) -> int:
    """args.sessions_command: "export" (db, csv, since) or "list" (db, since, last, json)."""
    if args.sessions_command == "export":
        return export(args)
    return list_sessions(args)


def main(argv=None) -> int:
    """`python -m edge.apps.sessions ...` (the same as `edge sessions ...`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="edge sessions", description="stored screening sessions")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except EdgeError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return exc.exit_code


def add_arguments(parser) -> None:
    """The subcommands (what `edge sessions` adds to its parser)."""
    sub = parser.add_subparsers(dest="sessions_command", required=True)
    p = sub.add_parser("export", help="write the sessions as CSV for a clinic (owner-only file)")
    p.add_argument("--db", required=True, metavar="FILE", help="the results database (output.database)")
    p.add_argument("--csv", metavar="OUT", help="CSV file to write ('-': standard output)")
    p.add_argument("--labels", metavar="DIR", help="also (or only) write the labelled pairs (research opt-in) here")
    p.add_argument("--since", metavar="DATE", help="only sessions started on or after this UTC date")
    p = sub.add_parser("list", help="print the latest sessions")
    p.add_argument("--db", required=True, metavar="FILE", help="the results database (output.database)")
    p.add_argument("--since", metavar="DATE", help="only sessions started on or after this UTC date")
    p.add_argument("--last", type=int, default=20, metavar="N", help="the last N sessions (default 20; 0: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per session")


if __name__ == "__main__":
    sys.exit(main())
