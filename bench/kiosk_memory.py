"""Measure the kiosk: memory over back-to-back sessions, start-up, result latency, preview cost.

    python bench/kiosk_memory.py [--sessions 50] [--starts 3] [--out kiosk.json]

Runs the real `edge kiosk` (python -m edge.apps.kiosk) in a subprocess, fed from the
bundled 5 s sample replayed in real time (as the kiosk always does), and drives it over
HTTP the way the page does (server-sent events, the MJPEG preview, Start, Done):

- start to ready: from process start to the page served with the models loaded
  (GET / and /api/state answered), median of --starts fresh processes; target < 3 s;
- RSS (VmRSS of the kiosk process) after each session; the growth from after the first
  session to after the last; target < 5 MB over 50 sessions;
- result latency: from the last tick of the capture to the result state arriving at an
  event-stream client (what the page shows), and the server's own part; target < 1 s;
- preview cost at 10 fps: CPU seconds the kiosk spends encoding and sending the preview
  per second of capture, counted inside the process (thread CPU time) and, as a check,
  the process's CPU per session with and without a preview viewer; target <= 10 % of
  one core.

Takes about 6 s a session (50 sessions: about 5 minutes). Prints one JSON document.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
VIDEO = str(ROOT / "edge" / "samples" / "demo_face.mp4")
AUDIO = str(ROOT / "edge" / "samples" / "demo_speech.wav")
SERVING = re.compile(r"serving (http://[^ ]+/) ")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_profile(folder: Path) -> Path:
    import yaml

    data = yaml.safe_load((ROOT / "firmware_configs" / "desktop.yaml").read_text())
    data["output"]["dir"] = str(folder / "out")
    data["output"]["database"] = str(folder / "out" / "sessions.sqlite")
    data["kiosk"].update({"capture_seconds": 5, "result_seconds": 600, "preview": True, "preview_fps": 10})
    path = folder / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Kiosk:
    def __init__(self, profile: Path):
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "edge.apps.kiosk", "--config", str(profile), "--port",
                                      "0", "--video", VIDEO, "--audio", AUDIO], cwd=str(ROOT),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.url = None
        for line in self.proc.stdout:
            found = SERVING.search(line)
            if found:
                self.url = found.group(1)
                break
        if self.url is None:
            raise SystemExit(f"the kiosk did not start (exit {self.proc.wait()})")
        get(self.url)
        get(self.url + "api/state")
        self.ready_s = time.monotonic() - self.started

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(CLK_TCK)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
    return json.loads(body) if response.headers.get("Content-Type", "").startswith("application/json") else body


def post(url: str, body: Optional[Dict] = None) -> Dict:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(url, method="POST", data=data,
                                     headers={"X-Kiosk-Request": "1", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Events:
    """An event-stream client: the time each new result state arrived, by session id."""

    def __init__(self, url: str):
        self.results: Dict[str, Dict] = {}
        self._response = urllib.request.urlopen(url + "api/events", timeout=30)
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self._response:
                if not raw.startswith(b"data: "):
                    continue
                state = json.loads(raw[6:])
                if state["phase"] == "result" and state["session_id"] not in self.results:
                    with self._arrived:
                        self.results[state["session_id"]] = {"at_ms": time.time() * 1000.0, "state": state}
                        self._arrived.notify_all()
        except (OSError, ValueError):
            pass

    def wait_result(self, session_id: str, timeout_s: float = 30.0) -> Dict:
        with self._arrived:
            if not self._arrived.wait_for(lambda: session_id in self.results, timeout_s):
                raise SystemExit(f"no result for session {session_id} after {timeout_s} s")
            return self.results[session_id]


def watch_preview(url: str, stop: threading.Event) -> None:
    """A page's <img> on the MJPEG stream: read it to the end of the session."""
    try:
        with urllib.request.urlopen(url + "preview.mjpg", timeout=10) as response:
            while not stop.is_set() and response.read1(65536):
                pass
    except OSError:
        pass


def one_session(kiosk: Kiosk, events: Events, preview: bool) -> Dict:
    cpu_before = kiosk.cpu_s()
    reply = post(kiosk.url + "api/start")
    session_id = reply["state"]["session_id"]
    if reply["state"]["kiosk"].get("items"):  # the PHQ-8, answered during the capture as a visitor does
        for item in range(reply["state"]["kiosk"]["items"]):
            post(kiosk.url + "api/answer", {"item": item, "value": item % 4})
    stop = threading.Event()
    viewer = None
    if preview:
        viewer = threading.Thread(target=watch_preview, args=(kiosk.url, stop), daemon=True)
        viewer.start()
    arrived = events.wait_result(session_id)
    stop.set()
    if viewer is not None:
        viewer.join(5)
    state = arrived["state"]
    post(kiosk.url + "api/reset")
    time.sleep(0.3)  # between visitors: the kiosk has handed the session's memory back
    return {"session_id": session_id, "complete": state["result"]["complete"],
            "result_latency_ms": round(arrived["at_ms"] - state["capture_ended_ms"], 1),
            "result_ready_ms": state["result"]["result_ready_ms"], "cpu_s": kiosk.cpu_s() - cpu_before,
            "rss_mb": round(kiosk.rss_mb(), 2)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--starts", type=int, default=3, help="fresh processes timed from start to ready")
    parser.add_argument("--cpu-sessions", type=int, default=3, help="sessions each with and without a viewer")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        profile = write_profile(Path(tmp))
        starts = []
        for _ in range(args.starts):
            kiosk = Kiosk(profile)
            starts.append(kiosk.ready_s)
            kiosk.stop()
        kiosk = Kiosk(profile)
        events = Events(kiosk.url)
        sessions = []
        for index in range(args.sessions):
            sessions.append(one_session(kiosk, events, preview=True))
            print(f"session {index + 1}/{args.sessions}: RSS {sessions[-1]['rss_mb']:.1f} MB, result "
                  f"{sessions[-1]['result_latency_ms']:.0f} ms", file=sys.stderr, flush=True)
        stats_before = get(kiosk.url + "api/stats")
        with_viewer = [one_session(kiosk, events, preview=True) for _ in range(args.cpu_sessions)]
        stats_after = get(kiosk.url + "api/stats")
        without_viewer = [one_session(kiosk, events, preview=False) for _ in range(args.cpu_sessions)]
        code = kiosk.stop()
    rss = [s["rss_mb"] for s in sessions]
    latencies = [s["result_latency_ms"] for s in sessions]
    capture_s = 5.0 * args.cpu_sessions
    preview_cpu = stats_after["preview"]["cpu_s"] - stats_before["preview"]["cpu_s"]
    frames = stats_after["preview"]["frames_encoded"] - stats_before["preview"]["frames_encoded"]
    cpu_with = statistics.median(s["cpu_s"] for s in with_viewer)
    cpu_without = statistics.median(s["cpu_s"] for s in without_viewer)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "start_to_ready_s": {"median": round(statistics.median(starts), 3), "all": [round(s, 3) for s in starts],
                             "target_s": 3.0},
        "sessions": len(sessions), "all_complete": all(s["complete"] for s in sessions),
        "rss_mb": {"after_first": rss[0], "after_last": rss[-1], "growth_after_first": round(rss[-1] - rss[0], 2),
                   "max_after_first": round(max(rss) - rss[0], 2), "series": rss, "target_growth_mb": 5.0},
        "result_latency_ms": {"median": statistics.median(latencies), "max": max(latencies),
                              "server_ready_median": statistics.median(s["result_ready_ms"] for s in sessions),
                              "target_ms": 1000},
        "preview": {"fps": 10, "width": 320, "frames_encoded": frames,
                    "frames_per_capture_s": round(frames / capture_s, 2),
                    "cpu_share_of_one_core_inside": round(preview_cpu / capture_s, 4),
                    "process_cpu_s_per_session_with_viewer": round(cpu_with, 3),
                    "process_cpu_s_per_session_without_viewer": round(cpu_without, 3),
                    "cpu_share_of_one_core_process_diff": round((cpu_with - cpu_without) / 5.0, 4),
                    "target_share": 0.10},
        "kiosk_exit_code": code,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
