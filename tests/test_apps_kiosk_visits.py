"""The kiosk's visits with the PHQ-8 (edge.apps.kiosk: controller, views, strings, app):
one safe outcome on every result screen, nothing of a visitor on a later visitor's screen,
the clinic export saying what the visitor was shown, the research opt-in's labelled pair,
sources that stop named as such, the sources chosen per stream, and token mode on the device."""
from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

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
    write_video,
)

from edge.apps.kiosk.strings import FORBIDDEN, STRINGS, catalogue


def _export(tmp_path: Path):
    from edge.apps.sessions import export_rows

    return {r["session_id"]: r for r in export_rows(str(tmp_path / "out" / "sessions.sqlite"))}


def _texts(view) -> str:
    return json.dumps({k: v for k, v in view.items() if k not in ("shown", "outcome")}).lower()


# ----- every result screen is safe ---------------------------------------------------
@pytest.fixture(scope="module")
def a_result(tmp_path_factory):
    from edge import Screener, ScreenerOptions

    tmp = tmp_path_factory.mktemp("result")
    screener = Screener(ScreenerOptions.from_profile(str(kiosk_profile(tmp))))
    run = screener.run(DEMO_VIDEO, DEMO_WAV, fast=True)
    for _ in run:
        pass
    screener.close()
    return run.result


def test_every_result_screen_leads_with_the_questionnaire_and_never_gives_an_all_clear(a_result):
    from edge import PHQ8Result, VoteResult
    from edge.apps.kiosk.views import LiveView, result_view

    votes = [VoteResult.abstained("too few face frames")] + [
        VoteResult("ok", level, "PPP", "You don't need to visit a doctor. Stay well.", provisional=p, caveat="x")
        for level in ("No", "Low", "Mild", "High") for p in (False, True)]
    estimates = [PHQ8Result.abstained("too little signal")] + [
        PHQ8Result.estimate(mu, 2.0, band, 50) for mu, band in ((2, "none"), (12, "moderate"), (22, "severe"))]
    answer_sets = [None, [1, 2, None, None, None, None, None, None]] + [answers_for(s) for s in (0, 10, 20)]
    lives = [None, "camera"]
    screens = 0
    for vote, estimate, demo, show, answers, stopped in itertools.product(votes, estimates, (False, True),
                                                                         (False, True), answer_sets, lives):
        result = dataclasses.replace(a_result, vote=vote, phq8=estimate, demo_weights=demo)
        live = None
        if stopped:
            live = LiveView(5, [], 40, 8, True, True)
            live.camera_stopped_s = 2.0
        view = result_view(result, (), answers, answers is not None, live, None, "the crisis line 0800 123",
                           show, catalogue("en"))
        text = _texts(view)
        for phrase in FORBIDDEN:
            assert phrase not in text, (phrase, view)
        assert "call the crisis line 0800 123 now" in view["help"]  # the safety line, always
        assert view["advice"] and "not a diagnosis" in view["notice"]
        if view["abstained"]:
            assert "signals" not in view
            continue
        cards = {c["name"]: c for c in view["signals"]}
        complete = answers is not None and None not in answers
        assert view["lead"] == ("questionnaire" if complete else view["lead"])
        if complete:
            assert cards["questionnaire"]["score"] == sum(answers)
            assert list(cards)[0] == "questionnaire" and cards["questionnaire"]["lead"]
        if stopped:  # the camera stopped: no sensor reading, and it says why
            assert cards["expression"]["text"] == "No reading, because the camera stopped during the visit."
        elif vote.status == "ok":
            assert ("Based on a short look only: a rough sign." in cards["expression"]["caveats"]) == vote.provisional
        if demo and not show:
            assert "estimate" not in cards  # demo weights: no number for the visitor
        if "estimate" in cards and demo:
            assert any("Demonstration model" in c for c in cards["estimate"]["caveats"])
        if view["disagree"]:
            assert "professional" in view["disagree"] and "doctor" in view["advice"]
        assert sorted(view["shown"]["texts"]) == sorted(cards)  # what is stored as shown is what is shown
        screens += 1
    assert screens > 500


def test_every_catalogue_is_complete_and_safe():
    english = set(STRINGS["en"])
    for language, strings in STRINGS.items():
        assert set(strings) == english, language
        for key, text in strings.items():
            assert not any(phrase in text.lower() for phrase in FORBIDDEN), (language, key, text)
    assert all(f"phq8.item{i}" in english for i in range(1, 9)) and all(f"phq8.answer{v}" in english for v in range(4))
    # The page's words are all in the catalogue: every data-s key of index.html exists.
    page = (ROOT / "edge" / "apps" / "kiosk" / "static" / "index.html").read_text()
    import re

    assert set(re.findall(r'data-s="([^"]+)"', page)) <= english


# ----- visits across visitors: screens, the export, labels ---------------------------
def test_each_screen_shows_only_its_own_visit_and_the_export_matches_it(tmp_path):
    profile = kiosk_profile(tmp_path, questionnaire="phq8")
    with kiosk_in_process(profile) as (base, controller):
        # Visitor 1: the research opt-in, every answer (a score of 20).
        first = post(base, "start", {"research": True})[2]["state"]["session_id"]
        answer_all(base, answers_for(20))
        one = wait_phase(base, "result", 15)["result"]
        assert one["signals"][0]["text"].startswith("20 of 24") and one["research_kept"]
        assert "talk to a doctor soon" in one["advice"].lower()
        post(base, "reset")
        # Visitor 2 starts and stops half way (four answers): no result, nothing of visitor 1.
        second = post(base, "start", {"research": True})[2]["state"]["session_id"]
        answer_all(base, answers_for(8)[:4])
        post(base, "stop")
        two = wait_phase(base, "result", 10)
        assert two["result"]["abstained"] and "stopped before the end" in two["result"]["why"]
        raw = json.dumps(two)
        assert first not in raw and "20 of 24" not in raw and "signals" not in two["result"]
        post(base, "reset")
        assert first not in json.dumps(state(base)) and second not in json.dumps(state(base))
    exported = _export(tmp_path)
    assert exported[first]["questionnaire_score"] == 20 and exported[first]["questionnaire_band"] == "severe"
    assert exported[first]["questionnaire_answers"] == " ".join(map(str, answers_for(20)))
    assert exported[first]["shown"] == "questionnaire; expression" and exported[first]["labelled"] == 1
    assert exported[first]["phq8_status"] == "not shown" and exported[first]["phq8_mu"] is None  # demo: hidden
    assert exported[second]["shown"] == "no result (stopped)" and exported[second]["labelled"] == 0
    assert exported[second]["vote_status"] == "not shown" and exported[second]["vote_level"] is None
    assert exported[second]["questionnaire_answers"] == "1 1 1 1 - - - -" and exported[second]["items_answered"] == 4
    # The labelled pair: visitor 1's features kept beside the answers; visitor 2's removed.
    assert Path(stored_visit(tmp_path, first)["features_file"]).is_file()
    assert not (tmp_path / "out" / "labelled" / f"{second}.npz").exists()
    assert stored_visit(tmp_path, second)["features_file"] is None


def test_a_camera_that_stops_mid_visit_is_named_not_taken_for_a_walk_away(tmp_path):
    video = write_video(tmp_path / "short.avi", demo_frames(60), fps=30)  # 2 s of video, 5 s of audio
    profile = kiosk_profile(tmp_path, walk_away_seconds=1, questionnaire="phq8")
    with kiosk_in_process(profile, video, DEMO_WAV) as (base, controller):
        events = EventReader(base + "api/events")
        session_id = post(base, "start")[2]["state"]["session_id"]
        live = wait_for(lambda: state(base).get("capture"), 5, "the capture")
        assert live["expected_s"] == 5.0  # the visit's real length: the audio's, not the shorter video's
        wait_for(lambda: state(base)["capture"]["camera_stopped"], 6, "the camera named as stopped")
        live = state(base)["capture"]
        assert live["face_found"] is False and live["hints"][0]["code"] == "camera_stopped"
        assert "no_face" not in [h["code"] for h in live["hints"]]
        answer_all(base, answers_for(3))
        view = wait_phase(base, "result", 15)["result"]
        events.close()
        seconds_left = [s["capture"]["expected_s"] - s["capture"]["elapsed_s"] for _, s in events.events
                        if s["phase"] == "capture" and not s["capture"]["sensing_done"]]
        assert min(seconds_left) < 0.5  # the countdown ran down to the end with the visit
    cards = {c["name"]: c for c in view["signals"]}
    assert not view["abstained"] and view["lead"] == "questionnaire"
    assert cards["expression"]["text"] == "No reading, because the camera stopped during the visit."
    row = _export(tmp_path)[session_id]
    assert row["vote_status"] == "not shown" and row["questionnaire_score"] == 3
    assert "walked away" not in (row["stop_reason"] or "")


def test_no_answer_for_a_while_ends_the_visit_without_a_result(tmp_path):
    profile = kiosk_profile(tmp_path, answer_timeout_seconds=10, questionnaire="phq8")
    with kiosk_in_process(profile) as (base, controller):
        session_id = post(base, "start")[2]["state"]["session_id"]
        answer_all(base, [2])  # one answer, then the visitor has gone
        sensing = wait_for(lambda: (lambda s: s if s.get("capture", {}).get("sensing_done") else None)(state(base)),
                           10, "the readings done")
        assert sensing["questionnaire"]["item"] == 1 and sensing["phase"] == "capture"
        view = wait_phase(base, "result", 15)["result"]
    assert view["abstained"] and view["why_code"] == "no_answer"
    assert _export(tmp_path)[session_id]["shown"] == "no result (no_answer)"


# ----- sources and start-up ------------------------------------------------------------
def test_sources_come_from_the_profile_each_overridable():
    from edge import load_config
    from edge.apps.kiosk.app import choose_sources, describe_sources

    config = load_config(None).engine  # camera:0 and mic
    args = dict(video=None, camera=None, no_video=False, audio=None, mic=None, no_audio=False)
    assert choose_sources(Namespace(**args), config) == ("camera:0", "mic")
    assert choose_sources(Namespace(**dict(args, video="v.mp4")), config) == ("v.mp4", "mic")  # the mic is kept
    assert choose_sources(Namespace(**dict(args, camera="2", mic="default")), config) == ("camera:2", "mic")
    assert choose_sources(Namespace(**dict(args, mic="3", no_video=True)), config) == (None, "mic:3")
    assert describe_sources("v.mp4", "mic:3") == ("camera: the recording v.mp4 (replayed as if live); "
                                                  "microphone: microphone 3")
    assert describe_sources("camera:0", "mic") == "camera: camera 0; microphone: the default input"


def test_video_from_a_file_keeps_the_profiles_microphone_and_says_so(tmp_path):
    profile = kiosk_profile(tmp_path)
    with KioskProcess("--config", str(profile), "--port", "0", "--video", DEMO_VIDEO, "--mic", "7") as kiosk:
        assert kiosk.url, kiosk.stop()
        said = "".join(kiosk.lines)
        assert f"camera: the recording {DEMO_VIDEO} (replayed as if live); microphone: microphone 7" in said
        missing = wait_phase(kiosk.url, "camera_missing", 5)  # there is no microphone 7 here: said, retried
        assert "microphone is not available" in missing["message"]
        code, _, err = kiosk.stop()
    assert code == 0, err


# ----- token mode -------------------------------------------------------------------------
def test_the_kiosks_own_browser_needs_no_token_but_a_forwarded_request_does(tmp_path):
    profile = kiosk_profile(tmp_path, token="a-long-enough-token-1234")
    with kiosk_in_process(profile) as (base, controller):
        assert http(base)[0] == 200 and http(base + "api/state")[0] == 200  # loopback: the device itself
        assert post(base, "start", {"research": False})[0] == 200
        controller.stop()
        forwarded = {"X-Forwarded-For": "192.0.2.7"}  # through a local reverse proxy: from the LAN
        assert http(base + "api/state", headers=forwarded)[0] == 401
        assert http(base + "api/state", headers=dict(forwarded, Authorization="Bearer a-long-enough-token-1234"))[0] \
            == 200
        assert http(base + "api/state", headers={"Host": "evil.example"})[0] == 403  # the Host check stays


def test_config_check_wants_a_long_token(tmp_path):
    from edge.apps.config_check import check_file

    profile = tmp_path / "p.yaml"
    profile.write_text("kiosk:\n  host: 0.0.0.0\n  token: x\n")
    errors = check_file(str(profile))
    assert len(errors) == 1 and "kiosk.token' is too short (1 characters, at least 16)" in errors[0]
    profile.write_text("kiosk:\n  host: 0.0.0.0\n  token: 0123456789abcdefXYZ\n")
    assert check_file(str(profile)) == []
    proc = subprocess.run([sys.executable, "-m", "edge", "config", "check", str(profile)], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    time.sleep(0)
