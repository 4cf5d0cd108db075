"""Checks on an image file before OpenCV decodes it: its size read from the header.

A 54 KB JPEG whose header claims 30000x30000 made `cv2.imread` take 5.2 GB (45 s, then
"no face found"); a 100-byte PNG whose IDAT chunk claims 600 MB took 4 GB before failing
(found by fuzzing). On a 4 GB device either is an outage. Here every format OpenCV's
imread accepts (this build: BMP, JPEG, PNG, GIF, WebP, TIFF/BigTIFF, PBM/PGM/PPM/PAM/PFM,
Sun raster, Radiance HDR, OpenEXR, JPEG 2000 (JP2 and J2K), AVIF) has its width and height
read from the header, without decoding, and an image over the pixel budget is refused in
one line. A file that is none of these is refused too: OpenCV would not decode it either.
OPENCV_IO_MAX_IMAGE_PIXELS (edge/__init__.py) is OpenCV's own second guard.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Optional, Tuple

from edge.errors import EdgeError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_PIXELS = 50_000_000  # the default of the profile's video.max_pixels: 150 MB as BGR
HEADER_BYTES = 1 << 20  # headers sit in the first megabyte (JPEG APPn segments are <= 64 KB each)
FORMATS = "JPEG, PNG, BMP, GIF, WebP, TIFF, PNM, Sun raster, HDR, OpenEXR, JPEG 2000 or AVIF"


MAX_CHUNKS = 200_000  # PNG chunks walked; 200,000 IDAT chunks of 8 KB are 1.6 GB


class _Damaged(Exception):
    """A header that is cut short or inconsistent."""


class _Source:
    """The file's first HEADER_BYTES in memory, anything later read where it is (a TIFF's
    directory or a JP2 codestream may sit at the end of a large file)."""

    def __init__(self, f, head: bytes, size: int):
        self.f, self.head, self.size = f, head, size

    def __len__(self) -> int:
        return self.size

    def get(self, offset: int, size: int) -> bytes:
        if offset < 0 or offset + size > self.size:
            raise _Damaged(f"header cut short at byte {offset}")
        if offset + size <= len(self.head):
            return self.head[offset:offset + size]
        self.f.seek(offset)
        return self.f.read(size)


def _u(fmt: str, data, offset: int):
    size = struct.calcsize(fmt)
    if isinstance(data, _Source):
        chunk = data.get(offset, size)
        if len(chunk) < size:
            raise _Damaged(f"header cut short at byte {offset}")
        return struct.unpack(fmt, chunk)
    if offset < 0 or offset + size > len(data):
        raise _Damaged(f"header cut short at byte {offset}")
    return struct.unpack_from(fmt, data, offset)


def _png(src: _Source) -> Tuple[int, int]:
    # Every chunk, not only those before the first IDAT: OpenCV's reader allocates what a
    # chunk's length claims (100 bytes claiming 600 MB took 4 GB).
    position, size = 8, None
    for _ in range(MAX_CHUNKS):
        if position + 8 > len(src):
            break
        length, kind = _u(">I4s", src, position)
        if position + 12 + length > len(src):  # length, type, data, crc
            raise _Damaged(f"a PNG {kind!r} chunk claims {length} bytes, the file has {len(src)}")
        if kind == b"IHDR" and size is None:
            size = _u(">II", src, position + 8)
        if kind == b"IEND":
            break
        position += 12 + length
    else:
        raise _Damaged(f"more than {MAX_CHUNKS} PNG chunks")
    if size is None:
        raise _Damaged("no PNG IHDR chunk")
    return size


def _jpeg(data) -> Tuple[int, int]:
    position = 2
    while True:
        if _u("B", data, position)[0] != 0xFF:  # libjpeg skips stray bytes before a marker
            position = data.find(b"\xff", position)
            if position < 0:
                raise _Damaged("no JPEG frame header")
            continue
        marker = _u("B", data, position + 1)[0]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7 or marker == 0x00:  # no length
            position += 2
            continue
        (length,) = _u(">H", data, position + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            height, width = _u(">xHH", data, position + 4)
            if height == 0:
                raise _Damaged("a JPEG height defined later (DNL), which OpenCV does not read")
            return width, height
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before
            raise _Damaged("no JPEG frame header")
        position += 2 + length


def _bmp(data) -> Tuple[int, int]:
    (header,) = _u("<I", data, 14)
    if header == 12:  # OS/2 BITMAPCOREHEADER
        return _u("<HH", data, 18)
    width, height = _u("<ii", data, 18)
    return abs(width), abs(height)


def _webp(data) -> Tuple[int, int]:
    kind = data.get(12, 4)
    if kind == b"VP8X":
        w0, w1, h0, h1 = _u("<HBHB", data, 24)
        return (w0 | w1 << 16) + 1, (h0 | h1 << 16) + 1
    if kind == b"VP8L":
        (bits,) = _u("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":
        width, height = _u("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    raise _Damaged(f"an unknown WebP chunk {kind!r}")


def _tiff(data) -> Tuple[int, int]:
    order = "<" if data.head[:2] == b"II" else ">"
    (version,) = _u(order + "H", data, 2)
    big = version == 43
    offset = _u(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
    count = _u(order + ("Q" if big else "H"), data, offset)[0]
    entry, first = (20, offset + 8) if big else (12, offset + 2)
    tags = {}
    for i in range(min(count, 4096)):
        tag, kind = _u(order + "HH", data, first + i * entry)
        value_at = first + i * entry + (12 if big else 8)
        if kind == 3:
            tags[tag] = _u(order + "H", data, value_at)[0]
        elif kind == 4:
            tags[tag] = _u(order + "I", data, value_at)[0]
        elif kind == 16 and big:
            tags[tag] = _u(order + "Q", data, value_at)[0]
    if 256 not in tags or 257 not in tags:
        raise _Damaged("no TIFF width or length")
    # A tile is decoded whole: a huge tile in a small image is as costly as a huge image.
    tile = tags.get(322, 0) * tags.get(323, 0)
    return max(tags[256], 1), max(tags[257], tile // max(tags[256], 1), 1)


_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n)*(\d+)")


def _pnm(data: bytes) -> Tuple[int, int]:
    if data[:2] == b"P7":  # PAM: WIDTH and HEIGHT lines before ENDHDR
        header = data[:data.find(b"ENDHDR")] if b"ENDHDR" in data else b""
        width, height = re.search(rb"WIDTH\s+(\d+)", header), re.search(rb"HEIGHT\s+(\d+)", header)
        if not width or not height:
            raise _Damaged("no PAM WIDTH or HEIGHT")
        return int(width.group(1)[:12]), int(height.group(1)[:12])
    width = _PNM_TOKEN.match(data, 2)
    height = width and _PNM_TOKEN.match(data, width.end())
    if not height:
        raise _Damaged("no PNM width or height")
    return int(width.group(1)[:12]), int(height.group(1)[:12])


def _hdr(data: bytes) -> Tuple[int, int]:
    found = re.search(rb"\n\n([-+][YX]) (\d{1,12}) ([-+][YX]) (\d{1,12})", data[:65536])
    if not found:
        raise _Damaged("no Radiance resolution line")
    first, second = int(found.group(2)), int(found.group(4))
    return (second, first) if found.group(1)[1:] == b"Y" else (first, second)


def _exr(data: bytes) -> Tuple[int, int]:
    position, size = 8, None
    while position < len(data) and data[position] != 0:
        name_end = data.find(b"\0", position)
        kind_end = data.find(b"\0", name_end + 1)
        if name_end < 0 or kind_end < 0:
            raise _Damaged("an OpenEXR attribute cut short")
        (length,) = _u("<i", data, kind_end + 1)
        if data[position:name_end] == b"dataWindow" and length == 16:
            x0, y0, x1, y1 = _u("<iiii", data, kind_end + 5)
            size = (x1 - x0 + 1, y1 - y0 + 1)
        if length < 0:
            raise _Damaged("an OpenEXR attribute of negative length")
        position = kind_end + 5 + length
    if size is None:
        raise _Damaged("no OpenEXR dataWindow")
    return size


def _j2k_siz(data, at: int) -> Tuple[int, int]:
    x, y, x0, y0 = _u(">IIII", data, at + 8)  # FF4F FF51 Lsiz Rsiz, then Xsiz Ysiz XOsiz YOsiz
    return max(x - x0, 0), max(y - y0, 0)


def _boxes(data, start: int, end: int):
    """ISO base media / JP2 boxes in data[start:end]: (type, payload start, payload end)."""
    position = start
    while position + 8 <= end:
        size, kind = _u(">I4s", data, position)
        header = 8
        if size == 1:
            (size,) = _u(">Q", data, position + 8)
            header = 16
        elif size == 0:
            size = end - position
        if size < header:
            raise _Damaged(f"a {kind!r} box of {size} bytes")
        yield kind, position + header, min(position + size, end)
        position += size


def _jp2(data) -> Tuple[int, int]:
    sizes = []
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind == b"jp2h":
            sizes += [_u(">II", data, s)[::-1] for k, s, _ in _boxes(data, start, end) if k == b"ihdr"]
        if kind == b"jp2c":  # the codestream's own SIZ is what OpenJPEG allocates for
            sizes.append(_j2k_siz(data, start))
            break
    if not sizes:
        raise _Damaged("no JPEG 2000 image header")
    return max(w for w, _ in sizes), max(h for _, h in sizes)


def _avif(data) -> Tuple[int, int]:
    sizes = []

    def walk(start: int, end: int, depth: int) -> None:
        for kind, s, e in _boxes(data, start, end):
            if kind == b"ispe":
                sizes.append(_u(">II", data, s + 4))
            elif kind in (b"meta", b"iprp", b"ipco") and depth < 4:
                walk(s + 4 if kind == b"meta" else s, e, depth + 1)  # meta is a FullBox

    walk(0, len(data), 0)
    if not sizes:
        raise _Damaged("no AVIF image size (ispe)")
    return max(w for w, _ in sizes), max(h for _, h in sizes)


def _format(head: bytes) -> Optional[str]:
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if len(head) > 1 and head[:1] == b"P" and head[1:2] in b"1234567fF":
        return "PNM"
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "Sun raster"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "HDR"
    if head[:4] == b"\x76\x2f\x31\x01":
        return "OpenEXR"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":
        return "JP2"
    if head[:4] == b"\xff\x4f\xff\x51":
        return "J2K"
    if head[4:8] == b"ftyp" and (b"avif" in head[8:64] or b"avis" in head[8:64]):
        return "AVIF"
    return None


def _read_size(kind: str, src: _Source) -> Tuple[int, int]:
    head = src.head
    if kind == "PNG":
        return _png(src)
    if kind == "JPEG":
        return _jpeg(head)  # its frame header comes before the first scan, near the start
    if kind == "BMP":
        return _bmp(src)
    if kind == "GIF":
        return _u("<HH", src, 6)
    if kind == "WebP":
        return _webp(src)
    if kind == "TIFF":
        return _tiff(src)
    if kind == "PNM":
        return _pnm(head)
    if kind == "Sun raster":
        return _u(">II", src, 4)
    if kind == "HDR":
        return _hdr(head)
    if kind == "OpenEXR":
        return _exr(head)
    if kind == "JP2":
        return _jp2(src)
    if kind == "J2K":
        return _j2k_siz(src, 0)
    return _avif(src)


def image_size(f) -> Tuple[str, int, int]:
    """(format, width, height) of the image in the binary file object `f`, read from its
    header without decoding; ValueError when the format is unknown or the header damaged."""
    head = f.read(HEADER_BYTES)
    src = _Source(f, head, max(len(head), f.seek(0, 2)))
    kind = _format(head[:64])
    if kind is None:
        raise ValueError(f"not a {FORMATS} file")
    try:
        width, height = _read_size(kind, src)
    except _Damaged as exc:
        raise ValueError(f"a damaged {kind} header: {exc}") from None
    return kind, int(width), int(height)


def check_image_file(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Tuple[int, int]:
    """(width, height) of the image at `path`, read from its header without decoding;
    EdgeError (one line) when it is no image format OpenCV reads, its header is damaged,
    or it has more than `max_pixels` pixels (the profile's video.max_pixels)."""
    try:
        with open(str(path), "rb") as f:
            kind, width, height = image_size(f)
    except OSError as exc:
        raise EdgeError(f"image {path} cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise EdgeError(f"image {path} cannot be decoded ({exc}); give a JPEG or PNG file") from None
    if width <= 0 or height <= 0:
        raise EdgeError(f"image {path} cannot be decoded (its {kind} header says {width}x{height}); "
                        "give a JPEG or PNG file")
    if width * height > max_pixels:
        raise EdgeError(f"image {path} is {width}x{height} pixels ({kind}), more than this device decodes "
                        f"({max_pixels} pixels, video.max_pixels); give a smaller image")
    return width, height


# ---------------------------------------------------------------- video containers
_MP4_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")


def _mp4_sizes(src: _Source) -> list:
    """Frame sizes an MP4/MOV declares: each track's visual sample entry (what the decoder
    allocates for) and its track header, found without reading media data."""
    sizes = []

    def walk(start: int, end: int, depth: int) -> None:
        for kind, s, e in _boxes(src, start, end):
            if kind in _MP4_CONTAINERS and depth < 6:
                walk(s, e, depth + 1)
            elif kind == b"tkhd" and e - s >= 8:
                width, height = _u(">II", src, e - 8)  # 16.16 fixed point, the box's last 8 bytes
                sizes.append((width >> 16, height >> 16))
            elif kind == b"stsd":
                for _, es, ee in _boxes(src, s + 8, e):  # FullBox header, entry count
                    if ee - es >= 28:
                        sizes.append(_u(">HH", src, es + 24))

    walk(0, len(src), 0)
    return sizes


def _avi_sizes(head: bytes) -> list:
    sizes = []
    at = head.find(b"avih")
    if at >= 0:
        sizes.append(_u("<II", head, at + 8 + 32))  # dwWidth, dwHeight
    at = head.find(b"strf")
    if at >= 0 and head[at - 4 - 4:at - 4] != b"auds":
        width, height = _u("<ii", head, at + 8 + 4)  # BITMAPINFOHEADER biWidth, biHeight
        sizes.append((abs(width), abs(height)))
    return sizes


def check_video_file(path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """EdgeError (one line) when a video file's container declares frames of more than
    `max_pixels`, read from the header before OpenCV opens it (FFmpeg decodes a first frame
    while opening). MP4/MOV and AVI are read here; other containers are checked from the
    opened stream's width and height before the first frame is read (FileSource)."""
    try:
        with open(str(path), "rb") as f:
            head = f.read(HEADER_BYTES)
            src = _Source(f, head, max(len(head), f.seek(0, 2)))
            if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
                sizes = _mp4_sizes(src)
            elif head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                sizes = _avi_sizes(head)
            else:
                return
    except OSError as exc:
        raise EdgeError(f"video {path} cannot be read: {exc.strerror or exc}") from None
    except _Damaged:
        return  # OpenCV then says whether it can open it at all
    for width, height in sizes:
        if width * height > max_pixels:
            raise EdgeError(f"video {path} has {width}x{height} frames, more than this device decodes "
                            f"({max_pixels} pixels, video.max_pixels); give a smaller video")
