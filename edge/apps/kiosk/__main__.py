"""`python -m edge.apps.kiosk ...`: the same as `edge kiosk ...` (same options)."""
from __future__ import annotations

import argparse
import sys

from edge import EdgeError
from edge.apps.kiosk import add_source_arguments, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge kiosk", description="the screening kiosk's local page")
    p.add_argument("--models-dir", help="folder with the model folders (default: the models shipped in the package)")
    p.add_argument("--config", help="device profile YAML (its kiosk: section); default: the built-in defaults")
    p.add_argument("--port", type=int, metavar="N", help="TCP port (default: the profile's kiosk.port; 0: a free one)")
    add_source_arguments(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except EdgeError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
