"""edge/capture/image_file.py: width and height read from the header of every format this
OpenCV build's imread accepts, before any decoding; over the pixel budget refused in one line."""
from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from hostile_support import IMAGE_FORMATS, huge_image

from edge.capture.image_file import check_image_file, check_video_file, image_size
from edge.errors import EdgeError

WRITTEN = [(".jpg", ()), (".png", ()), (".bmp", ()), (".webp", ()), (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),
           (".tiff", ()), (".tiff", (cv2.IMWRITE_TIFF_COMPRESSION, 1)), (".ppm", ()), (".pam", ()), (".pfm", ()),
           (".ras", ()), (".hdr", ()), (".jp2", ()), (".avif", ()), (".gif", ())]


@pytest.mark.parametrize("ext, params", WRITTEN)
def test_the_size_read_from_the_header_is_the_decoded_size(ext, params):
    image = (np.arange(150 * 203 * 3) % 251).astype(np.uint8).reshape(150, 203, 3)
    if ext in (".pfm", ".hdr"):
        image = image.astype(np.float32) / 255
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert decoded is not None
    _, width, height = image_size(io.BytesIO(data.tobytes()))
    assert (width, height) == (decoded.shape[1], decoded.shape[0]) == (203, 150)


def test_webp_with_an_extended_header_and_grey_pnm():
    rgba = np.zeros((31, 47, 4), np.uint8)
    rgba[..., 3] = 128
    ok, data = cv2.imencode(".webp", rgba, [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert image_size(io.BytesIO(data.tobytes()))[1:] == (47, 31)
    assert image_size(io.BytesIO(b"P5\n# a comment\n 47\t31\n255\n" + bytes(47 * 31)))[1:] == (47, 31)


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_every_format_over_the_budget_is_refused_in_one_line(tmp_path, fmt):
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(huge_image(fmt, 12000, 9000))
    with pytest.raises(EdgeError, match="more than this device decodes") as info:
        check_image_file(path, max_pixels=50_000_000)
    assert "\n" not in str(info.value)
    assert check_image_file(path, max_pixels=200_000_000) in ((12000, 9000), (12000, 9000))


def test_stray_bytes_between_jpeg_markers_are_skipped_as_libjpeg_does(tmp_path):
    ok, data = cv2.imencode(".jpg", np.zeros((40, 60, 3), np.uint8))
    raw = data.tobytes()
    second = 4 + struct.unpack(">H", raw[4:6])[0]  # after the APP0 segment
    patched = raw[:second] + b"\x00\x13\x37" + raw[second:]  # libjpeg warns "extraneous bytes", decodes
    assert cv2.imdecode(np.frombuffer(patched, np.uint8), cv2.IMREAD_COLOR).shape == (40, 60, 3)
    assert image_size(io.BytesIO(patched))[1:] == (60, 40)


@pytest.mark.parametrize("data, says", [
    (b"\x89PNG\r\n\x1a\n" + struct.pack(">I4s", 600_000_000, b"IDAT") + bytes(80), "claims 600000000 bytes"),
    (b"\xff\xd8\xff\xe0" + bytes(10), "damaged JPEG"),
    (b"BM" + bytes(10), "damaged BMP"),
    (b"GIF89a", "damaged GIF"),
    (b"II*\x00" + struct.pack("<I", 10**9), "damaged TIFF"),
    (b"P6\nwide tall\n", "damaged PNM"),
    (b"not an image at all", "not a JPEG, PNG"),
    (b"", "not a JPEG, PNG"),
])
def test_damaged_headers_are_one_line(tmp_path, data, says):
    path = tmp_path / "bad.img"
    path.write_bytes(data)
    with pytest.raises(EdgeError, match="cannot be decoded") as info:
        check_image_file(path)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_zero_sized_images_are_refused(tmp_path):
    path = tmp_path / "zero.ppm"
    path.write_bytes(b"P6\n0 10\n255\n")
    with pytest.raises(EdgeError, match="says 0x10"):
        check_image_file(path)


def _mp4_with_frame_size(source: bytes, width: int, height: int) -> bytes:
    data = bytearray(source)
    at = data.find(b"stsd")  # FullBox header and entry count, then the visual sample entry
    struct.pack_into(">HH", data, at + 4 + 8 + 8 + 24, width, height)
    return bytes(data)


def test_video_containers_declare_their_frame_size_before_opening(tmp_path):
    from faults_helpers import DEMO_VIDEO

    check_video_file(DEMO_VIDEO, max_pixels=640 * 480)
    with pytest.raises(EdgeError, match="640x480 frames"):
        check_video_file(DEMO_VIDEO, max_pixels=640 * 480 - 1)
    patched = tmp_path / "claims.mp4"
    with open(DEMO_VIDEO, "rb") as f:
        patched.write_bytes(_mp4_with_frame_size(f.read(), 20000, 20000))
    with pytest.raises(EdgeError, match="20000x20000 frames"):
        check_video_file(str(patched))
    avi = tmp_path / "small.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(2):
        writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    check_video_file(str(avi), max_pixels=320 * 240)
    with pytest.raises(EdgeError, match="320x240 frames"):
        check_video_file(str(avi), max_pixels=1000)
