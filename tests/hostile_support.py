"""Hostile inputs and the harness that runs the real CLI on them under a memory and time
budget (issue 21): shared by test_faults_hostile.py, test_fuzz_hostile.py and
bench/fuzz_hostile.py.

    result = run_limited(["face", str(path)], cwd=tmp_path)
    assert result.one_line_error(code=2)
"""
from __future__ import annotations

import ctypes
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import List, NamedTuple, Optional

import numpy as np

ADDRESS_SPACE_BYTES = 512 << 20  # the budget every hostile input must fit (a 4 GB Jetson shares it with the GPU)
TIME_LIMIT_S = 30.0
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


class Limited(NamedTuple):
    code: int
    out: str
    err: str
    peak_rss_mb: float
    seconds: float

    def error_lines(self) -> List[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def one_line_error(self, code: int = 2, *needles: str) -> bool:
        lines = self.error_lines()
        assert "Traceback" not in self.err, self.err[-2000:]
        assert self.code == code and len(lines) == 1, (self.code, self.err[-2000:])
        assert lines[0].startswith("edge: error: "), lines
        assert len(lines[0]) < 600, lines[0][:200]
        for needle in needles:
            assert needle in lines[0], (needle, lines[0])
        return True


def _limits(address_space: int, without_file_access: bool):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if without_file_access:  # root without the capabilities that ignore file modes
            libc = ctypes.CDLL(None, use_errno=True)
            for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
                libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    return apply


def run_limited(args: List[str], cwd: Path, timeout: float = TIME_LIMIT_S,
                address_space: int = ADDRESS_SPACE_BYTES, without_file_access: bool = False,
                env: Optional[dict] = None) -> Limited:
    """`python -m edge ARGS` under RLIMIT_AS and a wall-clock limit; its exit code, output,
    peak RSS (from wait4) and duration. A run over the time limit is killed and fails."""
    started = time.monotonic()
    child_env = dict(os.environ, HOME=str(cwd), XDG_CACHE_HOME=str(Path(cwd) / ".cache"), **(env or {}))
    hwm_file = Path(tempfile.mkdtemp(prefix="edge-hwm-")) / "hwm"
    child_env["EDGE_TEST_HWM_FILE"] = str(hwm_file)
    proc = subprocess.Popen([sys.executable, "-c", _REPORTS_ITS_PEAK, *args], cwd=str(cwd), env=child_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=_limits(address_space, without_file_access))
    chunks = {"out": [], "err": []}
    readers = [threading.Thread(target=lambda s=stream, k=key: chunks[k].append(s.read()), daemon=True)
               for stream, key in ((proc.stdout, "out"), (proc.stderr, "err"))]
    for reader in readers:
        reader.start()
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            for reader in readers:
                reader.join(5)
            raise AssertionError(f"edge {' '.join(args)[:200]} ran past {timeout} s")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(10)
    text = {k: b"".join(v).decode("utf-8", "replace") for k, v in chunks.items()}
    # ru_maxrss survives exec (the forked copy of this test process counts): the child's own
    # high-water mark, written at its exit, is the figure; wait4's is kept for a killed child.
    try:
        peak_kb = float(hwm_file.read_text())
    except (OSError, ValueError):
        peak_kb = float(usage.ru_maxrss)
    shutil.rmtree(str(hwm_file.parent), ignore_errors=True)
    return Limited(proc.returncode, text["out"], text["err"], peak_kb / 1024.0, time.monotonic() - started)


# `python -m edge ARGS` that writes its own peak RSS (VmHWM, reset at exec) when it exits.
_REPORTS_ITS_PEAK = (
    "import atexit, os, re, runpy, sys\n"
    "def _peak():\n"
    "    with open(os.environ['EDGE_TEST_HWM_FILE'], 'w') as f:\n"
    "        f.write(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
    "atexit.register(_peak)\n"
    "sys.argv = ['edge'] + sys.argv[1:]\n"
    "runpy.run_module('edge', run_name='__main__', alter_sys=True)\n")


# ---------------------------------------------------------------- images that lie about their size
def _small(ext: str, params=(), side: int = 32) -> bytes:
    import cv2

    image = (np.arange(side * side * 3) % 251).astype(np.uint8).reshape(side, side, 3)
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return data.tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _boxes(data: bytes, start: int, end: int):
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, position)
        if size < 8:
            return
        yield kind, position + 8, position + size
        position += size


def huge_image(fmt: str, width: int, height: int) -> bytes:
    """A small, otherwise valid image file of format `fmt` whose header claims width x height."""
    if fmt == "jpeg":  # a real JPEG with its frame header (SOF0) patched, as in the issue
        data = bytearray(_small(".jpg"))
        at = data.find(b"\xff\xc0")
        struct.pack_into(">HH", data, at + 5, height, width)
        return bytes(data)
    if fmt == "png":
        data = _small(".png")
        ihdr = struct.pack(">II", width, height) + data[24:29]
        return data[:8] + _png_chunk(b"IHDR", ihdr) + data[33:]
    if fmt == "bmp":
        data = bytearray(_small(".bmp"))
        struct.pack_into("<ii", data, 18, width, height)
        return bytes(data)
    if fmt == "gif":
        data = bytearray(_small(".gif"))
        struct.pack_into("<HH", data, 6, width, height)
        at = data.find(b"\x2c", 13)  # the image descriptor
        struct.pack_into("<HH", data, at + 5, width, height)
        return bytes(data)
    if fmt == "webp":  # lossless (VP8L): 14-bit sizes, at most 16384 x 16384
        import cv2

        data = bytearray(_small(".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)))
        bits = struct.unpack_from("<I", data, 21)[0] & ~((1 << 28) - 1)
        struct.pack_into("<I", data, 21, bits | (min(width, 16384) - 1) | (min(height, 16384) - 1) << 14)
        return bytes(data)
    if fmt == "tiff":
        data = bytearray(_small(".tiff", ()))
        order = "<" if data[:2] == b"II" else ">"
        ifd = struct.unpack_from(order + "I", data, 4)[0]
        for i in range(struct.unpack_from(order + "H", data, ifd)[0]):
            entry = ifd + 2 + 12 * i
            tag, kind = struct.unpack_from(order + "HH", data, entry)
            if tag in (256, 257):
                value = width if tag == 256 else height
                struct.pack_into(order + "HHII", data, entry, tag, 4, 1, value)
            if tag == 278:  # RowsPerStrip: one strip for the whole claimed image
                struct.pack_into(order + "HHII", data, entry, tag, 4, 1, height)
        return bytes(data)
    if fmt == "ppm":
        return b"P6\n%d %d\n255\n" % (width, height) + bytes(1000)
    if fmt == "pam":
        return b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" % (width, height) + bytes(1000)
    if fmt == "pfm":
        return b"PF\n%d %d\n-1.0\n" % (width, height) + bytes(1000)
    if fmt == "sunras":
        data = bytearray(_small(".ras"))
        struct.pack_into(">II", data, 4, width, height)
        return bytes(data)
    if fmt == "hdr":
        return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (height, width) + bytes(1000)
    if fmt == "jp2":
        data = bytearray(_small(".jp2", side=128))  # OpenJPEG wants more pixels than resolutions
        for kind, start, end in _boxes(data, 0, len(data)):
            if kind == b"jp2h":
                for inner, s, _ in _boxes(data, start, end):
                    if inner == b"ihdr":
                        struct.pack_into(">II", data, s, height, width)
            if kind == b"jp2c":
                struct.pack_into(">IIII", data, start + 8, width, height, 0, 0)
        return bytes(data)
    if fmt == "avif":
        data = bytearray(_small(".avif"))
        at = data.find(b"ispe")
        struct.pack_into(">II", data, at + 8, width, height)
        return bytes(data)
    raise ValueError(fmt)


IMAGE_FORMATS = ("jpeg", "png", "bmp", "gif", "webp", "tiff", "ppm", "pam", "pfm", "sunras", "hdr", "jp2", "avif")
