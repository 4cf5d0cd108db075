"""The live path's CPU share (issue 23): a 640x480 30 fps camera played in real time.

    python bench/live_cpu.py                        # 30 s, YUYV camera, desktop profile
    python bench/live_cpu.py --seconds 60 --runs 3 --format mjpeg --profile firmware_configs/jetson_nano.yaml

There is no camera on a build machine, so `PacedCamera` stands in for one: a
cv2.VideoCapture look-alike that hands `edge run`'s camera path (open_video_source
"camera:0" -> OpenCVSource -> VideoReader._run_live) the frames of a clip (the bundled
demo_face.mp4, played forwards then backwards so the face never jumps) at their frame
rate in real time. Like a V4L2 camera, `grab()` waits for the next frame and takes the
raw buffer (YUYV, or an MJPEG picture with --format mjpeg) and `retrieve()` converts or
decodes it to BGR, the work OpenCV's V4L2 backend does in the camera's process.
A frame the reader is late for is still delivered (the driver queues it), so every
frame the camera gives can be counted.

Printed per run: the session's `cpu_share` (the figure `edge run` prints: process CPU
seconds per wall second, 1.0 = one core), the frames the camera delivered and the
engine's frames in / analysed / dropped, and the CPU per stage in per cent of one core
(thread CPU time, time.thread_time(), around each stage: the camera's grab and
retrieve and the reader's own Python in the capture thread; grey conversion,
detection, tracking, crops, the emotion and severity models, fusion, and the rest of
the engine's Python, queues and telemetry in the session thread). Run it on the device
to see its figures; the machine's load (os.getloadavg) is printed with each run.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import os
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

# `python bench/live_cpu.py` and `python -m bench.live_cpu` both import the installed
# package (`pip install -e .` installs bench/ beside edge/), never a path edit.
from edge.features.face import import_cv2

ROOT = Path(__file__).resolve().parent.parent

DEMO_VIDEO = ROOT / "edge" / "samples" / "demo_face.mp4"
DEFAULT_PROFILE = ROOT / "firmware_configs" / "desktop.yaml"
FORMATS = ("yuyv", "mjpeg")
TARGET_CPU_SHARE = 0.04  # issue 23: 4 % of one x86 core with 10 fps analysis


def _bgr_to_yuyv(bgr: np.ndarray) -> np.ndarray:
    """A BGR frame as a camera's YUYV (4:2:2) buffer, H x W x 2 (what COLOR_YUV2BGR_YUYV reads)."""
    cv2 = import_cv2()
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    out = np.empty(bgr.shape[:2] + (2,), np.uint8)
    out[:, :, 0] = yuv[:, :, 0]
    u = ((yuv[:, 0::2, 1].astype(np.uint16) + yuv[:, 1::2, 1]) // 2).astype(np.uint8)
    v = ((yuv[:, 0::2, 2].astype(np.uint16) + yuv[:, 1::2, 2]) // 2).astype(np.uint8)
    out[:, 0::2, 1] = u
    out[:, 1::2, 1] = v
    return out


def load_clip(video: Path, fmt: str, width: int = 640, height: int = 480) -> List:
    """The clip's frames as raw camera buffers (YUYV arrays or MJPEG bytes), forwards then
    backwards (a loop that never jumps)."""
    cv2 = import_cv2()
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        if fmt == "yuyv":
            frames.append(_bgr_to_yuyv(image))
        else:
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            frames.append(jpeg)
    cap.release()
    if not frames:
        raise SystemExit(f"{video}: no frames")
    return frames + frames[-2:0:-1]


class StageCpu:
    """CPU seconds per stage (thread_time around each call), from any thread."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}
        self.calls: Dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.thread_time() - started)
        timed.__wrapped__ = fn
        return timed


class PacedCamera:
    """A cv2.VideoCapture stand-in for a camera (see the module docstring)."""

    def __init__(self, frames: List, fmt: str, fps: float, cpu: StageCpu):
        self.frames = frames
        self.fmt = fmt
        self.fps = float(fps)
        self.cpu = cpu
        self.delivered = 0  # frames handed over by grab()
        self.late = 0  # frames the reader asked for after the next one was due
        self.thread_cpu_s = 0.0
        self._raw = None
        self._t0: Optional[float] = None
        self._thread_start = 0.0
        self._released = False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def set(self, prop, value) -> bool:
        return True

    def get(self, prop) -> float:
        return 0.0

    def grab(self) -> bool:
        if self._t0 is None:
            self._t0 = time.monotonic()
            self._thread_start = time.thread_time()
        due = self._t0 + self.delivered / self.fps
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        elif wait < -1.0 / self.fps:
            self.late += 1
        started = time.thread_time()
        self._raw = self.frames[self.delivered % len(self.frames)]
        self.delivered += 1
        self.cpu.add("camera grab", time.thread_time() - started)
        return True

    def retrieve(self, image=None, flag=0):
        started = time.thread_time()
        cv2 = import_cv2()
        if self.fmt == "yuyv":
            bgr = cv2.cvtColor(self._raw, cv2.COLOR_YUV2BGR_YUYV)
        else:
            bgr = cv2.imdecode(self._raw, cv2.IMREAD_COLOR)
        self.cpu.add("camera retrieve (to BGR)", time.thread_time() - started)
        return True, bgr

    def read(self, image=None):
        if not self.grab():
            return False, None
        return self.retrieve()

    def release(self) -> None:
        if not self._released and self._t0 is not None:
            self.thread_cpu_s = time.thread_time() - self._thread_start
        self._released = True


def thread_cpu_s() -> Dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, by "name[tid]" (Linux
    /proc/self/task; empty elsewhere): threads the engine did not start show up here
    (OpenCV's and the runtimes' worker pools)."""
    out: Dict[str, float] = {}
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[f"{name}[{tid}]"] = (int(fields[11]) + int(fields[12])) / float(ticks)
    return out


@contextlib.contextmanager
def _instrumented(screener, cpu: StageCpu):
    """Wrap the engine's stages with thread-CPU timers: this Screener's objects, and the
    stream engine's grey conversion until the block ends."""
    import edge.stream.engine as stream_engine

    tracker = screener.tracker
    tracker.detect = cpu.wrap("detect", tracker.detect)
    tracker.track = cpu.wrap("track", tracker.track)
    classifier = screener.classifier
    classifier.crops = cpu.wrap("face crops", classifier.crops)
    classifier.infer = cpu.wrap("emotion model", classifier.infer)
    if screener.severity is not None:
        screener.severity.step = cpu.wrap("severity model", screener.severity.step)
    to_gray = stream_engine.to_gray
    stream_engine.to_gray = cpu.wrap("grey conversion", to_gray)
    try:
        yield
    finally:
        stream_engine.to_gray = to_gray


def run_once(options, frames: List, fmt: str, seconds: float, profile: bool) -> Dict:
    from edge import Screener

    cpu = StageCpu()
    camera_box: Dict[str, PacedCamera] = {}

    def factory(*_args):
        camera = PacedCamera(frames, fmt, 30.0, cpu)
        camera_box["camera"] = camera
        return camera

    screener = Screener(options)
    with _instrumented(screener, cpu):
        source_run = screener.run("camera:0", None, duration_s=seconds, capture_factory=factory)
        engine = source_run.session.engine
        engine._fuse_tick = cpu.wrap("fusion (tick)", engine._fuse_tick)  # this session's tick assembly
        profiler = cProfile.Profile() if profile else None
        load_before = os.getloadavg()[0]
        threads_before = thread_cpu_s()
        session_tid = threading.get_native_id() if hasattr(threading, "get_native_id") else -1
        main_started = time.thread_time()
        if profiler is not None:
            profiler.enable()
        ticks = 0
        for _ in source_run:
            ticks += 1
        if profiler is not None:
            profiler.disable()
        main_cpu_s = time.thread_time() - main_started
        threads_after = thread_cpu_s()
    screener.close()
    result = source_run.result
    timings = result.timings
    camera = camera_box.get("camera")
    wall_s = timings["wall_s"]
    counters = timings["counters"]
    stages = {name: s for name, s in cpu.seconds.items()}
    capture_stages = ("camera grab", "camera retrieve (to BGR)")
    capture_cpu = camera.thread_cpu_s if camera is not None else 0.0
    stages["capture thread: reader Python"] = max(0.0, capture_cpu - sum(cpu.seconds.get(s, 0.0)
                                                                           for s in capture_stages))
    engine_named = sum(v for k, v in cpu.seconds.items() if k not in capture_stages)
    # fusion (tick) includes the severity model: count it once.
    engine_named -= cpu.seconds.get("severity model", 0.0)
    stages["session thread: engine Python, queues, telemetry"] = max(0.0, main_cpu_s - engine_named)
    out = {
        "cpu_share": timings["cpu_share"], "wall_s": wall_s, "media_s": timings["media_s"],
        "load_1min": round(load_before, 2), "ticks": ticks,
        "camera_delivered": camera.delivered if camera else 0, "camera_late": camera.late if camera else 0,
        "frames_in": counters.get("frames_in"), "frames_analysed": counters.get("frames_analysed"),
        "frames_with_face": counters.get("frames_with_face"), "frames_dropped": counters.get("frames_dropped"),
        "face_detections": counters.get("face_detections"), "face_track_reuses": counters.get("face_track_reuses"),
        "stage_cpu_pct": {k: round(100.0 * v / wall_s, 3) for k, v in
                          sorted(stages.items(), key=lambda kv: -kv[1])},
        "threads_cpu_pct": {"capture": round(100.0 * capture_cpu / wall_s, 3),
                            "session": round(100.0 * main_cpu_s / wall_s, 3)},
        # Threads alive at the end besides the session's (the capture thread has ended by then):
        # OpenCV's and the runtimes' worker pools, whose CPU no stage above includes.
        "other_threads_cpu_pct": {k: round(100.0 * (v - threads_before.get(k, 0.0)) / wall_s, 2)
                                  for k, v in sorted(threads_after.items())
                                  if v - threads_before.get(k, 0.0) > 0 and not k.endswith(f"[{session_tid}]")},
    }
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        out["profile"] = text.getvalue()
    return out


def _format(run: Dict) -> str:
    lines = [f"cpu_share {run['cpu_share']:.3f} ({100 * run['cpu_share']:.1f} % of one core) over "
             f"{run['wall_s']:.1f} s wall, {run['media_s']:.1f} s media; load {run['load_1min']}",
             f"  camera delivered {run['camera_delivered']} (late {run['camera_late']}); frames in "
             f"{run['frames_in']}, analysed {run['frames_analysed']}, with face {run['frames_with_face']}, "
             f"dropped {run['frames_dropped']}; detections {run['face_detections']}, "
             f"tracked {run['face_track_reuses']}",
             f"  threads: capture {run['threads_cpu_pct']['capture']:.2f} %, "
             f"session {run['threads_cpu_pct']['session']:.2f} % of one core"]
    for name, pct in run["stage_cpu_pct"].items():
        lines.append(f"    {name:<50} {pct:6.2f} %")
    others = run["other_threads_cpu_pct"]
    lines.append("  other threads (OpenCV's, the runtimes' pools; /proc): " + (", ".join(
        f"{name} {pct:.2f} %" for name, pct in others.items()) if others else "none used CPU"))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="session length (s), real time")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--format", choices=FORMATS, default="yuyv", help="the camera's pixel format")
    parser.add_argument("--video", default=str(DEMO_VIDEO), help="clip the camera plays (looped)")
    parser.add_argument("--profile", default=str(DEFAULT_PROFILE), help="device profile YAML")
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--opencv-pool", action="store_true", help="leave OpenCV's worker pool at its "
                        "default size (the Screener runs OpenCV on one thread: edge.capture.video."
                        "single_opencv_thread); shows what the pool's busy-waiting costs on this CPU")
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions "
                        "(session thread; it adds its own overhead to the CPU share)")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args(argv)

    from edge import ScreenerOptions

    options = ScreenerOptions.from_profile(args.profile, args.models_dir)
    if args.opencv_pool:
        options = dataclasses.replace(options, single_opencv_thread=False)
    frames = load_clip(Path(args.video), args.format)
    shares = []
    for i in range(args.runs):
        run = run_once(options, frames, args.format, args.seconds, args.cprofile)
        shares.append(run["cpu_share"])
        if args.json:
            print(json.dumps({k: v for k, v in run.items() if k != "profile"}), flush=True)
        else:
            print(f"run {i + 1}/{args.runs} ({args.format}, {Path(args.profile).name}): " + _format(run), flush=True)
        if run.get("profile"):
            print(run["profile"], flush=True)
    if not args.json:
        verdict = "meets" if max(shares) <= TARGET_CPU_SHARE else "misses"
        print(f"cpu_share over {len(shares)} run(s): median {float(np.median(shares)):.3f}, "
              f"min {min(shares):.3f}, max {max(shares):.3f}; {verdict} the issue's target "
              f"{TARGET_CPU_SHARE:.2f}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
