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
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import platform
import shutil
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

from edge.errors import EdgeError
from edge.features.face import PIXEL_OFFSET, PIXEL_SCALE
from edge.models.blazeface import ANCHOR_OPTIONS, DECODE_OPTIONS, INPUT_SIZE, MODEL_NAME, ssd_anchors
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
        "metrics": {"note": "no accuracy or FLOPs measured here; see the model card for Google's figures"},
        "built_with": {"python": platform.python_version(), "ai_edge_litert": package_version("ai-edge-litert")},
    }
    entry = file_entry(folder / SHIPPED_FILE, "tflite", "fp32")
    return write_manifest(folder, manifest, [entry])


def cmd_import(args: argparse.Namespace) -> None:
    path = build(args.wheel, args.models_dir)
    print(f"wrote {path}")


def build_shipped(args: argparse.Namespace) -> None:
    """`build-all`: rebuild blazeface only when a mediapipe wheel was given (else keep the shipped one)."""
    wheel = getattr(args, "mediapipe_wheel", None)
    if wheel is None:
        print("blazeface: no --mediapipe-wheel given; keeping the shipped file")
        return
    print(f"wrote {build(wheel, args.models_dir)}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-blazeface", help="ship MediaPipe's BlazeFace short-range detector from its wheel")
    p.add_argument("--wheel", type=Path, required=True, help="mediapipe-0.10.21-*.whl (downloaded, not installed)")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.set_defaults(func=cmd_import)
