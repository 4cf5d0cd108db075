"""The kiosk over plain HTTP (no browser): one session for two taps, the event rate, the
preview, the token, a visitor who walks away, a dark room, two faces, silence, a missing
camera, SIGTERM mid-session, and bad input refused before anything is served."""
from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from kiosk_support import (
    DEMO_VIDEO,
    DEMO_WAV,
    ROOT,
    EventReader,
    KioskProcess,
    answer_all,
    answers_for,
    demo_frames,
    http,
    kiosk_in_process,
    kiosk_profile,
    post,
    state,
    stored_visit,
    wait_for,
    wait_phase,
    write_silent_wav,
    write_video,
)

from edge.errors import EdgeError


def _rows(tmp_path: Path):
    db = sqlite3.connect(str(tmp_path / "out" / "sessions.sqlite"))
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM sessions ORDER BY started_utc").fetchall()
    finally:
        db.close()


def _first_jpeg(url: str) -> bytes:
    """The first JPEG of an MJPEG stream."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        buffer = b""
        while b"\xff\xd9" not in buffer:
            chunk = response.read1(65536)
            assert chunk, "the preview stream ended before a frame"
            buffer += chunk
    start = buffer.index(b"\xff\xd8")
    return buffer[start:buffer.index(b"\xff\xd9", start) + 2]


def test_two_taps_give_one_session_with_live_events_and_preview(tmp_path):
    import cv2

    profile = kiosk_profile(tmp_path, questionnaire="phq8")
    with kiosk_in_process(profile) as (base, controller):
        assert state(base)["phase"] == "welcome"
        replies = []
        barrier = threading.Barrier(2)

        def tap():
            barrier.wait()
            replies.append(post(base, "start")[2])

        taps = [threading.Thread(target=tap) for _ in range(2)]
        for t in taps:
            t.start()
        for t in taps:
            t.join()
        assert sorted(r["started"] for r in replies) == [False, True]
        session_id = replies[0]["state"]["session_id"]
        assert session_id and replies[1]["state"]["session_id"] == session_id
        assert post(base, "start")[2]["started"] is False  # a late third tap too

        events = EventReader(base + "api/events")
        jpeg = _first_jpeg(base + "preview.mjpg")
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (240, 320)  # preview_width 320, 4:3
        time.sleep(1.5)
        window = [t for t, s in events.events if s["phase"] == "capture"]
        assert len(window) >= 5 and (len(window) - 1) / (window[-1] - window[0]) >= 5.0, \
            f"{len(window)} events over {window[-1] - window[0]:.2f} s"
        live = events.events[-1][1]["capture"]
        assert live["face_found"] and live["hints"] == [] and 0 < live["progress"] < 1
        # The four prompts share the 5 s evenly: 1.25 s each.
        prompts = ["Tell me about your day.", "What did you enjoy doing this week?",
                   "How have you been sleeping lately?", "What are you looking forward to?"]
        assert live["prompt"] == prompts[int(live["elapsed_s"] / 1.25)], live

        # The visitor answers while the readings are taken; a second tap on an item already
        # answered does not answer the next one.
        answer_all(base, answers_for(12)[:7])
        assert post(base, "answer", {"item": 5, "value": 3})[0] == 409
        assert post(base, "answer", {"item": 7, "value": 7})[0] == 409  # not an answer
        assert post(base, "answer", {"item": 7, "value": answers_for(12)[7]})[2]["taken"]

        result = wait_phase(base, "result", 15)
        events.close()
        assert result["session_id"] == session_id
        stats = http(base + "api/stats")[2]
        assert stats["sessions"] == 1 and stats["preview"]["frames_encoded"] >= 1
        assert stats["last_timings"]["result_ready_ms"] < 1000
    rows = _rows(tmp_path)
    assert [r["session_id"] for r in rows] == [session_id] and rows[0]["complete"] == 1
    view = result["result"]
    cards = {c["name"]: c for c in view["signals"]}
    # The questionnaire leads; with demo weights the estimate is not shown; the expression vote
    # is a supporting sign in the page's words, never the paper's message.
    assert view["lead"] == "questionnaire" and list(cards) == ["questionnaire", "expression"]
    assert cards["questionnaire"]["score"] == 12 and cards["questionnaire"]["band"] == "moderate"
    assert cards["expression"]["level"] == rows[0]["vote_level"] and view["saved"] is True
    assert cards["expression"]["caveats"] == ["Based on a short look only: a rough sign."]  # 5 s: provisional
    assert "doctor" in view["advice"] and "your local emergency number" in view["help"]
    summary = json.loads((tmp_path / "out" / f"{session_id}.json").read_text())
    assert summary["complete"] is True and summary["sources"]["video"] == DEMO_VIDEO
    visit = stored_visit(tmp_path, session_id)
    assert json.loads(visit["answers_json"]) == answers_for(12) and visit["score"] == 12
    assert visit["band"] == "moderate" and visit["research_consent"] == 0 and visit["features_file"] is None
    assert json.loads(visit["shown_json"])["outcome"]["shown"] == ["questionnaire", "expression"]
    assert not (tmp_path / "out" / "labelled" / f"{session_id}.npz").exists()  # no opt-in: no features


def test_the_token_is_needed_by_every_request(tmp_path):
    profile = kiosk_profile(tmp_path, token="s3cret-token")  # (a cookie-unsafe one is tested below)
    with kiosk_in_process(profile, loopback_without_token=False) as (base, controller):
        for path in ("", "static/kiosk.js", "api/state", "api/events", "api/stats", "preview.mjpg"):
            assert http(base + path)[0] == 401, path
        assert post(base, "start")[0] == 401
        assert http(base + "api/state", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert http(base + "api/state", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        status, headers, _ = http(base + "?token=s3cret-token")
        assert status == 200 and "kiosk_token=s3cret-token" in headers["Set-Cookie"]
        assert "HttpOnly" in headers["Set-Cookie"]
        assert http(base + "api/state", headers={"Cookie": "kiosk_token=s3cret-token"})[0] == 200
        assert controller.state()["phase"] == "welcome"  # nothing was started without the token
    odd = "a b;c=d%"
    with kiosk_in_process(kiosk_profile(tmp_path, name="odd.yaml", token=odd),
                          loopback_without_token=False) as (base, controller):
        cookie = http(base + "?token=a%20b%3Bc%3Dd%25")[1]["Set-Cookie"].split(";")[0]
        assert http(base + "api/state", headers={"Cookie": cookie})[0] == 200
        assert http(base + "api/state", headers={"Cookie": "kiosk_token=a b"})[0] == 401


def test_requests_from_elsewhere_are_refused(tmp_path):
    profile = kiosk_profile(tmp_path)
    with kiosk_in_process(profile) as (base, controller):
        # A page from another site cannot post (no custom header) nor read it through DNS rebinding.
        assert http(base + "api/start", "POST")[0] == 403
        assert http(base + "api/state", headers={"Host": "evil.example:80"})[0] == 403
        assert controller.state()["phase"] == "welcome"
        assert http(base + "no/such/page")[0] == 404
        page = http(base)[2]
        assert b"/static/kiosk.js" in page and b"http" not in page.replace(b"http-equiv", b"")  # no CDN


def test_a_visitor_who_walks_away_in_the_dark(tmp_path):
    rng = np.random.default_rng(0)
    dark = [np.clip(15 + rng.normal(0, 3, (480, 640, 3)), 0, 255).astype(np.uint8) for _ in range(50)]
    video = write_video(tmp_path / "dark.avi", dark, fps=10)
    profile = kiosk_profile(tmp_path, walk_away_seconds=1, result_seconds=3, min_brightness=40)
    with kiosk_in_process(profile, video, DEMO_WAV) as (base, controller):
        events = EventReader(base + "api/events")
        started, _ = controller.start()
        assert started
        result = wait_phase(base, "result", 10)
        hints = {h["code"] for _, s in events.events if s["phase"] == "capture" for h in s["capture"]["hints"]}
        assert {"too_dark", "no_face"} <= hints  # said on screen while capturing
        view = result["result"]
        assert view["abstained"] is True and "No face was seen" in view["why"] and "vote" not in view
        assert result["reset_in_s"] <= 3
        wait_phase(base, "welcome", 5)  # the result screen resets by itself
        events.close()
    row = _rows(tmp_path)[0]
    assert row["complete"] == 0 and row["stop_reason"] == "walked away: no face for 1 s"
    assert row["duration_s"] < 3.0  # it stopped after about a second, not after the 5 s capture


def test_two_faces_and_silence_are_said_then_the_visitor_stops(tmp_path):
    frame = demo_frames(1)[0]
    crop = frame[41:274, 172:405]  # the sample's face with its surroundings
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[100:333, 40:273] = crop
    canvas[100:333, 340:573] = crop
    video = write_video(tmp_path / "two.avi", [canvas] * 50, fps=10)
    audio = write_silent_wav(tmp_path / "silent.wav", 5.0)
    profile = kiosk_profile(tmp_path)
    with kiosk_in_process(profile, video, audio) as (base, controller):
        controller.start()
        seen = wait_for(lambda: {h["code"] for h in state(base).get("capture", {}).get("hints", [])} >=
                        {"several_faces", "no_voice"}, 6, "the several-faces and no-voice hints")
        assert seen
        live = state(base)["capture"]
        assert live["faces_in_view"] == 2 and live["face_found"] and not live["voiced"]
        reply = post(base, "stop")[2]
        assert reply["state"]["phase"] in ("capture", "saving", "result")
        result = wait_phase(base, "result", 5)
        assert result["result"]["abstained"] and "stopped before the end" in result["result"]["why"]
        assert post(base, "reset")[2]["state"]["phase"] == "welcome"
    row = _rows(tmp_path)[0]
    assert row["complete"] == 0 and row["stop_reason"] == "stopped by the visitor"


def test_a_missing_camera_is_said_and_retried(tmp_path):
    later = tmp_path / "camera.mp4"  # the profile's source, not there yet
    profile = kiosk_profile(tmp_path, video_source=str(later), audio_source=DEMO_WAV)
    with kiosk_in_process(profile, str(later), DEMO_WAV) as (base, controller):
        missing = state(base)
        assert missing["phase"] == "camera_missing" and "camera is not available" in missing["message"]
        assert post(base, "start")[2]["started"] is False  # Start cannot start a session without it
        shutil.copy(DEMO_VIDEO, later)  # the camera comes back
        wait_phase(base, "welcome", 5)
        assert post(base, "start")[2]["started"] is True
        controller.stop()
        wait_phase(base, "result", 5)


def test_the_preview_is_mirrored_downscaled_and_boxed():
    import cv2

    from edge.apps.kiosk.preview import Preview

    image = np.zeros((480, 640, 3), np.uint8)
    image[:, :320] = 255  # left half white
    preview = Preview(width=320, fps=10)
    assert preview.next_jpeg(0, timeout_s=0.05) == (None, 0)  # no session: nothing
    preview.start()
    preview.offer(image, (400, 100, 100, 100))  # a face box on the black right half
    jpeg, seq = preview.next_jpeg(0, timeout_s=1)
    small = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert small.shape == (240, 320, 3)
    assert small[120, 40].mean() < 30 and small[120, 280].mean() > 225  # mirrored: white on the right now
    # The box (x 400..500, y 100..200 of 640x480) is drawn mirrored at x 70..120, y 50..100 of 320x240, green.
    top_edge = small[50, 75:115].astype(float)
    assert top_edge[:, 1].mean() > 150 and top_edge[:, 2].mean() < 120
    assert small[75, 95].mean() < 30  # inside the box: the picture, untouched
    assert preview.next_jpeg(seq, timeout_s=0.05) == (None, seq)  # no new frame, no new JPEG
    first = preview.generation
    preview.stop()
    assert preview.next_jpeg(seq, timeout_s=0.05)[0] is None  # the frame is gone with the session
    assert preview.frames_encoded == 1 and preview.cpu_s > 0
    preview.start()  # the next visitor: a stream opened for the last one gets nothing of theirs
    preview.offer(image, None)
    assert preview.next_jpeg(seq, timeout_s=0.05, generation=first)[0] is None
    assert preview.next_jpeg(seq, timeout_s=0.05)[0] is not None


def test_sigterm_mid_session_keeps_it_as_cut_short(tmp_path):
    profile = kiosk_profile(tmp_path, capture_seconds=30)
    with KioskProcess("--config", str(profile), "--port", "0", "--video", DEMO_VIDEO, "--audio", DEMO_WAV) as kiosk:
        assert kiosk.url, kiosk.stop()
        session_id = post(kiosk.url, "start")[2]["state"]["session_id"]
        wait_for(lambda: state(kiosk.url).get("capture", {}).get("elapsed_s", 0) >= 1.0, 10, "1 s of capture")
        code, out, err = kiosk.stop()
    assert code == 0, err
    assert "stopped (SIGTERM) after 1 session(s)" in out
    row = _rows(tmp_path)[0]
    assert row["session_id"] == session_id and row["complete"] == 0
    assert row["stop_reason"] == "interrupted: the kiosk was stopped (SIGTERM)"
    summary = json.loads((tmp_path / "out" / f"{session_id}.json").read_text())
    assert summary["complete"] is False and summary["stop_reason"] == row["stop_reason"]


def _kiosk_exit(*args: str):
    proc = subprocess.run([sys.executable, "-m", "edge.apps.kiosk", *args], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def _one_line_error(code, out, err, *words):
    assert code == 2, (code, out, err)
    assert "serving" not in out  # refused before anything was served
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_bad_input_is_refused_in_one_line_before_serving(tmp_path):
    bad = kiosk_profile(tmp_path, name="bad.yaml")
    bad.write_text(bad.read_text().replace("kiosk:\n", "kiosk:\n  colour: blue\n"))
    _one_line_error(*_kiosk_exit("--config", str(bad)), "unknown key 'kiosk.colour'")

    open_host = kiosk_profile(tmp_path, name="open.yaml", host="0.0.0.0")
    _one_line_error(*_kiosk_exit("--config", str(open_host), "--video", DEMO_VIDEO, "--audio", DEMO_WAV),
                    "kiosk.host 0.0.0.0", "kiosk.token")

    good = kiosk_profile(tmp_path)
    _one_line_error(*_kiosk_exit("--config", str(good), "--video", str(tmp_path / "none.mp4"), "--audio", DEMO_WAV),
                    "none.mp4 does not exist")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        _one_line_error(*_kiosk_exit("--config", str(good), "--port", str(port), "--video", DEMO_VIDEO,
                                     "--audio", DEMO_WAV), f"port {port}", "in use")

    # A model file that fails its sha256 (one byte changed in a copy of the shipped models).
    models = tmp_path / "models"
    shutil.copytree(ROOT / "edge" / "models", models)
    manifest = json.loads((models / "mini_xception" / "manifest.json").read_text())
    for name in (f["file"] for f in manifest["files"] if f["file"].endswith(".tflite")):  # whichever auto picks
        data = bytearray((models / "mini_xception" / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (models / "mini_xception" / name).write_bytes(bytes(data))
    _one_line_error(*_kiosk_exit("--config", str(good), "--models-dir", str(models), "--port", "0",
                                 "--video", DEMO_VIDEO, "--audio", DEMO_WAV), "sha256")


def test_a_missing_page_file_is_refused_before_serving(tmp_path):
    from edge.apps.kiosk import run

    static = tmp_path / "static"
    shutil.copytree(ROOT / "edge" / "apps" / "kiosk" / "static", static)
    (static / "kiosk.js").unlink()
    args = Namespace(config=str(kiosk_profile(tmp_path)), port=0, video=DEMO_VIDEO, audio=DEMO_WAV,
                     models_dir=None, static_dir=str(static))
    with pytest.raises(EdgeError, match=r"kiosk page file .*kiosk\.js is missing") as caught:
        run(args)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_a_session_cut_short_gives_no_reading_and_says_why_in_plain_words(tmp_path):
    from edge import Screener, ScreenerOptions, StopKind
    from edge.apps.kiosk.views import STOPPED_BY_VISITOR, WALKED_AWAY, result_view

    screener = Screener(ScreenerOptions.from_profile(str(kiosk_profile(tmp_path))))
    # (what stopped it: text, tag, kind), what the visitor reads
    expected = [(("walked away: no face for 8 s", WALKED_AWAY, StopKind.STOPPED), "No face was seen"),
                (("stopped by the visitor", STOPPED_BY_VISITOR, StopKind.STOPPED), "stopped before the end"),
                (("internal error: RuntimeError: reduce.cc:487 MEAN failed", None, StopKind.INTERNAL_ERROR),
                 "Please tell the staff"),
                (("interrupted: the kiosk was stopped (SIGTERM)", None, StopKind.INTERRUPTED), "The kiosk was stopped"),
                (("sources stalled", None, StopKind.STALLED), "camera or microphone stopped")]
    for (reason, tag, kind), words in expected:
        run = screener.run(DEMO_VIDEO, DEMO_WAV, fast=True)
        for tick in run:
            if tick.index == 3:
                run.stop(reason, tag=tag, kind=kind)
        view = result_view(run.result)
        stop = run.result.stop_reason
        assert (str(stop), stop.tag, stop.kind) == (reason, tag, kind) and not run.result.complete
        assert view["abstained"] and words in view["why"] and "signals" not in view
        assert "reduce.cc" not in view["why"]  # technical detail stays in the stored session
        assert "doctor" in view["advice"] and view["notice"] == "Screening aid only, not a diagnosis."
        assert "call your local emergency number now" in view["help"]
    screener.close()
