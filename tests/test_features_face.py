"""The crop rule and preprocessing shared by the device and the training host."""
from __future__ import annotations

import numpy as np
import pytest

from edge.apps.face import read_image
from edge.errors import EdgeError
from edge.features.face import preprocess_faces, square_crop, to_gray
from edge.models.haar import HaarFaceDetector
from tests.conftest import SAMPLE_IMAGE


def test_square_crop_is_square_and_grown_by_the_margin():
    gray = np.arange(200 * 300, dtype=np.uint32).reshape(200, 300).astype(np.uint8)
    crop = square_crop(gray, (100, 50, 40, 60), margin_ratio=0.1)
    assert crop.shape == (72, 72)  # side 60, grown by 10 % on each edge


def test_square_crop_repeats_the_border_outside_the_frame():
    gray = np.zeros((50, 50), np.uint8)
    gray[0, :] = 200
    crop = square_crop(gray, (0, 0, 20, 20), margin_ratio=0.25)
    assert crop.shape == (30, 30)
    assert (crop[:6] == 200).all()  # rows above the frame repeat row 0


def test_preprocess_scales_to_minus_one_one():
    faces = preprocess_faces([np.zeros((30, 30), np.uint8), np.full((100, 80), 255, np.uint8)], 64)
    assert faces.shape == (2, 1, 64, 64) and faces.dtype == np.float32
    assert faces[0].max() == -1.0 and faces[1].min() == 1.0


def test_haar_finds_the_astronaut_face_and_downscale_maps_boxes_back():
    gray = to_gray(read_image(SAMPLE_IMAGE))
    full = HaarFaceDetector().detect(gray)
    half = HaarFaceDetector(downscale=0.5).detect(gray)
    assert len(full) == 1 and len(half) == 1
    assert np.abs(np.subtract(full[0], half[0])).max() <= 12


def test_missing_and_corrupt_images_give_one_line_errors(tmp_path):
    with pytest.raises(EdgeError, match="does not exist"):
        read_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(EdgeError, match="cannot be decoded"):
        read_image(bad)
