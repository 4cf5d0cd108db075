"""Video sources: a camera index (V4L2), a GStreamer pipeline, picamera2, a video file.

    source = open_video_source("edge/samples/demo_face.mp4", fast=True)
    reader = VideoReader(source, clock, queue_frames=4).start()
    frame = reader.queue.get(timeout_s=1.0)      # Frame, END or None

A file gives timestamps from its own frame rate (frame i at i / fps seconds); a live
source stamps each frame with the session clock when it was grabbed.
"""
from __future__ import annotations

import abc
import time
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import numpy as np

from edge.capture.clock import Backoff, SessionClock, analysis_slot
from edge.capture.image_file import MAX_IMAGE_PIXELS, check_video_file
from edge.capture.queues import CaptureThread, DropOldestQueue
from edge.errors import EdgeError
from edge.features.face import import_cv2
from edge.native_output import set_opencv_log_level


class Frame(NamedTuple):
    """One video frame: its index, its time in the session (s), when it was captured
    on the session clock (s), the BGR (or grey) uint8 image (None for a file frame that
    was grabbed but not decoded because it will not be analysed), and the read time."""

    index: int
    t_s: float
    captured_s: float
    image: Optional[np.ndarray]
    decode_ms: float = 0.0


def usable_image(image: Any) -> Optional[np.ndarray]:
    """The frame as the engine takes it (uint8, grey HxW or BGR HxWx3), or None when it
    cannot be one: a driver or a fake capture can hand over any shape or type. BGRA and
    single-channel frames are converted, 16-bit and float frames scaled; empty frames,
    two-channel frames, other types are refused (the reader skips and counts them)."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        return None
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[:, :, 0]
        elif channels == 4:
            image = image[:, :, :3]  # BGRA: drop alpha
        elif channels != 3:
            return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
        if image.max(initial=0.0) <= 1.0:  # [0, 1] floats
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        return None
    return np.ascontiguousarray(image)


def _bad_frames_warning(count: int, example: Any) -> str:
    shape = getattr(example, "shape", None)
    dtype = getattr(example, "dtype", type(example).__name__)
    return (f"{count} video frame(s) of an unusable shape or type were skipped (e.g. {shape} {dtype}); "
            "check the camera's pixel format")


def gstreamer_available(cv2=None) -> bool:
    """True when this OpenCV build can open GStreamer pipelines (cv2.getBuildInformation)."""
    cv2 = cv2 or import_cv2()
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def single_opencv_thread(cv2=None) -> int:
    """Run OpenCV's own functions on the calling thread (cv2.setNumThreads(1), process-wide);
    returns the thread count it had.

    The frames here are small (a 640x480 conversion, a face crop, a template match):
    OpenCV's worker pool speeds each by a fraction of a millisecond, then its workers
    busy-wait for the next call. At 30 frames a second that spinning cost more than all
    the conversions it sped up (issue 23: 1.9 % of an x86 core of a 5.6 % session; the
    same stages took the same CPU on one thread). The models keep their own threads."""
    cv2 = cv2 or import_cv2()
    before = cv2.getNumThreads()
    if before != 1:
        cv2.setNumThreads(1)
    return before


class VideoSource(abc.ABC):
    """A source of frames. `open()` returns a reader with read() -> (ok, image) and
    release(), or None when the device cannot be opened now."""

    live = True
    name = "video"
    fps = 30.0

    @abc.abstractmethod
    def open(self):
        """A reader, or None when the device cannot be opened now."""


class OpenCVSource(VideoSource):
    """A camera index or a GStreamer pipeline through cv2.VideoCapture."""

    def __init__(self, target: Any, name: str, api: Optional[int] = None, width: int = 640,
                 height: int = 480, fps: float = 30.0, capture_factory: Optional[Callable] = None):
        self.target = target
        self.name = name
        self.api = api
        self.width, self.height, self.fps = width, height, float(fps)
        cv2 = import_cv2()
        set_opencv_log_level(cv2, "ERROR")  # our warnings say what to do instead
        self._factory = capture_factory or cv2.VideoCapture
        self._cv2 = cv2

    def open(self):
        cap = self._factory(self.target) if self.api is None else self._factory(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            return None
        if isinstance(self.target, int):
            cap.set(self._cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(self._cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(self._cv2.CAP_PROP_FPS, self.fps)
        return cap


class Picamera2Source(VideoSource):
    """The Raspberry Pi camera through picamera2 (only when the package is installed)."""

    name = "picamera2"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, module: Any = None):
        if module is None:
            try:
                import picamera2 as module
            except ImportError:
                raise EdgeError("picamera2 is not installed (it comes with Raspberry Pi OS: "
                                "`sudo apt install python3-picamera2`); use --camera N or --video FILE") from None
        self._module = module
        self.width, self.height, self.fps = width, height, float(fps)

    def open(self):
        try:
            camera = self._module.Picamera2()
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "BGR888"})
            camera.configure(config)
            camera.start()
        except Exception:  # the library raises many kinds when the camera is absent
            return None
        return _PicameraReader(camera)


class _PicameraReader:
    def __init__(self, camera):
        self.camera = camera

    def read(self) -> Tuple[bool, Optional[np.ndarray]]:
        try:
            return True, self.camera.capture_array()
        except Exception:
            return False, None

    def release(self) -> None:
        try:
            self.camera.stop()
            self.camera.close()
        except Exception:
            pass


class FileSource(VideoSource):
    """A video file, played at its own frame rate (or as fast as possible)."""

    live = False

    def __init__(self, path: str, capture_factory: Optional[Callable] = None, max_pixels: int = MAX_IMAGE_PIXELS):
        cv2 = import_cv2()
        set_opencv_log_level(cv2, "ERROR")  # our warnings say what to do instead
        self.name = str(path)
        self.path = str(path)
        self._factory = capture_factory or cv2.VideoCapture
        import os

        if not os.path.isfile(self.path):
            raise EdgeError(f"video {path} does not exist")
        check_video_file(self.path, max_pixels)  # before FFmpeg decodes a first frame to open it
        cap = self._factory(self.path)
        if not cap.isOpened():
            cap.release()
            raise EdgeError(f"video {path} cannot be opened (not a video, or a codec OpenCV lacks); "
                            "give an MP4/AVI file")
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if width * height > max_pixels:  # containers check_video_file does not read (MKV, WebM, ...)
            cap.release()
            raise EdgeError(f"video {path} has {width}x{height} frames, more than this device decodes "
                            f"({max_pixels} pixels, video.max_pixels); give a smaller video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.release()

    def open(self):
        cap = self._factory(self.path)
        return cap if cap.isOpened() else None


def open_video_source(spec: Optional[str], fast: bool = False, width: int = 640, height: int = 480,
                      fps: float = 30.0, capture_factory: Optional[Callable] = None,
                      max_pixels: int = MAX_IMAGE_PIXELS) -> Optional[VideoSource]:
    """A VideoSource from a spec: "camera:N" (or "N"), "gst:<pipeline>", "picamera2", a file path, None.
    max_pixels: the profile's video.max_pixels, a file's frame size is checked against it."""
    if spec is None or spec == "":
        return None
    if spec.startswith("camera:") or spec.isdigit():
        index_text = spec.split(":", 1)[1] if spec.startswith("camera:") else spec
        try:
            index = int(index_text)
        except ValueError:
            raise EdgeError(f"camera index must be a number, got {index_text!r}") from None
        cv2 = import_cv2()
        return OpenCVSource(index, f"camera {index}", cv2.CAP_V4L2 if _has_v4l2(cv2) else None,
                            width, height, fps, capture_factory)
    if spec.startswith("gst:"):
        cv2 = import_cv2()
        if capture_factory is None and not gstreamer_available(cv2):
            raise EdgeError("this OpenCV build has no GStreamer support (see cv2.getBuildInformation()); "
                            "the pip wheel lacks it: use the system OpenCV (Jetson: JetPack's python3-opencv) "
                            "or --camera N")
        return OpenCVSource(spec[4:], "gstreamer pipeline", cv2.CAP_GSTREAMER, width, height, fps, capture_factory)
    if spec == "picamera2":
        return Picamera2Source(width, height, fps)
    return FileSource(spec, capture_factory, max_pixels)


def _has_v4l2(cv2) -> bool:
    import sys

    return sys.platform.startswith("linux") and hasattr(cv2, "CAP_V4L2")


class VideoReader(CaptureThread):
    """Reads a VideoSource in its own thread into a bounded queue of Frames.

    Live sources and files played in real time drop the oldest queued frame when the
    consumer is behind (counted in `queue.dropped`); a file with fast=True blocks.
    A live source that stops giving frames is reopened with back-off; each outage is
    recorded in `gaps` as (start_s, end_s) on the session clock.
    """

    thread_name = "video capture"

    def __init__(self, source: VideoSource, clock: SessionClock, queue_frames: int = 4, fast: bool = False,
                 stall_timeout_s: float = 5.0, backoff: Optional[Backoff] = None,
                 analysis_fps: Optional[float] = None):
        self.source = source
        # Files: decode only the frames the engine will analyse (grab() without retrieve()
        # for the others: the container is parsed, the picture is not decoded).
        self.analysis_fps = analysis_fps
        self.clock = clock
        self.fast = fast and not source.live
        self.queue = DropOldestQueue(queue_frames, block_when_full=self.fast)
        self.frames_in = 0
        self.bad_frames = 0  # frames of an unusable shape or type (usable_image), skipped
        self._bad_example: Any = None
        self.gaps: List[Tuple[float, float]] = []
        self.warnings: List[str] = []
        self.stall_timeout_s = stall_timeout_s
        self.backoff = backoff or Backoff()
        super().__init__()

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def _checked(self, image: Any) -> Optional[np.ndarray]:
        usable = usable_image(image)
        if usable is None:
            self.bad_frames += 1
            if self._bad_example is None:
                self._bad_example = image
        return usable

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            if self.bad_frames:
                self.warnings.append(_bad_frames_warning(self.bad_frames, self._bad_example))


    def _run_file(self) -> None:
        reader = self.source.open()
        if reader is None:
            self.warnings.append(f"video {self.source.name} could not be reopened")
            return
        index = 0
        last_slot = -1
        grab_only = self._grab_only(reader)
        try:
            while not self._stop.is_set():
                t_s = index / self.source.fps
                started = time.perf_counter()
                if grab_only:
                    slot = analysis_slot(t_s, self.analysis_fps)
                    ok = reader.grab()
                    image = None
                    if ok and slot > last_slot:
                        ok, image = reader.retrieve()
                        last_slot = slot
                        if image is None:
                            ok = False
                else:
                    ok, image = reader.read()
                    ok = ok and image is not None
                decode_ms = (time.perf_counter() - started) * 1000.0
                if not ok:
                    break
                if image is not None:
                    image = self._checked(image)  # unusable: kept as an undecoded frame (timing intact)
                if not self.fast:  # play at the file's own rate
                    wait = t_s - self.clock.now_s()
                    if wait > 0:
                        self._stop.wait(wait)
                frame = Frame(index, t_s, self.clock.now_s(), image, decode_ms)
                # With --fast the reader waits for the engine as long as it takes: the engine
                # takes the streams in media-time order, so a full queue is not a stall.
                if not self.queue.put(frame, timeout_s=None if self.fast else self.stall_timeout_s):
                    if not self._stop.is_set():
                        self.warnings.append("video consumer stalled; reading stopped")
                    break
                if grab_only:
                    last_slot = self._redecode_slot(last_slot)
                self.frames_in += 1
                index += 1
        finally:
            reader.release()
        expected = getattr(self.source, "frame_count", 0)
        if expected and index < expected - 1 and not self._stop.is_set():
            self.warnings.append(f"video {self.source.name} ended after {index} of {expected} frames "
                                 "(truncated or damaged file); the session used what was there")

    def _grab_only(self, reader: Any) -> bool:
        """True when frames that will not be analysed can be taken without decoding them:
        an analysis rate is known and the reader has grab() and retrieve() (OpenCV)."""
        return self.analysis_fps is not None and hasattr(reader, "grab") and hasattr(reader, "retrieve")

    def _redecode_slot(self, last_slot: int) -> int:
        """The slot to decode from next: when the queue just dropped the decoded frame of
        the current slot (the consumer is behind), the next frame of that slot is decoded
        instead, so the slot is still analysed, as it was when every frame was decoded."""
        lost = self.queue.take_last_dropped()
        if isinstance(lost, Frame) and lost.image is not None:
            return min(last_slot, analysis_slot(lost.t_s, self.analysis_fps) - 1)
        return last_slot

    def _run_live(self) -> None:
        reader = self.source.open()
        gap_start = 0.0 if reader is None else None
        index = 0
        last_slot = -1
        grab_only = reader is not None and self._grab_only(reader)
        try:
            while not self._stop.is_set():
                if reader is None:
                    # The device went away (or never came): reopen with back-off, record the gap.
                    if gap_start is None:
                        gap_start = self.clock.now_s()
                    self._stop.wait(self.backoff.delay())
                    reader = self.source.open()
                    if reader is not None:
                        grab_only = self._grab_only(reader)
                        self.gaps.append((round(gap_start, 3), round(self.clock.now_s(), 3)))
                        gap_start = None
                        self.backoff.reset()
                    continue
                started = time.perf_counter()
                if grab_only:
                    # The frame's time is when the camera handed it over; only a frame that
                    # opens a new analysis slot is converted or decoded (retrieve()).
                    ok = reader.grab()
                    now = self.clock.now_s()
                    image = None
                    slot = analysis_slot(now, self.analysis_fps)
                    if ok and slot > last_slot:
                        ok, image = reader.retrieve()
                        ok = ok and image is not None
                else:
                    ok, image = reader.read()
                    ok = ok and image is not None
                    now = None
                if ok:
                    if image is not None:
                        image = self._checked(image)
                        if image is None:
                            continue  # skipped and counted; the camera itself is still there
                        if grab_only:
                            last_slot = slot
                    if now is None:
                        now = self.clock.now_s()
                    self.queue.put(Frame(index, now, now, image, (time.perf_counter() - started) * 1000.0))
                    if grab_only:
                        last_slot = self._redecode_slot(last_slot)
                    self.frames_in += 1
                    index += 1
                    continue
                reader.release()
                reader = None
        finally:
            if reader is not None:
                reader.release()
            if gap_start is not None:
                self.gaps.append((round(gap_start, 3), round(self.clock.now_s(), 3)))


def check_opens(source: VideoSource) -> None:
    """Fail with one line now, before the session starts, when a live source cannot open."""
    if not source.live:
        return
    reader = source.open()
    if reader is None:
        raise EdgeError(f"{source.name} cannot be opened: is it connected and free "
                        "(another program may hold it)? Try another --camera index or --video FILE")
    reader.release()
