"""`edge kiosk`: a local screening page on the device (see app.py for the command,
controller.py for the state machine, server.py for HTTP, static/ for the page).

    edge kiosk --config firmware_configs/desktop.yaml \
        --video edge/samples/demo_face.mp4 --audio edge/samples/demo_speech.wav
"""
from __future__ import annotations


def _index(text: str) -> str:
    import argparse

    if text != "default" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"a device index is a whole number, got {text!r}")
    return text


def add_source_arguments(p) -> None:
    """The source options of `edge kiosk` (each overrides that stream of the profile)."""
    video = p.add_mutually_exclusive_group()
    video.add_argument("--video", metavar="FILE", help="replay a video file as if live, each session from the start")
    video.add_argument("--camera", nargs="?", const="0", metavar="N", type=_index,
                       help="camera N (default 0) instead of the profile's video.source")
    video.add_argument("--no-video", action="store_true", help="no camera (the profile's video.source ignored)")
    audio = p.add_mutually_exclusive_group()
    audio.add_argument("--audio", metavar="FILE", help="replay a PCM WAV file as if live")
    audio.add_argument("--mic", nargs="?", const="default", metavar="N", type=_index,
                       help="microphone N (default: the default input) instead of the profile's audio.source")
    audio.add_argument("--no-audio", action="store_true", help="no microphone (the profile's audio.source ignored)")


def run(args) -> int:
    """The `edge kiosk` command (edge.apps.kiosk.app.run)."""
    from edge.apps.kiosk.app import run as run_kiosk

    return run_kiosk(args)
