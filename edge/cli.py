"""The `edge` command (also `python -m edge`). User errors print one line and exit 2;
Ctrl-C prints one line and exits 130, during start-up too; `edge run` exits 3 when its
sources stalled (edge/apps/run.py).

Module level imports next to nothing: what the parser needs is imported in `main`, inside
its KeyboardInterrupt handler, so a Ctrl-C while Python loads modules is one line, not a
20-line traceback from inside the standard library."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


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
    from edge import __version__
    from edge.backends import BACKENDS
    from edge.models.detectors import DEFAULT_DETECTOR, FACE_DETECTORS

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
    p.add_argument("--config", metavar="PROFILE.yaml", help="device profile: its video.max_pixels bounds the "
                   "image size decoded (default: the built-in defaults)")
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
    audio.add_argument("--audio", metavar="FILE", help="an audio file (WAV, FLAC, Ogg Vorbis/Opus)")
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
    from edge.apps.kiosk import add_source_arguments

    add_source_arguments(p)  # --video FILE | --camera [N], --audio FILE | --mic [N] (edge/apps/kiosk)
    p.set_defaults(func=_command("kiosk"))

    p = sub.add_parser("nightly", parents=[common], help="the gateway's nightly job over the day's recordings")
    p.add_argument("--config", required=True, help="device profile YAML (e.g. firmware_configs/wearable_gateway.yaml)")
    p.add_argument("--inbox", metavar="DIR", help="recordings folder (overrides nightly.inbox)")
    p.add_argument("--db", metavar="FILE", help="results database (overrides output.database)")
    p.add_argument("--out", metavar="DIR", help="folder for summaries and reports (overrides the profile)")
    p.add_argument("--mqtt", metavar="URL", help="broker for this run, mqtt://HOST:PORT (overrides mqtt.host/port)")
    p.add_argument("--night", metavar="YYYY-MM-DD", help="the night to report (a backfill or replay; default: today)")
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
    p.add_argument("--template", action="store_true", help="checked away from its device: do not look for the "
                   "files the profile references (MQTT CA and password, source files)")
    p.set_defaults(func=_command("config_check"))

    from edge.apps.update import add_arguments as update_arguments

    p = sub.add_parser("update", help="install a signed model release (self-tested, switched atomically), "
                       "or roll back")
    update_arguments(p)
    p.set_defaults(func=_command("update"))

    from edge.apps.sessions import add_arguments as sessions_arguments

    p = sub.add_parser("sessions", help="stored sessions: `list`, or `export --csv` for a clinic")
    sessions_arguments(p)
    p.set_defaults(func=_command("sessions"))

    from edge.apps.fleet import add_arguments as fleet_arguments

    p = sub.add_parser("fleet", help="the care team's service: `serve` (MQTT in, database, dashboard), `user add`")
    fleet_arguments(p, common)
    p.set_defaults(func=_command("fleet"))
    return parser


_SIGINT_SEEN = []


def _on_sigint(signum, frame) -> None:
    # Recorded as well as raised: a library that turns the KeyboardInterrupt into another
    # error (numpy's import makes it an ImportError) is then still reported as Ctrl-C.
    _SIGINT_SEEN.append(signum)
    raise KeyboardInterrupt


def _interrupted(real_cli: bool) -> int:
    if real_cli:  # a second Ctrl-C while we leave would print a traceback
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("edge: interrupted", file=sys.stderr)
    return 130


def main(argv: Optional[List[str]] = None) -> int:
    real_cli = argv is None  # tests call main([...]) in-process: leave their handlers alone
    try:
        if real_cli:
            import signal

            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                signal.signal(signal.SIGINT, _on_sigint)
        from edge.errors import EdgeError

        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        return _interrupted(real_cli)
    except Exception:
        if _SIGINT_SEEN:
            return _interrupted(real_cli)
        raise
    try:
        return args.func(args)
    except EdgeError as exc:
        if _SIGINT_SEEN:  # a loader that wrapped the interrupt in its own error
            return _interrupted(real_cli)
        print(f"edge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(real_cli)
    except BrokenPipeError:  # `edge sessions list | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        if _SIGINT_SEEN:
            return _interrupted(real_cli)
        raise
