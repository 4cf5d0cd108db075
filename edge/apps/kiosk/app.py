"""`edge kiosk`: the screening kiosk, one process, session after session.

Start-up checks everything a user can get wrong before anything is served, each a
one-line error and exit code 2: the profile (unknown keys, bad values), a non-loopback
host without a token, the page's files, the output folders, the source files named on
the command line, the port (in use), and the model files (sha256 against their
manifests, when the Screener loads them). Then the page is served and the models are
ready at the same moment. A camera or microphone that is missing is not an exit: the
page says so and the kiosk retries.

SIGTERM or SIGINT (Ctrl-C): a running session is stopped, kept as cut short
("interrupted") and saved, then the process exits 0.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Tuple

from edge import EdgeError


def choose_sources(args, config) -> Tuple[Optional[str], Optional[str]]:
    """Each stream from the profile (video.source, audio.source) unless the command line
    names it: --video FILE or --camera [N] (camera:N), --audio FILE or --mic [N] (mic, mic:N),
    --no-video / --no-audio (none). One stream named keeps the other's profile source."""
    video, audio = config.video.source, config.audio.source
    if getattr(args, "video", None) is not None:
        video = args.video
    elif getattr(args, "camera", None) is not None:
        video = f"camera:{args.camera}"
    elif getattr(args, "no_video", False):
        video = None
    if getattr(args, "audio", None) is not None:
        audio = args.audio
    elif getattr(args, "mic", None) is not None:
        audio = "mic" if args.mic == "default" else f"mic:{args.mic}"
    elif getattr(args, "no_audio", False):
        audio = None
    return video, audio


def describe_sources(video: Optional[str], audio: Optional[str]) -> str:
    """The start-up line's words for the sources in use."""
    def one(spec: Optional[str], device: str, default: str) -> str:
        if spec is None:
            return f"no {device}"
        if spec == "mic":
            return default
        if spec.startswith(("camera:", "mic:")):
            return f"{device} {spec.split(':', 1)[1]}"
        if spec.startswith(("gst:", "picamera2")):
            return f"{device} {spec}"
        return f"the recording {spec} (replayed as if live)"

    return f"camera: {one(video, 'camera', 'camera 0')}; microphone: {one(audio, 'microphone', 'the default input')}"


def run(args) -> int:
    """args: config, port (None: the profile's), video, audio, models_dir; static_dir
    (optional, the page's folder; default: the one shipped in the package)."""
    started = time.monotonic()
    from edge import Screener, ScreenerOptions, SourceError, check_outputs, load_config, probe_sources
    from edge.apps.kiosk.controller import KioskController
    from edge.apps.kiosk.server import STATIC_DIR, KioskServer, load_page

    profile = load_config(args.config)
    options = ScreenerOptions(profile.engine, getattr(args, "models_dir", None))
    config = options.config
    kiosk = profile.kiosk
    port = kiosk.port if getattr(args, "port", None) is None else int(args.port)
    if not 0 <= port <= 65535:
        raise EdgeError(f"--port must be a TCP port (0..65535; 0 picks a free one), got {port}")
    page = load_page(Path(getattr(args, "static_dir", None) or STATIC_DIR))
    check_outputs(config.output, None)
    video, audio = choose_sources(args, config)
    # A file named on the command line must be there: one line now, before the models load.
    named = probe_sources(config, getattr(args, "video", None), getattr(args, "audio", None))
    for failed in named.failed:
        raise SourceError(failed.stream, failed.reason)

    reporter = None
    if kiosk.report:  # each saved session's summary (no media) to the care team over MQTT (edge.reporting)
        from edge import SessionReporter, broker_settings, check_topic_part

        check_topic_part("kiosk.site_id", kiosk.site_id)
        reporter = SessionReporter(broker_settings(profile.mqtt), profile.mqtt.queue_dir,
                                   profile.mqtt.topic_prefix, kiosk.site_id)
    stop = threading.Event()
    received = []

    def on_signal(signum, frame) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = None
    controller = None
    try:
        # Binds now: a port in use fails here, before the models load.
        server = KioskServer(None, kiosk.host, port, kiosk.token, page, kiosk.server_names,
                             loopback_without_token=kiosk.loopback_without_token)
        screener = Screener(options)  # models checked (sha256) and loaded
        controller = KioskController(screener, kiosk, video, audio)
        controller.on_saved = reporter.publish if reporter is not None else None
        server.controller = controller
        controller.begin()
        server.start()
        ready_s = time.monotonic() - started
        weights = " (demo weights, not for screening)" if screener.demo_weights else ""
        print(f"edge kiosk: {describe_sources(video, audio)}", flush=True)
        print(f"edge kiosk: serving {server.url} - models ready{weights}, page served, {ready_s:.2f} s after start; "
              "SIGTERM or Ctrl-C stops it", flush=True)
        while not stop.wait(0.5):
            pass
        name = signal.Signals(received[0]).name if received else "stop"
        controller.close(f"interrupted: the kiosk was stopped ({name})")
        print(f"edge kiosk: stopped ({name}) after {controller.sessions_run} session(s)", flush=True)
    finally:
        if controller is not None and not controller.closing:
            controller.close()
        if server is not None:
            server.close()
        if reporter is not None:
            reporter.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stdout.flush()
    return 0
