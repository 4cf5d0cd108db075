"""The `edge` command (also `python -m edge`). User errors print one line and exit 2;
`edge run` exits 130 when interrupted and 3 when its sources stalled (edge/apps/run.py)."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from edge import __version__
from edge.backends import BACKENDS
from edge.errors import EdgeError
from edge.models.detectors import DEFAULT_DETECTOR, FACE_DETECTORS


def _command(module: str):
    """The `run(args)` of edge.apps.<module>, imported only when that command runs (the
    others' imports, OpenCV and the interpreters among them, cost start-up time and memory)."""
    def call(args) -> int:
        import importlib

        return importlib.import_module(f"edge.apps.{module}").run(args)
    return call


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line, like every other user error (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="edge", description="On-device depression-screening aid (not a diagnosis).")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    common = OneLineParser(add_help=False)
    common.add_argument("--models-dir", help="folder with the model folders "
                        "(default: $EDGE_MODELS_DIR, else the models shipped in the package)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("face", parents=[common], help="find faces in one image and print their emotion probabilities")
    p.add_argument("image")
    p.add_argument("--backend", default="tflite", choices=BACKENDS)
    p.add_argument("--precision", default="int8", choices=("fp32", "int8"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--detector", default=DEFAULT_DETECTOR, choices=FACE_DETECTORS,
                   help=f"face detector: the BlazeFace DNN or OpenCV's Haar cascade (default: {DEFAULT_DETECTOR}, "
                        "as in the profiles)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_command("face"))

    p = sub.add_parser("models", parents=[common], help="list the shipped models and their manifest figures")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("models"))

    p = sub.add_parser("run", parents=[common], help="screen a session from camera/microphone or files")
    p.add_argument("--config", help="device profile YAML (e.g. firmware_configs/desktop.yaml); "
                   "default: the built-in defaults")
    video = p.add_mutually_exclusive_group()
    video.add_argument("--video", metavar="FILE", help="a video file (played at its own frame rate)")
    video.add_argument("--camera", type=int, metavar="N", help="camera index (V4L2)")
    video.add_argument("--gst", metavar="PIPELINE", help="GStreamer pipeline ending in appsink (Jetson CSI)")
    video.add_argument("--picamera2", action="store_true", help="the Raspberry Pi camera (picamera2)")
    audio = p.add_mutually_exclusive_group()
    audio.add_argument("--audio", metavar="FILE", help="a PCM WAV file")
    audio.add_argument("--mic", nargs="?", const="default", metavar="INDEX",
                       help="microphone (pyaudio); the default one without INDEX")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--fast", action="store_true", help="read files as fast as possible (not in real time)")
    p.add_argument("--detector", choices=FACE_DETECTORS, help="face detector (overrides the config's face.detector)")
    p.add_argument("--json", action="store_true", help="JSON lines: one per tick, then the summary")
    p.add_argument("--save-features", metavar="FILE", help="write the session's tick features (.npz)")
    p.set_defaults(func=_command("run"))

    p = sub.add_parser("kiosk", parents=[common], help="the screening kiosk: a local page, session after session")
    p.add_argument("--config", help="device profile YAML (its kiosk: section); default: the built-in defaults")
    p.add_argument("--port", type=int, metavar="N", help="TCP port (default: the profile's kiosk.port; 0: a free one)")
    p.add_argument("--video", metavar="FILE", help="replay a video file as if live, each session from the start")
    p.add_argument("--audio", metavar="FILE", help="replay a PCM WAV file as if live")
    p.set_defaults(func=_command("kiosk"))

    p = sub.add_parser("nightly", parents=[common], help="the gateway's nightly job over the day's recordings")
    p.add_argument("--config", required=True, help="device profile YAML (e.g. firmware_configs/wearable_gateway.yaml)")
    p.add_argument("--inbox", metavar="DIR", help="recordings folder (overrides nightly.inbox)")
    p.add_argument("--db", metavar="FILE", help="results database (overrides output.database)")
    p.add_argument("--out", metavar="DIR", help="folder for summaries and reports (overrides the profile)")
    p.add_argument("--mqtt", metavar="URL", help="broker for this run, mqtt://HOST:PORT (overrides mqtt.host/port)")
    p.set_defaults(func=_command("nightly"))

    p = sub.add_parser("doctor", parents=[common], help="what this device has: backends, threads, OpenCV, versions")
    p.add_argument("--config", metavar="PROFILE.yaml", help="device profile: which model file each of its models "
                   "would load on this CPU (default: the built-in defaults)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("doctor"))

    p = sub.add_parser("config", help="device profiles: `edge config check FILE...` validates without running")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    p = config_sub.add_parser("check", parents=[common], help="validate profiles (one line per error, exit 2)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=_command("config_check"))

    from edge.apps.sessions import add_arguments as sessions_arguments

    p = sub.add_parser("sessions", help="stored sessions: `list`, or `export --csv` for a clinic")
    sessions_arguments(p)
    p.set_defaults(func=_command("sessions"))
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
    except BrokenPipeError:  # `edge sessions list | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
