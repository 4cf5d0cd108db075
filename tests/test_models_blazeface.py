"""The BlazeFace detector: the shipped file, anchors, decoding, letterbox mapping, wiring."""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from edge.apps.face import read_image
from edge.config import SCHEMA, parse_config
from edge.errors import EdgeError
from edge.features.face import import_cv2, to_gray
from edge.manifest import load_manifest, sha256_of
from edge.models.blazeface import BlazeFaceDetector, Letterbox, letterbox_input, ssd_anchors, weighted_nms
from edge.models.detectors import FACE_DETECTORS, open_face_detector
from edge.models.haar import HaarFaceDetector
from edge.stream.faces import FaceTracker
from tests.conftest import ROOT, SAMPLE_IMAGE, SHIPPED_MODELS

DEMO_VIDEO = ROOT / "edge" / "samples" / "demo_face.mp4"


def iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()


@pytest.fixture(scope="module")
def astronaut():
    return read_image(SAMPLE_IMAGE)


def test_shipped_file_matches_its_manifest_and_names_its_source():
    manifest = load_manifest("blazeface", str(SHIPPED_MODELS))
    (entry,) = manifest.files
    path = manifest.folder / entry["file"]
    assert sha256_of(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
    assert manifest.verified_path(entry) == path
    source = manifest.data["source"]
    assert source["package"] == "mediapipe" and source["version"] == "0.10.21"
    assert source["licence"] == "Apache-2.0"
    assert source["path_in_wheel"].endswith("face_detection_short_range.tflite")
    assert "Apache License" in (manifest.folder / "LICENSE").read_text()
    assert manifest.data["anchors"]["count"] == 896
    assert entry["inputs"][0]["shape"] == [1, 128, 128, 3]


def test_anchors_are_896_in_the_models_order():
    anchors = ssd_anchors()
    assert anchors.shape == (896, 2)
    # 16x16 cells at stride 8 with 2 anchors each, then 8x8 cells at stride 16 with 6 each.
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_letterbox_maps_the_content_back_to_the_whole_frame():
    wide = Letterbox.fit(640, 480)
    assert (wide.content_w, wide.content_h, wide.pad_x, wide.pad_y) == (128, 96, 0, 16)
    corners = np.array([[0.0, 16 / 128], [1.0, 112 / 128]])
    np.testing.assert_allclose(wide.to_frame(corners), [[0, 0], [640, 480]], atol=1e-3)
    tall = Letterbox.fit(300, 600)
    assert (tall.content_w, tall.content_h, tall.pad_x, tall.pad_y) == (64, 128, 32, 0)
    np.testing.assert_allclose(tall.to_frame(np.array([[0.5, 0.5]])), [[150, 300]], atol=1e-3)
    tensor, box = letterbox_input(np.full((480, 640, 3), 255, np.uint8))
    assert tensor.shape == (1, 128, 128, 3) and box == wide
    assert tensor[0, :16].max() == -1.0 and tensor[0, 16:112].min() == 1.0  # black bars, white content


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    kept, _, kept_scores = weighted_nms(boxes, points, scores, 0.3)
    assert len(kept) == 2
    np.testing.assert_allclose(kept[0], [0.4, 0, 10.4, 10], atol=1e-5)  # (0.9 * 0 + 0.6 * 1) / 1.5
    np.testing.assert_allclose(kept_scores, [0.9, 0.7])


def test_one_face_on_the_astronaut_overlapping_the_haar_box(detector, astronaut):
    boxes = detector.detect(astronaut)
    assert len(boxes) == 1
    (haar,) = HaarFaceDetector().detect(astronaut)
    assert iou(boxes[0], haar) > 0.5
    found = detector.detect_all(astronaut)
    assert found.scores[0] > 0.8
    right_eye, left_eye = found.keypoints[0, 0], found.keypoints[0, 1]
    x, y, w, h = boxes[0]
    assert x < right_eye[0] < left_eye[0] < x + w and y < right_eye[1] < y + h / 2  # eyes in the upper half


def test_faces_on_demo_video_frames(detector):
    cv2 = import_cv2()
    capture = cv2.VideoCapture(str(DEMO_VIDEO))
    frames = []
    while len(frames) < 111:
        ok, frame = capture.read()
        assert ok
        frames.append(frame)
    capture.release()
    haar = HaarFaceDetector(min_size=60, downscale=0.5)
    for index in (10, 30, 50, 110):
        frame = frames[index]
        boxes = detector.detect(frame)
        assert len(boxes) == 1, index
        assert iou(boxes[0], haar.detect(frame)[0]) > 0.5, index


def test_no_face_on_blank_or_noise(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []


@pytest.mark.parametrize("canvas_shape,offset", [((300, 600), (250, 0)), ((600, 300), (0, 250))])
def test_boxes_map_back_through_the_letterbox_of_non_square_frames(detector, astronaut, canvas_shape, offset):
    cv2 = import_cv2()
    face = cv2.resize(astronaut[30:220, 130:320], (300, 300), interpolation=cv2.INTER_LINEAR)
    (alone,) = detector.detect(face)
    canvas = np.full(canvas_shape + (3,), 90, np.uint8)
    ox, oy = offset
    canvas[oy:oy + 300, ox:ox + 300] = face
    (placed,) = detector.detect(canvas)
    # Same face, same place (shifted by the offset); the input is coarser on the larger frame.
    raw_alone, raw_placed = detector.detect_all(face).boxes[0], detector.detect_all(canvas).boxes[0]
    np.testing.assert_allclose(raw_placed - [ox, oy, ox, oy], raw_alone, atol=0.06 * (raw_alone[2] - raw_alone[0]))
    # The framed box (from the eyes and mouth) moves a little more with the coarser input.
    tolerance = 0.08 * alone[2]
    assert abs(placed[0] - (alone[0] + ox)) <= tolerance and abs(placed[1] - (alone[1] + oy)) <= tolerance
    assert abs(placed[2] - alone[2]) <= tolerance and abs(placed[3] - alone[3]) <= tolerance


def test_grey_frames_work_and_min_size_filters(detector, astronaut):
    gray = to_gray(astronaut)
    (box,) = detector.detect(gray)
    assert iou(box, detector.detect(astronaut)[0]) > 0.8
    assert BlazeFaceDetector(min_size=200).detect(astronaut) == []


def test_tracker_hands_the_colour_frame_to_the_detector(astronaut):
    seen = []

    class Recorder:
        name = "recorder"

        def detect(self, image, gray=None):
            seen.append((image.ndim, gray is not None))
            return [(10, 10, 50, 50)]

    tracker = FaceTracker(Recorder())
    tracker.detect(to_gray(astronaut), astronaut)
    tracker.detect(to_gray(astronaut))
    assert seen == [(3, True), (2, True)]


def test_config_detector_key_is_checked_by_name():
    assert parse_config({}).face.detector == "blazeface"
    assert parse_config({"face": {"detector": "haar"}}).face.detector == "haar"
    with pytest.raises(EdgeError) as info:
        parse_config({"face": {"detector": "yunet"}}, "x.yaml")
    message = str(info.value)
    assert "'face.detector'" in message and "yunet" in message and "\n" not in message
    check = SCHEMA["face"]["detector"][2]
    assert all(check(name) is None for name in FACE_DETECTORS)
    with pytest.raises(EdgeError, match="unknown face detector"):
        open_face_detector("yunet")


def test_edge_face_with_blazeface():
    proc = subprocess.run([sys.executable, "-m", "edge", "face", str(SAMPLE_IMAGE), "--detector", "blazeface",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["detector"] == "blazeface"
    assert len(result["faces"]) == 1 and result["faces"][0]["top"] == "happy"
    proc = subprocess.run([sys.executable, "-m", "edge", "face", str(SAMPLE_IMAGE), "--detector", "yunet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edge", "models"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "blazeface: face_detection" in proc.stdout and "face_detection_short_range.tflite" in proc.stdout


def _fake_wheel(path, model: bytes, record_model: bytes, licence="Apache Software License"):
    digest = base64.urlsafe_b64encode(hashlib.sha256(record_model).digest()).rstrip(b"=").decode()
    member = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, model)
        zf.writestr("mediapipe-0.10.21.dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: mediapipe\nVersion: 0.10.21\nLicense: Apache 2.0\n"
                    "Home-page: https://github.com/google/mediapipe\n"
                    f"Classifier: License :: OSI Approved :: {licence}\n")
        zf.writestr("mediapipe-0.10.21.dist-info/LICENSE", "Apache License\nVersion 2.0\n")
        zf.writestr("mediapipe-0.10.21.dist-info/RECORD", f"{member},sha256={digest},{len(record_model)}\n")
    return path


def test_export_takes_the_file_from_the_wheel_only_when_its_record_and_licence_agree(tmp_path):
    from export.blazeface import extract_blazeface

    model = (SHIPPED_MODELS / "blazeface" / "face_detection_short_range.tflite").read_bytes()
    good = _fake_wheel(tmp_path / "good.whl", model, model)
    source = extract_blazeface(good, tmp_path / "out")
    assert (tmp_path / "out" / "face_detection_short_range.tflite").read_bytes() == model
    assert source["version"] == "0.10.21" and source["licence"] == "Apache-2.0"
    with pytest.raises(EdgeError, match="does not match the wheel's RECORD"):
        extract_blazeface(_fake_wheel(tmp_path / "bad.whl", model, b"other"), tmp_path / "bad")
    with pytest.raises(EdgeError, match="Apache"):
        extract_blazeface(_fake_wheel(tmp_path / "gpl.whl", model, model, "GNU General Public License v3 (GPLv3)"),
                          tmp_path / "gpl")
