"""Helpers for the kiosk tests: a test profile, the real kiosk in a subprocess or in this
process, HTTP calls, and test videos made with OpenCV."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEMO_VIDEO = str(ROOT / "edge" / "samples" / "demo_face.mp4")
DEMO_WAV = str(ROOT / "edge" / "samples" / "demo_speech.wav")
DESKTOP = ROOT / "firmware_configs" / "desktop.yaml"
SERVING = re.compile(r"serving (http://[^ ]+/) ")


def kiosk_profile(tmp_path: Path, name: str = "profile.yaml", **kiosk) -> Path:
    """desktop.yaml with outputs under tmp_path and a 5 s capture; `kiosk` overrides keys
    of the kiosk: section; `video_source=`/`audio_source=` set the profile's sources.
    The questionnaire is off unless asked for (questionnaire="phq8", the shipped default):
    a test that answers nothing still gets its result when the capture ends."""
    data = yaml.safe_load(DESKTOP.read_text())
    data["output"]["dir"] = str(tmp_path / "out")
    data["output"]["database"] = str(tmp_path / "out" / "sessions.sqlite")
    for key in ("video_source", "audio_source"):
        if key in kiosk:
            data[key.split("_")[0]]["source"] = kiosk.pop(key)
    data["kiosk"].update({"capture_seconds": 5, "result_seconds": 30, "questionnaire": "none"})
    data["kiosk"].update(kiosk)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def http(url: str, method: str = "GET", headers: Optional[Dict[str, str]] = None, timeout_s: float = 10.0):
    """(status, headers, parsed JSON or bytes) of one request; HTTP errors are returned too."""
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body, status, got = response.read(), response.status, response.headers
    except urllib.error.HTTPError as exc:
        body, status, got = exc.read(), exc.code, exc.headers
    if got.get("Content-Type", "").startswith("application/json"):
        return status, got, json.loads(body)
    return status, got, body


def post(base: str, action: str, body: Optional[Dict] = None, **kw):
    if body is None:
        return http(base + "api/" + action, "POST", {"X-Kiosk-Request": "1"}, **kw)
    request = urllib.request.Request(base + "api/" + action, method="POST", data=json.dumps(body).encode(),
                                     headers={"X-Kiosk-Request": "1", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=kw.get("timeout_s", 10.0)) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())


def answer_all(base: str, answers: List[int]) -> Dict:
    """Answer the PHQ-8 items in order, as the page does (each for the item on screen)."""
    reply = {}
    for item, value in enumerate(answers):
        status, _, reply = post(base, "answer", {"item": item, "value": value})
        assert status == 200 and reply["taken"], reply
    return reply["state"]


def answers_for(score: int) -> List[int]:
    """Eight answers 0..3 that add up to `score`."""
    out = [0] * 8
    for i in range(score):
        out[i % 8] += 1
    return out


def state(base: str) -> Dict:
    return http(base + "api/state")[2]


def wait_for(check, timeout_s: float, what: str, every_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def wait_phase(base: str, phase: str, timeout_s: float = 15.0) -> Dict:
    return wait_for(lambda: (lambda s: s if s["phase"] == phase else None)(state(base)), timeout_s,
                    f"phase {phase}")


class EventReader:
    """Reads /api/events in a thread; `.events` holds (monotonic time, state) pairs."""

    def __init__(self, url: str, headers: Optional[Dict[str, str]] = None):
        self.events: List = []
        self._response = urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._response:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    self.events.append((time.monotonic(), json.loads(line[6:])))
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._response.close()


class KioskProcess:
    """`python -m edge.apps.kiosk ... --port 0` in a subprocess; `.url` once it serves."""

    def __init__(self, *args: str, timeout_s: float = 20.0):
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "edge.apps.kiosk", *args], cwd=str(ROOT),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.url = None
        self.ready_s = None
        self.lines: List[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            found = SERVING.search(line)
            if found:
                self.url = found.group(1)
                self.ready_s = time.monotonic() - self.started
                break

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0):
        """(exit code, rest of stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout_s)
        return self.proc.returncode, "".join(self.lines) + out, err

    def __enter__(self) -> KioskProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@contextlib.contextmanager
def kiosk_in_process(profile: Path, video: Optional[str] = DEMO_VIDEO, audio: Optional[str] = DEMO_WAV,
                     token: Optional[str] = None, loopback_without_token: bool = True) -> Iterator:
    """The kiosk's own classes wired as `edge kiosk` wires them, on a free port: yields
    (base url, controller)."""
    from edge import Screener, ScreenerOptions, load_config
    from edge.apps.kiosk.controller import KioskController
    from edge.apps.kiosk.server import KioskServer

    config = load_config(str(profile))
    screener = Screener(ScreenerOptions(config.engine))
    kiosk = config.kiosk
    controller = KioskController(screener, kiosk, video, audio)
    server = KioskServer(controller, kiosk.host, 0, token if token is not None else kiosk.token,
                         loopback_without_token=loopback_without_token)
    controller.begin()
    server.start()
    try:
        yield server.url, controller
    finally:
        controller.close()
        server.close()
        screener.close()


def write_video(path: Path, frames: List[np.ndarray], fps: float = 30.0) -> str:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG/AVI here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return str(path)


def demo_frames(limit: int) -> List[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(DEMO_VIDEO)
    frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def write_silent_wav(path: Path, seconds: float, rate_hz: int = 16000) -> str:
    import wave

    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate_hz)
        f.writeframes(np.zeros(int(seconds * rate_hz), np.int16).tobytes())
    return str(path)


def stored_visit(tmp_path: Path, session_id: str) -> Optional[sqlite3.Row]:
    """The questionnaires row the kiosk stored for a session (profile from kiosk_profile)."""
    db = sqlite3.connect(str(tmp_path / "out" / "sessions.sqlite"))
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM questionnaires WHERE session_id = ?", (session_id,)).fetchone()
    finally:
        db.close()
