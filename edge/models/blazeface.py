"""BlazeFace short-range face detector (MediaPipe's model file, run by our TFLite backend).

    detector = BlazeFaceDetector(models_dir=None, threads=1, min_size=60)
    boxes = detector.detect(frame_bgr)        # [(x, y, w, h), ...], largest first

The frame is letterboxed to 128x128 RGB (aspect ratio kept, centred, black padding) and
scaled to [-1, 1]. The model regresses 896 SSD anchors (a 16x16 grid at stride 8 with
2 anchors per cell, an 8x8 grid at stride 16 with 6 per cell; every anchor is 1x1, so
only its centre matters): per anchor a box (x, y offsets and w, h, in 128-pixel units)
and 6 keypoints, plus one score logit. Scores go through a sigmoid; boxes above
`min_score` are merged by weighted non-maximum suppression (overlapping boxes are
averaged, weighted by score, as MediaPipe does) and mapped back to frame pixels.

The anchors and decoding constants are written into the model's manifest by
`export/blazeface.py` and read back from it here. numpy + OpenCV + TFLite only.

Framing: `detect` returns each face's box in the emotion model's framing (Haar's), made
from the eye and mouth keypoints by the manifest's `framing` (FRAMING, fitted on real faces
by `python -m export fit-framing`); `detect_all` keeps the model's own boxes.
"""
from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from edge.errors import EdgeError
from edge.features.face import PIXEL_OFFSET, PIXEL_SCALE, Box, KeypointFraming, import_cv2

MODEL_NAME = "blazeface"
INPUT_SIZE = 128

# MediaPipe's face_detection_short_range graph (SsdAnchorsCalculator options).
ANCHOR_OPTIONS: Dict = {
    "input_size": INPUT_SIZE,
    "num_layers": 4,
    "strides": [8, 16, 16, 16],
    "min_scale": 0.1484375,
    "max_scale": 0.75,
    "anchor_offset": 0.5,
    "aspect_ratios": [1.0],
    "interpolated_scale_aspect_ratio": 1.0,
    "fixed_anchor_size": True,
}
# TensorsToDetectionsCalculator and NMS options of the same graph.
DECODE_OPTIONS: Dict = {
    "box_scale": float(INPUT_SIZE),  # x, y, w, h regressors are in input pixels
    "box_layout": "x_centre_offset, y_centre_offset, w, h (reverse_output_order)",
    "num_coords": 16,
    "num_keypoints": 6,
    "keypoint_offset": 4,
    "keypoints": ["right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear_tragion", "left_ear_tragion"],
    "score": "sigmoid",
    "score_clipping": 100.0,
    "min_score": 0.5,
    "nms": "weighted",
    "nms_iou": 0.3,
}
# Keypoints -> the box OpenCV's frontal-face Haar cascade gives the same face (the framing
# mini-Xception was trained on), fitted by `python -m export fit-framing` on real faces
# (export/data/faces.py FIT_SOURCES, frames at full size and at 0.6x); see README, face section.
FRAMING: Dict = {"rule": "keypoints_to_haar",
                 "eye_distance": 1.0926, "eye_mouth": 1.5594, "along": 0.188, "across": -0.0018}
FRAMING_NOTE = ("box = the Haar cascade's box for the face, from the eyes and mouth: side = eye_distance * "
                "|eyes| + eye_mouth * |mouth - eye midpoint|, centre = eye midpoint + |mouth - eye midpoint| * "
                "(along * u + across * v), u the unit vector from the eye midpoint to the mouth, v u turned 90 deg")


def ssd_anchors(options: Optional[Dict] = None) -> np.ndarray:
    """Anchor centres [N, 2] (x, y in [0, 1] of the input) in the model's output order.

    Consecutive layers with the same stride share one grid; each such layer adds one
    anchor per aspect ratio plus one interpolated-scale anchor to every cell.
    """
    options = options or ANCHOR_OPTIONS
    if not options.get("fixed_anchor_size", False):
        raise EdgeError("only fixed-size anchors (fixed_anchor_size: true) are supported")
    strides = list(options["strides"])
    per_layer = len(options["aspect_ratios"]) + (1 if options["interpolated_scale_aspect_ratio"] > 0 else 0)
    offset = float(options["anchor_offset"])
    size = int(options["input_size"])
    groups = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += per_layer
            layer += 1
        cells = int(math.ceil(size / float(stride)))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centres = np.stack([(xs.ravel() + offset) / cells, (ys.ravel() + offset) / cells], axis=1)
        groups.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(groups).astype(np.float32)


class Letterbox(NamedTuple):
    """How a frame sits in the square model input: content size and padding, in input pixels."""

    size: int  # side of the square input
    content_w: int
    content_h: int
    pad_x: int
    pad_y: int
    frame_w: int
    frame_h: int

    @classmethod
    def fit(cls, frame_w: int, frame_h: int, size: int = INPUT_SIZE) -> Letterbox:
        scale = size / float(max(frame_w, frame_h))
        content_w = max(1, min(size, int(round(frame_w * scale))))
        content_h = max(1, min(size, int(round(frame_h * scale))))
        return cls(size, content_w, content_h, (size - content_w) // 2, (size - content_h) // 2,
                   frame_w, frame_h)

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Points [..., 2] in normalised input coordinates -> frame pixels."""
        out = np.empty_like(xy, dtype=np.float32)
        out[..., 0] = (xy[..., 0] * self.size - self.pad_x) * (self.frame_w / float(self.content_w))
        out[..., 1] = (xy[..., 1] * self.size - self.pad_y) * (self.frame_h / float(self.content_h))
        return out


def letterbox_input(image: np.ndarray, size: int = INPUT_SIZE, scale: float = PIXEL_SCALE,
                    offset: float = PIXEL_OFFSET) -> Tuple[np.ndarray, Letterbox]:
    """BGR/BGRA/grey uint8 frame -> float32 [1, size, size, 3] RGB, each pixel x as
    x * scale + offset ([-1, 1] with the defaults), and its Letterbox."""
    cv2 = import_cv2()
    height, width = image.shape[:2]
    box = Letterbox.fit(width, height, size)
    shrinking = box.content_w < width
    small = cv2.resize(image, (box.content_w, box.content_h),
                       interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if small.ndim == 2:
        rgb = cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
    elif small.shape[2] == 4:
        rgb = cv2.cvtColor(small, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    canvas = np.zeros((1, size, size, 3), np.float32)
    canvas[0, box.pad_y:box.pad_y + box.content_h, box.pad_x:box.pad_x + box.content_w] = rgb
    canvas *= scale
    canvas += offset
    return canvas, box


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box with each row of `others`."""
    ix0 = np.maximum(box[0], others[:, 0])
    iy0 = np.maximum(box[1], others[:, 1])
    ix1 = np.minimum(box[2], others[:, 2])
    iy1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge overlapping detections: each cluster (IoU > threshold with its best box)
    becomes the score-weighted mean of its boxes and keypoints, with the best score."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    kept_boxes, kept_points, kept_scores = [], [], []
    remaining = np.arange(len(scores))
    while len(remaining):
        overlap = _iou(boxes[remaining[0]], boxes[remaining]) > iou_threshold
        overlap[0] = True
        members = remaining[overlap]
        weights = scores[members][:, None]
        total = float(weights.sum())
        kept_boxes.append((boxes[members] * weights).sum(axis=0) / total)
        kept_points.append((keypoints[members] * weights[:, :, None]).sum(axis=0) / total)
        kept_scores.append(scores[members[0]])
        remaining = remaining[~overlap]
    if not kept_scores:
        return np.zeros((0, 4), np.float32), np.zeros((0,) + keypoints.shape[1:], np.float32), \
            np.zeros(0, np.float32)
    return np.stack(kept_boxes), np.stack(kept_points), np.asarray(kept_scores, np.float32)


class Detections(NamedTuple):
    """Faces in frame pixels: boxes [n, 4] (x0, y0, x1, y1), keypoints [n, 6, 2] (x, y), scores [n]."""

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray


class BlazeFaceDetector:
    """MediaPipe BlazeFace short range on the TFLite backend; the same `detect` as Haar's.

    min_size: smallest face side kept, in frame pixels. min_score: sigmoid score threshold
    (default: the manifest's, 0.5 as in MediaPipe). The model's own box covers brows to chin,
    sits lower than Haar's (less forehead) and is about 0.86 times its side, so `detect` maps
    the keypoints to Haar's framing (`framing`, from the manifest) before the emotion model's
    crop rule cuts the face.
    """

    name = "blazeface"

    def __init__(self, models_dir: Optional[str] = None, threads: int = 1, min_size: int = 0,
                 min_score: Optional[float] = None):
        from edge.manifest import image_contract, load_manifest

        self.manifest = load_manifest(MODEL_NAME, models_dir)
        self.file = self.manifest.find_file("tflite", "fp32")
        try:
            self.backend = self.manifest.open(self.file, threads=threads)
        except EdgeError as exc:
            if "no TFLite interpreter" not in str(exc):
                raise
            raise EdgeError("the blazeface detector needs a TFLite interpreter (`pip install ai-edge-litert`, "
                            "or tflite-runtime); or set face.detector: haar") from None
        data = self.manifest.data
        contract = image_contract(self.manifest, layout="NHWC", color="rgb")
        self.input_size = contract.input_size
        self.pixel_scale, self.pixel_offset = contract.scale, contract.offset
        self.anchors = ssd_anchors(data["anchors"])
        self.decode_options = data["decode"]
        self.box_scale = float(self.decode_options["box_scale"])
        framing = data.get("framing")
        # An older manifest without a framing still runs, on the model's own boxes, and says so.
        self.framing = KeypointFraming.from_dict(framing) if framing else None
        self.framing_rule = (str(framing.get("rule", "keypoints_to_haar")) if framing
                             else "none: the model's own box (its manifest has no framing)")
        names_kp = list(self.decode_options["keypoints"])
        self._eyes_mouth = (names_kp.index("right_eye"), names_kp.index("left_eye"), names_kp.index("mouth_centre"))
        self.min_score = float(self.decode_options["min_score"] if min_score is None else min_score)
        if not 0.0 < self.min_score < 1.0:
            raise EdgeError(f"BlazeFace min_score must be in (0, 1), got {self.min_score}")
        self._min_logit = math.log(self.min_score / (1.0 - self.min_score))
        self.min_size = int(min_size)
        names = [spec.name for spec in self.backend.outputs]
        self._regressors = names.index("regressors")
        self._scores = names.index("classificators")
        if self.backend.outputs[self._regressors].shape[1] != len(self.anchors):
            raise EdgeError(f"model file {self.file['file']} has {self.backend.outputs[self._regressors].shape[1]} "
                            f"boxes but its manifest's anchors give {len(self.anchors)}")

    def detect_all(self, image: np.ndarray) -> Detections:
        """Every face above the score threshold after NMS, in frame pixels, best score first."""
        tensor, box = letterbox_input(image, self.input_size, self.pixel_scale, self.pixel_offset)
        outputs = self.backend.run(tensor)
        raw = outputs[self._regressors][0]
        clip = float(self.decode_options["score_clipping"])
        logits = np.clip(outputs[self._scores][0, :, 0], -clip, clip)
        # Threshold on the logit (sigmoid is monotonic): cheaper, and no exp overflow.
        keep = np.flatnonzero(logits >= self._min_logit)
        if not len(keep):
            return Detections(np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32),
                              np.zeros(0, np.float32))
        raw, anchors = raw[keep], self.anchors[keep]
        scores = (1.0 / (1.0 + np.exp(-logits[keep].astype(np.float64)))).astype(np.float32)
        centre = raw[:, 0:2] / self.box_scale + anchors
        half = raw[:, 2:4] / (2.0 * self.box_scale)  # anchor side is 1: w, h are fractions of the input
        corners = np.concatenate([centre - half, centre + half], axis=1)
        offset = int(self.decode_options["keypoint_offset"])
        count = int(self.decode_options["num_keypoints"])
        points = raw[:, offset:offset + 2 * count].reshape(-1, count, 2) / self.box_scale + anchors[:, None]
        corners, points, scores = weighted_nms(corners, points, scores, float(self.decode_options["nms_iou"]))
        frame_corners = box.to_frame(corners.reshape(-1, 2, 2)).reshape(-1, 4)
        return Detections(frame_corners, box.to_frame(points), scores)

    def framed(self, found: Detections) -> np.ndarray:
        """The detections' boxes in the emotion model's framing, [n, 4] (x0, y0, x1, y1), frame pixels."""
        if self.framing is None or not len(found.scores):
            return found.boxes
        right, left, mouth = self._eyes_mouth
        out = np.empty((len(found.scores), 4), np.float32)
        for i, points in enumerate(found.keypoints):
            cx, cy, side = self.framing.box(points[right], points[left], points[mouth])
            out[i] = (cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0)
        return out

    def detect(self, image: np.ndarray, gray: Optional[np.ndarray] = None) -> List[Box]:
        """Face boxes (x, y, w, h) in frame pixels and in the emotion model's framing (`framed`),
        clipped to the frame, largest first.

        image: the BGR (or BGRA, or grey) uint8 frame; colour gives the best results.
        gray: ignored (the Haar detector's shortcut; accepted so both detectors are called alike).
        """
        height, width = image.shape[:2]
        boxes: List[Box] = []
        for x0, y0, x1, y1 in self.framed(self.detect_all(image)):
            left, top = max(0, int(round(x0))), max(0, int(round(y0)))
            right, bottom = min(width, int(round(x1))), min(height, int(round(y1)))
            w, h = right - left, bottom - top
            if w > 0 and h > 0 and max(w, h) >= self.min_size:
                boxes.append((left, top, w, h))
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes
