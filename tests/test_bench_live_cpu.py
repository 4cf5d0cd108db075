"""bench/live_cpu.py: the paced camera it measures the live path with, and what a run
reports. The CPU share itself is measured there, never asserted here."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is a folder of scripts, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import live_cpu  # noqa: E402

needs_demo = pytest.mark.skipif(not live_cpu.DEMO_VIDEO.is_file(), reason="edge/samples/demo_face.mp4 is not here")


def test_yuyv_buffers_convert_back_to_the_frame():
    import cv2

    rng = np.random.default_rng(0)
    bgr = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 2.0)
    back = cv2.cvtColor(live_cpu._bgr_to_yuyv(bgr), cv2.COLOR_YUV2BGR_YUYV)
    assert back.shape == bgr.shape and np.abs(back.astype(int) - bgr).mean() < 6


@needs_demo
@pytest.mark.parametrize("fmt", live_cpu.FORMATS)
def test_the_paced_camera_delivers_the_clip_at_its_rate_and_loops_without_a_jump(fmt):
    frames = live_cpu.load_clip(live_cpu.DEMO_VIDEO, fmt)
    assert len(frames) == 2 * 150 - 2  # forwards, then backwards without repeating the ends
    camera = live_cpu.PacedCamera(frames, fmt, 100.0, live_cpu.StageCpu())
    images = []
    for _ in range(5):
        assert camera.grab()
        ok, image = camera.retrieve()
        assert ok
        images.append(image)
    ok, image = camera.read()
    assert ok and image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert camera.delivered == 6 and camera.late == 0
    assert camera.cpu.calls["camera grab"] == 6 and camera.cpu.calls["camera retrieve (to BGR)"] == 6


@needs_demo
def test_a_short_run_counts_every_frame_and_breaks_the_cpu_down_by_stage():
    from edge import ScreenerOptions

    options = ScreenerOptions.from_profile(str(live_cpu.DEFAULT_PROFILE))
    frames = live_cpu.load_clip(live_cpu.DEMO_VIDEO, "yuyv")
    run = live_cpu.run_once(options, frames, "yuyv", 1.0, profile=False)
    assert run["frames_dropped"] == 0
    assert run["frames_in"] <= run["camera_delivered"] <= run["frames_in"] + 4  # a few may sit in the queue
    assert 25 <= run["frames_in"] <= 32
    assert abs(run["frames_analysed"] - run["frames_in"] / 3) <= 2  # 10 of 30 frames a second
    for stage in ("emotion model", "detect", "camera retrieve (to BGR)", "fusion (tick)",
                  "session thread: engine Python, queues, telemetry"):
        assert stage in run["stage_cpu_pct"]
    assert 0 < run["cpu_share"] < 1.0
    text = live_cpu._format(run)
    assert f"frames in {run['frames_in']}, analysed {run['frames_analysed']}" in text and "dropped 0" in text
