"""Broken and odd media through the file readers and the real commands.

1. A time-bounded fuzz run over the readers (tests/fuzz_readers_target.py): atheris
   (coverage-guided, libFuzzer) where it is installed, else hypothesis with generated and
   mutated bytes; in its own process, so a native crash or an out-of-memory fails here.
2. Named broken files through `edge run` and `edge face`: each gives one line and exit 2,
   or an honest (partial) session; never a traceback, a hang or a dead interpreter.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from faults_helpers import DEMO_VIDEO, DEMO_WAV, ROOT, edge_cmd, write_profile

FUZZ_SECONDS = 25


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["atheris", "hypothesis"])
def test_time_bounded_fuzz_of_the_file_readers(tmp_path, engine):
    if importlib.util.find_spec(engine) is None:
        pytest.skip(f"{engine} is not installed (dev extra)")
    seconds = FUZZ_SECONDS if engine == "atheris" else FUZZ_SECONDS // 3
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_readers_target.py"), "--seconds",
                           str(seconds), "--workdir", str(tmp_path), "--engine", engine],
                          capture_output=True, timeout=seconds + 120)
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name.split("-")[0] in ("crash", "oom", "timeout"))
    assert proc.returncode == 0 and not findings, (proc.returncode, findings, out[-3000:])
    found = re.search(r"fuzzed (\d+) inputs", out) or re.search(r"Done (\d+) runs", out)  # libFuzzer's own line
    count = int(found.group(1))
    print(f"{engine}: {count} inputs in {seconds} s")
    assert count > (500 if engine == "atheris" else 100), out[-500:]


# ----- named broken files ----------------------------------------------------------------
def _wav(path: Path, rate: int, channels: int, width: int, seconds: float = 1.0) -> Path:
    n = int(rate * seconds)
    t = np.arange(n) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    if width == 1:
        pcm = np.repeat(np.round(tone * 127 + 128).astype(np.uint8), channels).tobytes()
    else:
        ints = np.round(tone * (2 ** (8 * width - 1) - 1)).astype("<i8").view(np.uint8).reshape(-1, 8)[:, :width]
        pcm = np.repeat(ints, channels, axis=0).tobytes()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(pcm)
    return path


def _video(path: Path, width: int, height: int, frames: int = 10) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for i in range(frames):
        writer.write(np.full((height, width, 3), (i * 20) % 255, np.uint8))
    writer.release()
    return path


def _cut(source: str, path: Path, share: float) -> Path:
    data = Path(source).read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


MEDIA = {
    "empty.mp4": lambda p: p.write_bytes(b"") or p,
    "empty.wav": lambda p: p.write_bytes(b"") or p,
    "text.avi": lambda p: p.write_text("this is not a video\n") or p,
    "text.wav": lambda p: p.write_text("RIFF? no, text\n") or p,
    "wav_named.mp4": lambda p: _wav(p, 16000, 1, 2),
    "mp4_named.wav": lambda p: _cut(DEMO_VIDEO, p, 1.0),
    "truncated.mp4": lambda p: _cut(DEMO_VIDEO, p, 0.3),
    "truncated_header.mp4": lambda p: _cut(DEMO_VIDEO, p, 0.001),
    "truncated.wav": lambda p: _cut(DEMO_WAV, p, 0.4),
    "truncated_header.wav": lambda p: _cut(DEMO_WAV, p, 0.0002),
    "one_by_one.avi": lambda p: _video(p, 1, 1),
    "tiny.avi": lambda p: _video(p, 2, 2),
    "large.avi": lambda p: _video(p, 3840, 2160, frames=4),
    "pcm8.wav": lambda p: _wav(p, 16000, 1, 1),
    "pcm24.wav": lambda p: _wav(p, 16000, 1, 3),
    "pcm32_48k.wav": lambda p: _wav(p, 48000, 1, 4),
    "stereo_44k.wav": lambda p: _wav(p, 44100, 2, 2),
    "low_rate_4k.wav": lambda p: _wav(p, 4000, 1, 2),
}


def _check(proc, name):
    err = proc.stderr
    assert proc.returncode in (0, 2, 3), (name, proc.returncode, err[-2000:])  # not a signal, not 1
    assert "Traceback" not in err and "Traceback" not in proc.stdout, (name, err[-2000:])
    if proc.returncode == 2:
        assert err.count("\n") == 1 and err.startswith("edge: error:"), (name, err)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MEDIA))
def test_broken_and_odd_media_through_edge_run(tmp_path, name):
    path = MEDIA[name](tmp_path / name)
    flag = "--audio" if name.endswith(".wav") else "--video"
    other = ["--video", DEMO_VIDEO] if flag == "--audio" else ["--audio", DEMO_WAV]
    proc = subprocess.run(edge_cmd("run", "--config", str(write_profile(tmp_path)), flag, str(path), *other,
                                   "--fast", "--duration", "1.5"),
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    _check(proc, name)
    if proc.returncode != 2 and ("truncated" in name or name in ("tiny.avi", "one_by_one.avi")):
        # A session from a damaged or odd file says what it used (a warning, or gaps), or ran whole.
        assert "session" in proc.stdout


def _image(path: Path, kind: str) -> Path:
    import cv2

    if kind in ("one.png", "one.jpg"):
        cv2.imwrite(str(path), np.full((1, 1, 3), 128, np.uint8))
    elif kind == "large.jpg":
        cv2.imwrite(str(path), np.full((6000, 8000, 3), 128, np.uint8))
    elif kind in ("truncated.jpg", "truncated.png"):
        ok, data = cv2.imencode(path.suffix, np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))
        path.write_bytes(data.tobytes()[:400])
    elif kind == "huge_header.png":  # a valid PNG header claiming 60000 x 60000 pixels
        ok, data = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
        raw = bytearray(data.tobytes())
        raw[16:24] = (60000).to_bytes(4, "big") * 2
        path.write_bytes(bytes(raw))
    elif kind == "lying_chunk.png":  # the fuzzer's find: an IDAT chunk claiming 600 MB
        ok, data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
        raw = bytearray(data.tobytes())
        at = raw.index(b"IDAT") - 4
        raw[at:at + 4] = (0x23FFFFFF).to_bytes(4, "big")
        path.write_bytes(bytes(raw))
    elif kind == "text.jpg":
        path.write_text("not an image")
    elif kind == "empty.png":
        path.write_bytes(b"")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["one.png", "one.jpg", "large.jpg", "truncated.jpg", "truncated.png",
                                  "huge_header.png", "lying_chunk.png", "text.jpg", "empty.png"])
def test_broken_and_odd_images_through_edge_face(tmp_path, kind):
    path = _image(tmp_path / kind, kind)
    # The child is capped at 3 GB of address space (a decoder that wants gigabytes fails
    # here, not the machine) and reports its peak RSS: a broken file must stay small.
    peak = tmp_path / "peak_kb"
    # VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so the child would report the
    # peak of the pytest process that started it (hundreds of MB once torch is loaded).
    code = ("import atexit, re, resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            f"atexit.register(lambda: open({str(peak)!r}, 'w').write("
            "re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))); "
            "from edge.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "face", str(path), "--json"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)
    _check(proc, kind)
    if kind.startswith(("one", "large")):
        assert proc.returncode == 0 and '"faces": []' in proc.stdout
    peak_mb = int(peak.read_text()) / 1024
    # lying_chunk.png took 4 GB (645 MB under the cap) before the PNG check; the 48 Mpx JPEG decodes to 144 MB.
    assert peak_mb < (700 if kind == "large.jpg" else 400), peak_mb
