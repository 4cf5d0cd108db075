"""Real parts for the nightly tests: a Mosquitto broker, espeak-ng speech, profiles, an MQTT listener."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Dict, List, Optional

import pytest

TEXT = ("I slept quite badly last night and I did not feel like going out today. "
        "I talked to my sister on the phone for a while, and then I watched some television.")
# espeak-ng voice, rate (words/min), pitch (0-99). The "steady" voices give the demo-weight
# LSTM-MoE estimates within about 1 PHQ-8 point of each other (4.3-5.1 here); the "drift"
# voice gives about 9-10 points more. The drift is driven through the audio, but it says
# nothing clinical: the demo weights were trained on synthetic data.
STEADY_VOICES = (("en-us", 130, 45), ("en-us", 140, 40), ("en-us", 150, 35), ("en+m3", 140, 40))
DRIFT_VOICE = ("en+f3", 170, 70)


def need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (apt-get install {program}; `make test` does it as root)")


def speak(out: Path, voice, text: str = TEXT) -> Path:
    """A 16 kHz mono 16-bit WAV of `text` (espeak-ng, then sox)."""
    need("espeak-ng", "sox")
    raw = out.with_suffix(".raw.wav")
    name, rate, pitch = voice
    subprocess.run(["espeak-ng", "-v", name, "-s", str(rate), "-p", str(pitch), "-w", str(raw), text], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
    raw.unlink()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real Mosquitto on 127.0.0.1:port (config file: listener, anonymous, no persistence)."""

    def __init__(self, folder: Path, port: Optional[int] = None):
        need("mosquitto")
        self.port = port or free_port()
        self.conf = folder / f"mosquitto-{self.port}.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = None

    def start(self) -> Broker:
        for _ in range(3):
            # DEVNULL, not a pipe nobody reads: a long test's connection log would fill it and stall the broker.
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
            time.sleep(0.3)  # the port may still be in TIME_WAIT from the last broker
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # a clean stop: a persistent broker writes its file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Listener:
    """A paho 2.x subscriber that records every message (topic, payload, qos, retain)."""

    def __init__(self, port: int, client_id: str, topic: str = "edge/#", clean: bool = True):
        import paho.mqtt.client as mqtt

        self.messages: List[Dict] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()
        self.client.on_connect = lambda client, *a, **k: client.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, client, userdata, msg) -> None:
        self.messages.append({"topic": msg.topic, "payload": json.loads(msg.payload.decode()), "qos": msg.qos,
                              "retain": bool(msg.retain)})

    def wait_for(self, count: int, timeout_s: float = 10.0) -> List[Dict]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # anything more that was going to arrive
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_profile(tmp: Path, gateway: str = "gw-test", mqtt_port: Optional[int] = None, **nightly) -> Path:
    import yaml

    settings = {"gateway_id": gateway, "inbox": str(tmp / "inbox"), "quarantine": str(tmp / "quarantine"),
                "reports": str(tmp / "reports"), "stable_seconds": 0, "baseline": "first_days",
                "baseline_days": 14, "flag_margin": 3.0, "flag_days": 3}
    settings.update(nightly)
    profile = {
        "profile": "wearable_gateway", "threads": 1, "video": {"source": None}, "audio": {"source": None},
        "models": {"emotion": {"backend": "tflite", "precision": "fp32"},
                   "severity": {"backend": "tflite", "precision": "fp32"}},
        "output": {"dir": str(tmp / "out"), "database": str(tmp / "db" / "trends.sqlite")},
        "nightly": settings,
        "mqtt": {"enabled": mqtt_port is not None, "host": "127.0.0.1", "port": mqtt_port or 1883,
                 "queue_dir": str(tmp / "mqtt-queue"), "timeout_s": 3},
    }
    (tmp / "inbox").mkdir(exist_ok=True)
    path = tmp / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def nightly(profile: Path, **flags) -> int:
    from edge.apps.nightly.job import run

    args = argparse.Namespace(config=str(profile), inbox=None, db=None, out=None, mqtt=None)
    for key, value in flags.items():
        setattr(args, key, value)
    return run(args)


def drop(inbox: Path, person: str, day: date, wav: Path, hour: int = 8, suffix: str = "") -> Path:
    """Put a copy of `wav` in the inbox as a recording of `person` made on `day`."""
    folder = inbox / person
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{day.strftime('%Y%m%d')}T{hour:02d}0000{suffix}.wav"
    shutil.copyfile(str(wav), str(target))
    return target


def month(days: int = 30) -> List[date]:
    """The last `days` calendar days up to yesterday (the nightly job's 'night' is today)."""
    today = date.today()
    return [today - timedelta(days=days - k) for k in range(days)]


def schema(name: str) -> Dict:
    from edge import schema_path

    return json.loads(schema_path(name).read_text())


def pending_ids(queue_dir: Path) -> List[str]:
    import sqlite3

    db = sqlite3.connect(str(queue_dir / "outbox.sqlite"))
    try:
        return [r[0] for r in db.execute("SELECT message_id FROM outbox WHERE sent_utc IS NULL ORDER BY seq")]
    finally:
        db.close()


def env_with_repo() -> Dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
