"""Rebuild the bundled demo session: `python tests/data/make_demo_samples.py` (host side).

Writes edge/samples/demo_face.mp4 and edge/samples/demo_speech.wav:

- `demo_face.mp4`: 640x480, 30 fps, 5 s, mp4v. scikit-image's `astronaut()` portrait
  (Eileen Collins, NASA, public domain), slightly blurred to keep the file small, on a
  grey background with a slow pan and zoom, so the face moves as in front of a webcam.
- `demo_speech.wav`: 16 kHz mono 16-bit PCM, synthesized offline by Debian's
  `espeak-ng` (GPL-3 program; its output is ours to ship) and resampled with
  `edge.capture.resample`. It is synthetic speech, not a recording of a person.

Needs scikit-image (the `train` extra) and `espeak-ng` (apt-get install espeak-ng).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
HERE = ROOT / "edge" / "samples"
WIDTH, HEIGHT, FPS, SECONDS = 640, 480, 30, 5
TEXT = ("Hello. I slept fairly well this week, and I went for a walk with my sister on Sunday. "
        "Work has been busy, but I am managing.")


def make_video(path: Path) -> None:
    import cv2
    from skimage import data

    portrait = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for i in range(FPS * SECONDS):
        phase = 2.0 * np.pi * i / (FPS * SECONDS)
        side = int(round(400 + 20 * np.sin(phase)))
        face = cv2.GaussianBlur(cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA), (0, 0), 1.0)
        frame = np.full((HEIGHT, WIDTH, 3), 96, np.uint8)
        x0 = int(round((WIDTH - side) / 2 + 60 * np.sin(phase)))
        y0 = int(round((HEIGHT - side) / 2 + 10 * np.cos(phase)))
        frame[y0:y0 + side, x0:x0 + side] = face
        writer.write(frame)
    writer.release()


def make_speech(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from edge.capture.resample import Resampler

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-gb", "-s", "150", "-w", str(raw), TEXT], check=True)
        with wave.open(str(raw), "rb") as f:
            rate = f.getframerate()
            pcm = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768.0
    samples = Resampler(rate, 16000).process(pcm, final=True)
    samples = samples[: 16000 * SECONDS]
    samples = np.concatenate([samples, np.zeros(16000 * SECONDS - len(samples), np.float32)])
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


if __name__ == "__main__":
    make_video(HERE / "demo_face.mp4")
    make_speech(HERE / "demo_speech.wav")
    for name in ("demo_face.mp4", "demo_speech.wav"):
        print(name, (HERE / name).stat().st_size, "bytes")
