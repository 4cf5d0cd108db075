"""Inbox names an adversary (or a confused phone app) can write: any bytes a Linux file name
may hold (odd Unicode, undecodable bytes, control characters, 255-byte names, names that
look like recordings, sidecars, markers or videos), in person folders with any name.

The scan never raises, every file lands in exactly one place (ready, waiting, rejected,
a link, or hidden and ignored), a ready recording's person is an opaque id, and
quarantining what was rejected moves it with its reason and never raises. The default run
tries a few dozen inboxes; `EDGE_FUZZ_INBOX_EXAMPLES=200000 timeout 600 pytest ...` is the
long run (its count and peak RSS go, every 200 inboxes, to the file named by
EDGE_FUZZ_INBOX_REPORT)."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.apps.nightly.inbox import PERSON_RE, quarantine, scan_inbox

EXAMPLES = int(os.environ.get("EDGE_FUZZ_INBOX_EXAMPLES", "40"))
REPORT = os.environ.get("EDGE_FUZZ_INBOX_REPORT")
_tried = [0]

# File-name bytes: anything but "/" and NUL, weighted towards what the inbox parses.
_plain = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))
_looks_right = st.sampled_from([b"20261130T081500", b"20261130T081500_a", b"20261340T999999", b"2026"])
_suffix = st.sampled_from([b".wav", b".json", b".wav.done", b".mp4", b".flac", b".ogg", b".opus", b".txt", b"",
                           b".WAV", b".wav.json", b".reason.txt"])
_name = st.one_of(
    st.tuples(_looks_right, st.binary(max_size=12), _suffix).map(lambda t: t[0] + t[1].replace(b"/", b"_")
                                                                  .replace(b"\0", b"_") + t[2]),
    _plain,
    st.just(b"x" * 251 + b".wav"),  # 255 bytes: the longest name
    st.sampled_from([b".hidden.wav", b"..wav", b"\xff\xfe.wav", b"\n.wav", b"a\rb.json", "é.wav".encode()]),
).filter(lambda b: b not in (b".", b".."))
_person = st.one_of(st.sampled_from([b"p01", b"P-2_x", b"a" * 64, b"a" * 65, b"-p", b".p", b"\xff", b"p 1"]),
                    _plain).filter(lambda b: b not in (b".", b".."))
_content = st.sampled_from([b"", b"RIFF\x00\x00\x00\x00WAVE", b"{}", b'{"person": "p9"}', b"not json {", b"\x00" * 64])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(st.tuples(_person, st.lists(st.tuples(_name, _content), max_size=6)), min_size=1, max_size=4))
def test_any_names_in_the_inbox_are_sorted_or_quarantined_never_raise(folders):
    _tried[0] += 1
    if REPORT and _tried[0] % 200 == 0:
        _report()
    work = Path(tempfile.mkdtemp(prefix="edge-inbox-fuzz-"))
    try:
        inbox, jail = work / "inbox", work / "quarantine"
        inbox.mkdir()
        written = set()
        for person, files in folders:
            folder = os.path.join(os.fsencode(str(inbox)), person)
            os.makedirs(folder, exist_ok=True)
            for name, content in files:
                path = os.path.join(folder, name)
                if os.path.isdir(path):
                    continue
                with open(path, "wb") as f:
                    f.write(content)
                written.add(os.fsdecode(path))
        scan = scan_inbox(inbox, 0.0, None, now_s=10 ** 10)
        seen = ([str(r.path) for r in scan.ready] + [str(p) for p in scan.waiting]
                + [str(r.path) for r in scan.rejected] + [str(p) for p in scan.links])
        for r in scan.ready:
            seen += [str(p) for p in r.companions]
            assert PERSON_RE.match(r.person), r.person
            assert re.match(r"^\d{4}-\d{2}-\d{2}$", r.day)
        for r in scan.rejected:
            seen += [str(p) for p in r.companions]
            assert r.reason and "\n" not in r.reason and len(r.reason) < 400
        assert len(seen) == len(set(seen)), "a file was sorted twice"
        hidden = {p for p in written if os.path.basename(p).startswith(".")
                  or os.path.basename(os.path.dirname(p)).startswith(".")}
        assert set(seen) <= written
        unsorted = written - set(seen) - hidden
        # Anything not sorted is a companion-looking file with no recording of its own (a lone
        # sidecar, marker, video or reason file): the scan leaves it for its recording to come.
        for path in unsorted:
            assert re.search(r"\.(json|done|mp4|mkv|avi|mov|txt)$", path, re.I) or path.endswith(".wav.done"), path
        for r in scan.rejected:
            quarantine(r.key, [r.path] + r.companions, r.reason, jail)
            assert not r.path.exists()
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


def _report() -> None:
    with open("/proc/self/status") as f:
        peak_kb = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
    Path(REPORT).write_text(json.dumps({"inboxes_tried": _tried[0], "peak_rss_mb": round(peak_kb / 1024, 1)}))


def teardown_module(module) -> None:
    if REPORT:
        _report()


def test_a_255_byte_recording_name_is_quarantined_with_its_reason(tmp_path):
    """Found by the fuzz above: the reason file `<name>.reason.txt` (and the writer's temporary
    beside it) was longer than a file name may be, and quarantining raised (one file would
    have stopped the night for everybody)."""
    inbox, jail = tmp_path / "inbox", tmp_path / "quarantine"
    (inbox / "p01").mkdir(parents=True)
    name = "20261130T081500_" + "x" * 235 + ".wav"
    assert len(name.encode()) == 255
    (inbox / "p01" / name).write_bytes(b"")
    scan = scan_inbox(inbox, 0.0, None, now_s=10 ** 10)
    rejected = scan.rejected + [r for r in scan.ready]
    assert len(rejected) == 1
    quarantine(f"p01/{name}", [inbox / "p01" / name], "empty file (0 bytes)", jail)
    kept = sorted(p.name for p in (jail / "p01").iterdir())
    assert name in kept and any(k.endswith(".reason.txt") and len(k.encode()) <= 255 for k in kept)


def test_a_name_that_is_not_utf8_is_quarantined_as_such(tmp_path):
    """Found by the long fuzz run: a recording named with a byte that is not UTF-8 reached the
    quarantine's reason file (and the ledger and the log) as a lone surrogate, which raised."""
    inbox, jail = tmp_path / "inbox", tmp_path / "quarantine"
    folder = os.path.join(os.fsencode(str(inbox)), b"p01")
    os.makedirs(folder)
    for name in (b"20261130T081500\x80.wav", b"20261130T081500\x80.json"):
        open(os.path.join(folder, name), "wb").close()
    scan = scan_inbox(inbox, 0.0, None, now_s=10 ** 10)
    assert not scan.ready and len(scan.rejected) == 2
    for r in scan.rejected:
        r.key.encode("utf-8")  # text the ledger and the log can hold
        assert "not valid UTF-8" in r.reason and "\\x80" in r.key
        quarantine(r.key, [r.path] + r.companions, r.reason, jail)
    assert len(os.listdir(os.path.join(os.fsencode(str(jail)), b"p01"))) == 4  # two files, two reasons
