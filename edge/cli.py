"""The `edge` command (also `python -m edge`). User errors print one line and exit 2."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from edge import __version__
from edge.backends import BACKENDS
from edge.errors import EdgeError


def _models(args) -> int:
    from edge.apps.models import run

    return run(args)


def _face(args) -> int:
    from edge.apps.face import run

    return run(args)


def _doctor(args) -> int:
    from edge.apps.doctor import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="On-device depression-screening aid (not a diagnosis).")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", help="folder with the model folders "
                        "(default: $EDGE_MODELS_DIR, else the models shipped in the package)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("face", parents=[common], help="find faces in one image and print their emotion probabilities")
    p.add_argument("image")
    p.add_argument("--backend", default="tflite", help=f"one of: {', '.join(BACKENDS)}")
    p.add_argument("--precision", default="int8", choices=("fp32", "int8"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_face)

    p = sub.add_parser("models", parents=[common], help="list the shipped models and their manifest figures")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_models)

    p = sub.add_parser("doctor", parents=[common], help="what this device has: backends, threads, OpenCV, versions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_doctor)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgeError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
