"""Fuzz target for the file readers (run by tests/test_fuzz_readers.py in its own process,
so that a crash of native code fails the test instead of killing pytest).

    python tests/fuzz_readers_target.py --seconds 20 --workdir /tmp/fz [--engine atheris|hypothesis]

Each input is one file: the first byte picks the name's suffix (.wav .avi .mp4 .mkv .jpg
.png), the rest is its content (mutated from a seed corpus of real files: the WAV, MP4 and
JPEG samples, a small AVI and PNG). The file goes through WavSource (+ its chunks),
FileSource (+ five decoded frames through usable_image) and `edge face`'s read_image.
An EdgeError (one line) is the allowed refusal; any other exception, a hang past the
per-input timeout or a native crash is a finding. Prints `fuzzed N inputs in S s` last.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SUFFIXES = (".wav", ".avi", ".mp4", ".mkv", ".jpg", ".png")
MAX_LEN = 96 * 1024


def _readers():
    from edge.apps.face import read_image
    from edge.capture.audio import WavSource
    from edge.capture.video import FileSource, usable_image
    from edge.errors import EdgeError
    from edge.features.face import to_gray

    return read_image, WavSource, FileSource, usable_image, EdgeError, to_gray


def make_target(workdir: Path, readers):
    read_image, WavSource, FileSource, usable_image, EdgeError, to_gray = readers
    counter = {"n": 0}

    def one_input(data: bytes) -> None:
        counter["n"] += 1
        if not data:
            data = b"\0"
        path = workdir / ("input" + SUFFIXES[data[0] % len(SUFFIXES)])
        path.write_bytes(data[1:])
        try:
            source = WavSource(str(path))
            for i, chunk in enumerate(source.chunks()):
                if not (abs(chunk).max(initial=0.0) <= 2.0):
                    raise AssertionError("WAV chunk out of range")
                if i > 50:
                    break
        except EdgeError as exc:
            assert "\n" not in str(exc)
        try:
            source = FileSource(str(path))
            cap = source.open()
            if cap is not None:
                try:
                    for _ in range(5):
                        ok, image = cap.read()
                        if not ok:
                            break
                        usable_image(image)
                finally:
                    cap.release()
        except EdgeError as exc:
            assert "\n" not in str(exc)
        try:
            image = read_image(path)
            to_gray(image)
        except EdgeError as exc:
            assert "\n" not in str(exc)

    return one_input, counter


def seed_corpus(folder: Path) -> None:
    """Real files, each prefixed by the byte that names its suffix, cut to MAX_LEN."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    samples = ROOT / "edge" / "samples"
    seeds = {".wav": (samples / "demo_speech.wav").read_bytes()[:MAX_LEN - 1],
             ".mp4": (samples / "demo_face.mp4").read_bytes()[:MAX_LEN - 1],
             ".jpg": (samples / "astronaut.jpg").read_bytes()[:MAX_LEN - 1]}
    ok, png = cv2.imencode(".png", np.full((8, 8, 3), 120, np.uint8))
    seeds[".png"] = png.tobytes()
    avi = folder.parent / "seed.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(5):
        writer.write(np.full((24, 32, 3), i * 40, np.uint8))
    writer.release()
    if avi.is_file():
        seeds[".avi"] = avi.read_bytes()[:MAX_LEN - 1]
    for suffix, data in seeds.items():
        (folder / suffix.strip(".")).write_bytes(bytes([SUFFIXES.index(suffix)]) + data)


def run_atheris(seconds: int, workdir: Path) -> int:
    import atheris

    with atheris.instrument_imports(include=["edge"]):
        readers = _readers()
    target, counter = make_target(workdir, readers)
    corpus = workdir / "corpus"
    seed_corpus(corpus)
    started = time.monotonic()

    def report():
        print(f"fuzzed {counter['n']} inputs in {time.monotonic() - started:.1f} s (atheris)", flush=True)

    import atexit

    atexit.register(report)
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-timeout=20", f"-max_len={MAX_LEN}",
                   "-rss_limit_mb=3072", f"-artifact_prefix={workdir}/", str(corpus)], target)
    atheris.Fuzz()
    return 0


def run_hypothesis(seconds: int, workdir: Path) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    target, counter = make_target(workdir, _readers())
    corpus = workdir / "corpus"
    seed_corpus(corpus)
    seeds = [p.read_bytes() for p in sorted(corpus.iterdir())]
    started = time.monotonic()

    def mutate(args):
        seed, cut, flips, junk = args
        data = bytearray(seed[: max(1, int(len(seed) * cut))])
        for position, value in flips:
            if len(data) > 1:
                data[1 + position % (len(data) - 1)] = value
        return bytes(data) + junk

    inputs = st.one_of(
        st.binary(max_size=4096),
        st.tuples(st.sampled_from(seeds), st.floats(0.0, 1.0),
                  st.lists(st.tuples(st.integers(0, MAX_LEN), st.integers(0, 255)), max_size=40),
                  st.binary(max_size=64)).map(mutate))

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(inputs)
    def fuzz(data):
        target(data)

    try:
        while time.monotonic() - started < seconds:
            fuzz()  # each round draws new inputs
    finally:
        print(f"fuzzed {counter['n']} inputs in {time.monotonic() - started:.1f} s (hypothesis)", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--engine", choices=["atheris", "hypothesis"], default="atheris")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(str(workdir))
    if args.engine == "atheris":
        return run_atheris(args.seconds, workdir)
    return run_hypothesis(args.seconds, workdir)


if __name__ == "__main__":
    sys.exit(main())
