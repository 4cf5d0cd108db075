"""The session rules: the three-part emotion vote, PHQ-8 reading and abstention."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.config import parse_config
from edge.features.tick import EMOTIONS
from edge.models.severity import SeverityEstimate
from edge.rules.phq8 import INTERVAL_Z
from edge.rules.vote import MESSAGES, PATTERN_LEVELS, vote_rule
from edge.screen import screen_session

HAPPY = np.array([0, 0, 0, 0.9, 0.05, 0, 0.05], np.float32)
SAD = np.array([0, 0.05, 0, 0.05, 0.9, 0, 0], np.float32)


def session(pattern: str, per_part: int = 400) -> np.ndarray:
    return np.concatenate([np.tile(HAPPY if p == "P" else SAD, (per_part, 1)) for p in pattern])


@pytest.mark.parametrize("pattern", ["".join(p) for p in itertools.product("PN", repeat=3)])
def test_every_pattern_maps_to_the_papers_level_and_message(pattern):
    result = vote_rule(session(pattern))
    assert result.status == "ok" and result.pattern == pattern
    assert result.level == PATTERN_LEVELS[pattern]
    assert result.message == MESSAGES[result.level]
    assert result.provisional is False and result.frames_used == 1200


def test_the_paper_table():
    assert {k: v for k, v in PATTERN_LEVELS.items()} == {
        "PPP": "No", "PPN": "Low", "PNP": "Mild", "NPP": "Mild",
        "PNN": "High", "NPN": "High", "NNP": "High", "NNN": "High"}
    assert MESSAGES["No"] == "You don't need to visit a doctor. Stay well."
    assert MESSAGES["Low"] == MESSAGES["Mild"] == "Come back review after seven (7) days."
    assert MESSAGES["High"] == "Contact a doctor or any Psychiatrist immediately."


def test_only_the_first_1200_face_frames_vote():
    probs = np.concatenate([session("PPP"), np.tile(SAD, (3000, 1))])
    assert vote_rule(probs).pattern == "PPP"


def test_dominance_is_by_summed_probability_not_by_top_label():
    # Each frame's top label is sad (0.45) but happy+neutral (0.5) outweighs sad+disgust (0.45).
    frame = np.array([0.05, 0, 0, 0.25, 0.45, 0, 0.25], np.float32)
    assert frame.argmax() == EMOTIONS.index("sad")
    assert vote_rule(np.tile(frame, (1200, 1))).pattern == "PPP"


def test_angry_fear_surprise_do_not_vote_and_ties_count_negative():
    angry = np.array([0.8, 0, 0.1, 0.05, 0.05, 0, 0], np.float32)  # happy 0.05 == sad 0.05
    result = vote_rule(np.tile(angry, (1200, 1)))
    assert result.pattern == "NNN"
    fearful_but_neutral = np.array([0, 0, 0.7, 0, 0.1, 0.05, 0.15], np.float32)
    assert vote_rule(np.tile(fearful_but_neutral, (1200, 1))).pattern == "PPP"


def test_short_sessions_are_scaled_and_very_short_ones_abstain():
    result = vote_rule(session("PNP", per_part=20), min_frames=30)
    assert result.status == "ok" and result.provisional is True
    assert result.frames_used == 60 and result.pattern == "PNP" and result.level == "Mild"
    abstained = vote_rule(session("PPP", per_part=5), min_frames=30)
    assert abstained.status == "abstained" and "15" in abstained.reason


MILD = SeverityEstimate(7.0, 1.5, "mild", 100, "")


def _screen(probs, analysed, ticks=100, voiced=0.5, severity=MILD):
    return screen_session(probs, analysed, ticks, voiced, severity, parse_config({}).screen)


def test_session_reports_both_readings_with_caveats():
    result = _screen(session("PPN", per_part=100), 300)
    assert result.notice == "Screening aid only, not a diagnosis."
    assert result.vote.level == "Low"
    half = round(INTERVAL_Z * 1.5, 2)  # mu +/- INTERVAL_Z sigma (edge.rules.phq8)
    assert result.phq8.to_dict() == {"status": "ok", "mu": 7.0, "sigma": 1.5, "interval": [7.0 - half, 7.0 + half],
                                     "band": "mild", "ticks": 100, "note": "demo weights, not for screening"}
    text = repr(result).lower()
    assert "depressed" not in text and "anxiety" not in text


def test_too_little_face_or_voice_abstains_with_reasons():
    no_face = _screen(np.zeros((0, 7)), 300)
    assert no_face.vote.status == "abstained"
    assert "too little face" in no_face.vote.reason
    assert "too little face" in no_face.phq8.reason
    assert no_face.phq8.note == "demo weights, not for screening"
    silent = _screen(session("PPP", per_part=100), 300, voiced=0.0)
    assert silent.vote.status == "ok"
    assert silent.phq8.status == "abstained" and "too little voice" in silent.phq8.reason
    short = _screen(session("PPP", per_part=100), 300, ticks=5)
    assert "too short" in short.phq8.reason
    mostly_absent = _screen(session("PPP", per_part=20), 600)  # a face in 10 % of frames
    assert mostly_absent.vote.status == "abstained"


@pytest.mark.parametrize("score, band", [
    (4.49, "none"), (4.5, "none"), (4.99, "none"), (5.0, "mild"), (9.5, "mild"), (9.99, "mild"),
    (10.0, "moderate"), (14.5, "moderate"), (15.0, "moderately severe"), (19.5, "moderately severe"),
    (19.99, "moderately severe"), (20.0, "severe"), (24.0, "severe"), (31.0, "severe"), (-1.0, "none")])
def test_phq8_band_edges_are_fixed_cutoffs_on_the_continuous_score(score, band):
    from edge.rules.phq8 import phq8_band

    assert phq8_band(score) == band


def test_the_band_cutoffs_agree_with_the_shipped_manifest():
    from edge.manifest import load_manifest
    from edge.rules.phq8 import phq8_band

    for entry in load_manifest("lstm_moe").data["bands"]:
        # Every integer score of a band, and the continuous values just below its next cut-off.
        assert phq8_band(entry["min"]) == phq8_band(entry["max"]) == phq8_band(entry["max"] + 0.999) \
            == entry["name"]


def test_time_without_video_lowers_the_face_share():
    probs = session("PPP", per_part=100)  # 300 analysed frames, all with a face
    assert _screen(probs, 300).face_share == 1.0
    result = screen_session(probs, 300, 3000, 0.5, MILD, parse_config({}).screen, expected_frames=3000)
    assert result.face_share == 0.1
    assert result.phq8.status == "abstained" and "too little face" in result.phq8.reason


def test_a_scaled_vote_is_marked_provisional():
    scaled = vote_rule(session("PNP", per_part=20), min_frames=30)
    assert scaled.provisional is True and "provisional" in scaled.caveat
    full = vote_rule(session("PNP", per_part=400))
    assert full.provisional is False and full.caveat is None
