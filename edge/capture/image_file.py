"""Checks on an image file before OpenCV decodes it.

OpenCV's PNG reader trusts a chunk's declared length: a 100-byte file whose IDAT chunk
claims 600 MB made `cv2.imread` take 4 GB before failing (found by fuzzing), enough to
get `edge face` killed on a 4 GB Raspberry Pi. A PNG whose chunks claim more bytes than
the file holds is refused here in one line, before any decoding.
"""
from __future__ import annotations

import struct
from pathlib import Path

from edge.errors import EdgeError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_PIXELS = 100_000_000  # 100 Mpx: 300 MB once decoded as BGR


def check_image_file(path: Path) -> None:
    """EdgeError when `path` is a PNG whose chunk lengths run past the end of the file, or
    whose header claims more than MAX_IMAGE_PIXELS."""
    with open(str(path), "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            return
        data = f.read()
    position = 0
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        end = position + 12 + length  # length, type, data, crc
        if end > len(data):
            raise EdgeError(f"image {path} is damaged (a PNG {kind!r} chunk claims {length} bytes, "
                            f"the file has {len(data) + 8}); give an intact JPEG or PNG file")
        if kind == b"IHDR" and length >= 8:
            width, height = struct.unpack(">II", data[position + 8:position + 16])
            if width * height > MAX_IMAGE_PIXELS:
                raise EdgeError(f"image {path} is {width}x{height} pixels, more than this device decodes "
                                f"({MAX_IMAGE_PIXELS // 1_000_000} Mpx); give a smaller image")
        if kind == b"IEND":
            return
        position = end
