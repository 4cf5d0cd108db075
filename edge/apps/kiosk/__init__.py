"""`edge kiosk`: a local screening page on the device (see app.py for the command,
controller.py for the state machine, server.py for HTTP, static/ for the page).

    edge kiosk --config firmware_configs/desktop.yaml \
        --video edge/samples/demo_face.mp4 --audio edge/samples/demo_speech.wav
"""
from __future__ import annotations


def run(args) -> int:
    """The `edge kiosk` command (edge.apps.kiosk.app.run)."""
    from edge.apps.kiosk.app import run as run_kiosk

    return run_kiosk(args)
