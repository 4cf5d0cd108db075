"""`edge face IMAGE`: faces and their emotion probabilities in one image."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

from edge import SCREENING_DISCLAIMER
from edge.capture.image_file import MAX_IMAGE_PIXELS, check_image_file
from edge.errors import EdgeError, first_line
from edge.features.face import import_cv2, to_gray
from edge.models.detectors import open_face_detector
from edge.native_output import native_stderr_silenced, set_opencv_log_level
from edge.precision import load_emotion
from edge.telemetry import StageTimer


def read_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS):
    """BGR uint8 image; EdgeError when missing, unreadable, not an image, or larger than
    `max_pixels` (checked from the header, before decoding)."""
    if not path.is_file():
        raise EdgeError(f"image {path} does not exist")
    # A header claiming 30000x30000 made OpenCV take 5.2 GB; a damaged PNG chunk 4 GB.
    check_image_file(path, max_pixels)
    cv2 = import_cv2()
    # OpenCV prints its own decoder complaint; ours below says what to do instead.
    previous = set_opencv_log_level(cv2, "SILENT")
    try:
        with native_stderr_silenced():  # libjpeg/libpng print their own warnings ("Premature end...")
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own limits (OPENCV_IO_MAX_IMAGE_PIXELS), a decoder's refusal
        raise EdgeError(f"image {path} cannot be decoded ({first_line(exc)[-120:]}); give a JPEG or PNG file") from None
    finally:
        if previous is not None:
            set_opencv_log_level(cv2, previous)
    if image is None:
        raise EdgeError(f"image {path} cannot be decoded (corrupt or not an image); give a JPEG or PNG file")
    return image


def analyse_image(path: Path, backend: str, precision: str, models_dir=None, threads: int = 1,
                  detector_name: str = "haar", max_pixels: int = MAX_IMAGE_PIXELS) -> Dict:
    timer = StageTimer()
    import_cv2()  # importing OpenCV (about 0.1 s) is start-up, not decoding
    with timer.stage("decode_ms"):
        image = read_image(path, max_pixels)
    with timer.stage("load_model_ms"):
        classifier = load_emotion(backend, precision, models_dir, threads)
        detector = open_face_detector(detector_name, models_dir, threads)
    with timer.stage("detect_ms"):
        gray = to_gray(image)
        boxes = detector.detect(image, gray)
    with timer.stage("preprocess_ms"):
        faces = classifier.crops(gray, boxes)
    with timer.stage("infer_ms"):
        probs = classifier.infer(faces)
    stages = {name: round(s["total_ms"], 3) for name, s in timer.summary().items()}
    return {
        "image": str(path),
        "image_size": [int(image.shape[1]), int(image.shape[0])],
        "model": {"name": classifier.manifest.name, "file": classifier.file["file"],
                  "backend": classifier.backend.description},
        "detector": detector.name,
        # What made each reading: the detector's framing, the crop rule, the views averaged.
        "framing": getattr(detector, "framing_rule", None),
        "crop": classifier.crop_rule,
        "averaging": classifier.averaging,
        "faces": [
            {"box": [int(v) for v in box],
             "emotions": {label: round(float(p), 4) for label, p in zip(classifier.labels, row)},
             "top": classifier.labels[int(row.argmax())]}
            for box, row in zip(boxes, probs)
        ],
        "latency_ms": stages,
        "notice": SCREENING_DISCLAIMER,
    }


def format_text(result: Dict) -> str:
    lines = [f"{result['image']} ({result['image_size'][0]}x{result['image_size'][1]}), "
             f"{result['model']['file']} on {result['model']['backend']}, {result['detector']} detector "
             f"(framing {result['framing']}, crop {result['crop']}, averaging {result['averaging']})"]
    if not result["faces"]:
        lines.append("no face found")
    for i, face in enumerate(result["faces"]):
        x, y, w, h = face["box"]
        ranked = sorted(face["emotions"].items(), key=lambda kv: -kv[1])
        lines.append(f"face {i}: box x={x} y={y} w={w} h={h}  top: {face['top']}")
        lines.append("    " + "  ".join(f"{label} {p:.3f}" for label, p in ranked))
    lines.append("latency: " + ", ".join(f"{k[:-3]} {v:.2f} ms" for k, v in result["latency_ms"].items()))
    lines.append(result["notice"])
    return "\n".join(lines)


def run(args) -> int:
    max_pixels = MAX_IMAGE_PIXELS
    if getattr(args, "config", None):
        from edge import load_config

        max_pixels = load_config(args.config).video.max_pixels
    result = analyse_image(Path(args.image), args.backend, args.precision, args.models_dir, args.threads,
                           getattr(args, "detector", "haar"), max_pixels)
    print(json.dumps(result, indent=2) if args.json else format_text(result))
    return 0
