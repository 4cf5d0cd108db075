"""The inbox: which recordings are ready, who they belong to, when they were made.

Layout (README "Nightly"): `<inbox>/<person>/<YYYYmmddTHHMMSS>[_anything].<ext>`, ext one
of AUDIO_SUFFIXES (WAV, FLAC, Ogg Vorbis/Opus: edge.capture.audio_file decodes them), the
person an opaque id (letters, digits, `-`, `_`; no names), the capture time local to the
gateway. Beside a recording may lie:
- a sidecar `<stem>.json` with `{"person": "...", "captured": "2026-11-30T08:15:00"}`
  (either key overrides the folder / file name; an ISO time with an offset is kept as given),
  and optionally `"phq8": {"answers": [8 answers 0-3], "date": "2026-11-30"}`: a PHQ-8
  questionnaire the person filled in, stored as a label beside the night (issue 19). A
  sidecar is read within size and depth caps (edge.safe_load); one that cannot be read, or
  whose fields are wrong, sends its recording to quarantine with the reason;
- a video `<stem>.mp4|.mkv|.avi|.mov` (analysed with the audio);
- the done marker `<name>.wav<done_marker>` when the profile sets `nightly.done_marker`.

A recording is ready when it has its done marker (if one is configured) or else when its
size and mtime have not changed for `stable_seconds`. Hidden files (a sync tool's
temporaries) are not looked at. Symbolic links are never followed (a link in the inbox may
point anywhere); they are reported and left where they are. Anything else that is not a
recording or a companion of one is rejected with a reason (quarantined by the job).
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from edge import EdgeError, first_line, load_json_file, private_dir, write_text_atomic

PERSON_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
NAME_RE = re.compile(r"^(\d{8}T\d{6})(?:_[^/]*)?$")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov")
SIDECAR_SUFFIX = ".json"
SIDECAR_MAX_BYTES = 64 * 1024
SIDECAR_MAX_DEPTH = 4  # {"phq8": {"answers": [...]}} is three levels
PHQ8_ITEMS = 8
REASON_SUFFIX = ".reason.txt"


@dataclass
class Recording:
    """One recording found in the inbox (paths inside the inbox, no link among them)."""

    key: str  # "<person folder>/<file name>": the ledger's id of the recording
    path: Path
    person: str
    captured: str  # ISO 8601, local time of the gateway unless the sidecar gave an offset
    day: str  # YYYY-mm-dd of `captured`
    size_bytes: int
    video: Optional[Path] = None
    companions: List[Path] = field(default_factory=list)  # sidecar, marker, video: moved/removed with it
    phq8: Optional[Dict] = None  # {"answers": [8 x 0-3], "date": "YYYY-mm-dd", "total": 0-24} from the sidecar


@dataclass
class Rejected:
    """A file in the inbox that cannot be a recording; `key` as for a Recording."""

    key: str
    path: Path
    reason: str
    companions: List[Path] = field(default_factory=list)


@dataclass
class Scan:
    ready: List[Recording] = field(default_factory=list)
    waiting: List[Path] = field(default_factory=list)  # still being written
    rejected: List[Rejected] = field(default_factory=list)
    links: List[Path] = field(default_factory=list)  # symbolic links, not followed
    youngest_wait_s: float = 0.0  # how long until every waiting file could be stable


def _short(value) -> str:
    """A value as a reason quotes it: its repr, cut (a 5 MB string stays a short line)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _utf8(name: str) -> bool:
    """A file name that decodes as UTF-8 (os gives undecodable bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(name: str) -> str:
    """A file name as text for the ledger, logs and reasons: undecodable bytes as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_link(entry: os.DirEntry) -> bool:
    return entry.is_symlink()


def _companion_kind(name: str, done_marker: Optional[str]) -> Optional[str]:
    lower = name.lower()
    if done_marker and name.endswith(done_marker):
        return "marker"
    if lower.endswith(SIDECAR_SUFFIX):
        return "sidecar"
    if lower.endswith(VIDEO_SUFFIXES):
        return "video"
    return None


def parse_capture_time(stem: str) -> Optional[datetime]:
    found = NAME_RE.match(stem)
    if not found:
        return None
    try:
        return datetime.strptime(found.group(1), "%Y%m%dT%H%M%S")
    except ValueError:
        return None


def _read_sidecar(path: Path) -> Tuple[Dict, Optional[str]]:
    """The sidecar's keys, or an error reason (size and nesting capped: a file nested
    100,000 deep is a reason, not a RecursionError that stops the night)."""
    try:
        data = load_json_file(str(path), "sidecar", SIDECAR_MAX_BYTES, SIDECAR_MAX_DEPTH)
    except EdgeError as exc:
        return {}, first_line(exc).replace(str(path), path.name)
    if not isinstance(data, dict):
        return {}, f"sidecar {path.name} must hold a JSON object"
    for key in ("person", "captured"):
        if key in data and not isinstance(data[key], str):
            return {}, f"sidecar {path.name}: '{key}' must be a string, got {type(data[key]).__name__}"
    return data, None


def parse_phq8(value, where: str) -> Tuple[Optional[Dict], Optional[str]]:
    """A sidecar's `phq8` field -> ({"answers", "date", "total"}, None) or (None, reason).
    Eight answers, each an integer 0-3 (PHQ-8 items in their order), and the ISO date they
    were given."""
    if not isinstance(value, dict) or set(value) - {"answers", "date"} or "answers" not in value \
            or "date" not in value:
        return None, (f"{where}: 'phq8' must be {{\"answers\": [{PHQ8_ITEMS} answers 0-3], "
                      "\"date\": \"YYYY-mm-dd\"}")
    answers = value["answers"]
    if not isinstance(answers, list) or len(answers) != PHQ8_ITEMS or not all(
            type(a) is int and 0 <= a <= 3 for a in answers):
        return None, f"{where}: 'phq8.answers' must be {PHQ8_ITEMS} whole numbers from 0 to 3"
    given = value["date"]
    try:
        if not isinstance(given, str) or len(given) != 10:
            raise ValueError
        day = datetime.strptime(given, "%Y-%m-%d").date()
    except ValueError:
        return None, f"{where}: 'phq8.date' must be a date YYYY-mm-dd"
    return {"answers": list(answers), "date": day.isoformat(), "total": sum(answers)}, None


def scan_inbox(inbox: Path, stable_seconds: float, done_marker: Optional[str], now_s: float) -> Scan:
    """Walk `<inbox>/<person>/` one level deep (no links followed) and sort what is there.

    now_s: the wall clock (time.time()) to compare mtimes with."""
    scan = Scan()
    inbox = Path(inbox)
    try:
        persons = sorted(os.scandir(str(inbox)), key=lambda e: e.name)
    except OSError:
        return scan
    for person_entry in persons:
        if person_entry.name.startswith("."):
            continue
        if _is_link(person_entry):
            scan.links.append(Path(person_entry.path))
            continue
        if not person_entry.is_dir(follow_symlinks=False):
            if person_entry.is_file(follow_symlinks=False):
                scan.rejected.append(Rejected(_printable(person_entry.name), Path(person_entry.path),
                                              "not inside a person folder: put recordings in <inbox>/<person>/"))
            continue
        _scan_person(Path(person_entry.path), person_entry.name, stable_seconds, done_marker, now_s, scan)
    return scan


def _scan_person(folder: Path, person: str, stable_seconds: float, done_marker: Optional[str],
                 now_s: float, scan: Scan) -> None:
    try:
        entries = sorted(os.scandir(str(folder)), key=lambda e: e.name)
    except OSError:
        return
    names = {}
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if _is_link(entry):
            scan.links.append(Path(entry.path))
            continue
        if entry.is_file(follow_symlinks=False):
            if not (_utf8(person) and _utf8(entry.name)):  # the ledger, logs and reasons are text
                scan.rejected.append(Rejected(f"{_printable(person)}/{_printable(entry.name)}", Path(entry.path),
                                              "the file or folder name is not valid UTF-8: rename it"))
                continue
            names[entry.name] = entry
    claimed = set()
    for name in sorted(names):
        suffix = os.path.splitext(name)[1].lower()
        if suffix not in AUDIO_SUFFIXES:
            continue
        entry = names[name]
        key = f"{person}/{name}"
        path = Path(entry.path)
        stem = name[:-len(suffix)]
        companions = []
        video = None
        for suffix in VIDEO_SUFFIXES + tuple(s.upper() for s in VIDEO_SUFFIXES):
            if stem + suffix in names:
                video = Path(names[stem + suffix].path)
                companions.append(video)
                claimed.add(stem + suffix)
                break
        sidecar = names.get(stem + SIDECAR_SUFFIX)
        marker = names.get(name + done_marker) if done_marker else None
        for extra in (sidecar, marker):
            if extra is not None:
                companions.append(Path(extra.path))
                claimed.add(extra.name)
        claimed.add(name)
        if done_marker:
            if marker is None:
                scan.waiting.append(path)
                continue
        else:
            st = entry.stat(follow_symlinks=False)
            age_s = now_s - max(st.st_mtime, *(p.stat().st_mtime for p in companions)) if companions \
                else now_s - st.st_mtime
            if age_s < stable_seconds:
                scan.waiting.append(path)
                scan.youngest_wait_s = max(scan.youngest_wait_s, stable_seconds - age_s)
                continue
        st = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            continue
        who, when, reason, phq8 = person, parse_capture_time(stem), None, None
        captured = when.isoformat() if when else None
        if sidecar is not None:
            data, reason = _read_sidecar(Path(sidecar.path))
            if reason is None and "person" in data:
                who = data["person"]
            if reason is None and "captured" in data:
                try:
                    captured = datetime.fromisoformat(data["captured"]).isoformat()
                except ValueError:
                    reason = f"sidecar {sidecar.name}: 'captured' is not an ISO 8601 time: {_short(data['captured'])}"
            if reason is None and "phq8" in data:
                phq8, reason = parse_phq8(data["phq8"], f"sidecar {sidecar.name}")
        if reason is None and not PERSON_RE.match(who):
            reason = (f"person id {_short(who)} is not an opaque id (1-64 letters, digits, '-' or '_', "
                      "starting with a letter or digit)")
        if reason is None and captured is None:
            reason = "no capture time: name it <YYYYmmddTHHMMSS>[_anything].wav or give 'captured' in a sidecar JSON"
        if reason is not None:
            scan.rejected.append(Rejected(key, path, reason, companions))
            continue
        scan.ready.append(Recording(key, path, who, captured, captured[:10], st.st_size, video, companions, phq8))
    for name in sorted(set(names) - claimed):
        kind = _companion_kind(name, done_marker)
        if kind in ("sidecar", "marker"):
            continue  # its recording may still be on the way; a lone sidecar harms nothing
        if kind == "video":
            continue  # a video waits for its audio
        scan.rejected.append(Rejected(f"{person}/{name}", Path(names[name].path),
                                      "not a recording: the inbox takes audio files ("
                                      + ", ".join(AUDIO_SUFFIXES) + "), optionally with a video, a sidecar "
                                      ".json or a done marker beside them"))


# A file name may have 255 bytes; the names made from a recording's (its reason file, a
# renamed duplicate, the writer's temporary) must fit too.
_NAME_BYTES = 200


def _fit(name: str, suffix: str) -> str:
    """`name + suffix`, or a shortened name with a hash of the whole when that is too long."""
    if len(os.fsencode(name + suffix)) <= _NAME_BYTES:
        return name + suffix
    import hashlib

    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    head = os.fsdecode(os.fsencode(name)[:_NAME_BYTES - len(os.fsencode(suffix)) - 20])
    return f"{head}~{digest}{suffix}"


def _move(path: Path, target_dir: Path) -> Optional[Path]:
    """Move one file into `target_dir` (a rename; a copy then unlink across filesystems)."""
    import shutil

    target = target_dir / path.name
    try:
        if os.path.lexists(str(target)):
            mtime = int(os.stat(str(path), follow_symlinks=False).st_mtime)
            target = target_dir / _fit(path.stem, f".{mtime}{path.suffix}")
        shutil.move(str(path), str(target))
        return target
    except FileNotFoundError:
        return None


def quarantine(key: str, paths: List[Path], reason: str, quarantine_dir: Path) -> Path:
    """Move a rejected recording (and its companions) to `<quarantine>/<person>/` with a
    `<name>.reason.txt` beside it; returns that folder. Owner-only."""
    folder = Path(key).parent
    root = private_dir(Path(quarantine_dir))
    target_dir = private_dir(root / folder) if str(folder) not in ("", ".") else root
    name = Path(key).name
    write_text_atomic(target_dir / _fit(name, REASON_SUFFIX), reason.rstrip() + "\n")
    for path in paths:
        moved = _move(path, target_dir)
        if moved is not None:
            os.chmod(str(moved), 0o600)
    return target_dir


def remove_processed(paths: List[Path]) -> None:
    """The recording's results are committed: its raw audio (and companions) leave the
    inbox (no raw audio is kept, DESIGN.md)."""
    for path in paths:
        try:
            os.unlink(str(path))
        except FileNotFoundError:
            pass
