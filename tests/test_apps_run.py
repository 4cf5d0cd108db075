"""`edge run` end to end on the bundled sample (files, --fast): outputs, errors, interruption."""
from __future__ import annotations

import json
import os
import sqlite3
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.cli import main
from edge.config import parse_config
from edge.engine import Screener, ScreenerOptions
from edge.engine.models import emotion_flops, severity_flops
from edge.engine.outputs import SessionWriter
from edge.features.tick import TICK_FEATURE_COUNT, read_session_features
from edge.manifest import load_manifest

ROOT = Path(__file__).resolve().parent.parent
DEMO_VIDEO = str(ROOT / "edge" / "samples" / "demo_face.mp4")
DEMO_WAV = str(ROOT / "edge" / "samples" / "demo_speech.wav")
DESKTOP = ROOT / "firmware_configs" / "desktop.yaml"


def run_session(config, video, audio, save_features=None, on_tick=None, screener=None, **kw):
    """What `edge run` does, from Python: the session's summary dict (saved as configured)."""
    screener = screener or Screener(ScreenerOptions(config))
    run = screener.run(video, audio, on_tick=on_tick, **kw)
    writer = SessionWriter(config.output, run.session_id, save_features, config.models.severity.context)
    try:
        for tick in run:
            writer.tick(tick)
    finally:
        writer.close(run.result)
    return run.result.to_dict()


def profile(tmp_path, **changes) -> Path:
    data = yaml.safe_load(DESKTOP.read_text())
    data["output"]["dir"] = str(tmp_path / "out")
    data["output"]["database"] = str(tmp_path / "out" / "sessions.sqlite")
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_edge_run_on_the_demo_sample(tmp_path, capsys):
    features = tmp_path / "session.npz"
    code = main(["run", "--config", str(profile(tmp_path)), "--video", DEMO_VIDEO, "--audio", DEMO_WAV,
                 "--fast", "--json", "--save-features", str(features)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ticks, summary = lines[:-1], lines[-1]["summary"]
    assert [t["tick"] for t in ticks] == list(range(50))  # 5 s at 100 ms
    assert all(t["note"] == "demo weights, not for screening" for t in ticks)
    assert all(t["provisional"] is True for t in ticks)  # running estimates, not readings
    assert ticks[0]["notice"] == "Screening aid only, not a diagnosis."
    assert all("notice" not in t for t in ticks[1:])  # said once, lines stay light
    assert summary["complete"] is True and summary["notice"] == "Screening aid only, not a diagnosis."
    vote = summary["screening"]["emotion_vote"]
    assert vote["status"] == "ok" and vote["scaled"] is True and vote["frames_used"] == 48
    assert vote["provisional"] is True and "provisional: 48 of the 1200" in vote["caveat"]
    assert summary["screening"]["phq8"]["status"] == "ok"
    assert summary["screening"]["phq8"]["note"] == "demo weights, not for screening"
    telemetry = summary["telemetry"]
    counters = telemetry["counters"]
    assert counters["frames_in"] == 150 and counters["frames_analysed"] == 50
    assert counters["frames_dropped"] == 0 and counters["audio_overflow_samples"] == 0
    for stage in ("capture_wait_ms", "decode_ms", "detect_ms", "preprocess_ms", "infer_emotion_ms",
                  "infer_severity_ms", "audio_features_ms", "fusion_ms"):
        assert {"p50", "p95", "p99"} <= set(telemetry["stages_ms"][stage]), stage
    # FLOPs executed = faces x mini-Xception FLOPs + ticks x LSTM step FLOPs (from the manifests).
    emotion = emotion_flops(load_manifest("mini_xception"))
    severity = severity_flops(load_manifest("lstm_moe"))
    assert emotion > 1e7 and severity > 1e5
    assert telemetry["flops_executed"] == 50 * emotion + 50 * severity
    assert telemetry["peak_rss_mb"] > 0 and telemetry["frame_age_ms"]["n"] == 50
    stored, context = read_session_features(features)
    assert stored.shape == (50, TICK_FEATURE_COUNT) and context == 0.0
    saved = json.loads(Path(summary["summary_file"]).read_text())
    assert saved["session_id"] == summary["session_id"]
    db = sqlite3.connect(summary["database"])
    row = db.execute("SELECT complete, vote_pattern, phq8_status FROM sessions").fetchone()
    assert row == (1, vote["pattern"], "ok")
    assert db.execute("SELECT COUNT(*) FROM session_media").fetchone()[0] == 0  # no raw media


def test_text_output_and_store_media(tmp_path, capsys):
    code = main(["run", "--config", str(profile(tmp_path, output__store_media=True)), "--video", DEMO_VIDEO,
                 "--audio", DEMO_WAV, "--fast", "--duration", "1.5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "emotion vote: abstained (too little face: 15 analysed frames" in out
    assert "PHQ-8 estimate: abstained (session too short: 15 ticks" in out
    assert "demo weights, not for screening" in out and "Screening aid only, not a diagnosis." in out
    assert "frames in 45, analysed 15" in out
    db = sqlite3.connect(str(tmp_path / "out" / "sessions.sqlite"))
    assert db.execute("SELECT COUNT(*) FROM session_media").fetchone()[0] == 1


def test_text_output_says_a_short_vote_is_provisional(tmp_path, capsys):
    code = main(["run", "--config", str(profile(tmp_path)), "--video", DEMO_VIDEO, "--audio", DEMO_WAV, "--fast"])
    out = capsys.readouterr().out
    assert code == 0 and "(PROVISIONAL: 48 of 1200 face frames)" in out


def test_metrics_endpoint_serves_prometheus_text_on_loopback(tmp_path):
    """/metrics is prometheus_client's exposition, parsed here by its own parser: stage
    latency histograms in seconds, counters ending in _total that are live mid-session."""
    from prometheus_client.parser import text_string_to_metric_families

    config = parse_config({"telemetry": {"http_port": 0}, "output": {"dir": str(tmp_path), "database": None}})
    screener = Screener(ScreenerOptions(config))
    server = screener.serve_metrics("127.0.0.1", 0)
    scraped = {}

    def on_tick(tick):
        if tick.index == 10:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
                scraped["text"] = response.read().decode()
                scraped["type"] = response.headers["Content-Type"]

    try:
        summary = run_session(config, DEMO_VIDEO, DEMO_WAV, fast=True, duration_s=2.0, on_tick=on_tick,
                              screener=screener)
    finally:
        server.close()
    assert summary["complete"]
    assert scraped["type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(scraped["text"])}
    assert families["edge_stage_latency_seconds"].type == "histogram"
    assert families["edge_frames"].type == "counter" and families["edge_ticks"].type == "counter"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    detect_count = samples[("edge_stage_latency_seconds_count", (("stage", "detect"),))]
    assert detect_count >= 1
    assert samples[("edge_stage_latency_seconds_bucket", (("le", "+Inf"), ("stage", "detect")))] == detect_count
    # The counters are live: at tick 10 (1.0 s) about 30 frames have come in.
    assert 25 <= samples[("edge_frames_total", (("kind", "in"),))] <= 45
    assert samples[("edge_frames_total", (("kind", "dropped"),))] == 0
    assert 5 <= samples[("edge_ticks_total", ())] <= 11
    assert samples[("edge_audio_samples_total", (("kind", "overflow"),))] == 0
    assert samples[("edge_frame_age_seconds_count", ())] >= 1
    assert samples[("edge_resident_memory_bytes", (("kind", "current"),))] > 1e6
    assert "edge_flops_per_second" in families and "edge_sessions" in families


def test_metrics_carry_no_personal_data(tmp_path):
    """/metrics serves counts and timings only: no session id, source path or reading."""
    from edge.telemetry import prometheus_text

    config = parse_config({"output": {"dir": str(tmp_path), "database": None}})
    screener = Screener(ScreenerOptions(config))
    summary = run_session(config, DEMO_VIDEO, DEMO_WAV, fast=True, duration_s=1.0, screener=screener)
    text = prometheus_text(screener)
    for private in (summary["session_id"], "demo_face", "demo_speech", "phq8", "vote", "happy", "sad"):
        assert private not in text


def test_an_interrupted_session_still_writes_its_summary_and_row(tmp_path):
    config = parse_config({"output": {"dir": str(tmp_path), "database": str(tmp_path / "s.sqlite")}})

    def on_tick(tick):
        if tick.index == 12:
            raise KeyboardInterrupt

    summary = run_session(config, DEMO_VIDEO, DEMO_WAV, fast=True, on_tick=on_tick)
    assert summary["complete"] is False and summary["stop_reason"] == "interrupted"
    assert summary["duration_s"] >= 1.3
    assert json.loads(Path(summary["summary_file"]).read_text())["complete"] is False
    row = sqlite3.connect(str(tmp_path / "s.sqlite")).execute("SELECT complete FROM sessions").fetchone()
    assert row == (0,)


@pytest.mark.parametrize("args, message", [
    (["--video", "/nonexistent.mp4"], "video /nonexistent.mp4 does not exist"),
    (["--audio", __file__], "wrong format: not WAV, FLAC or Ogg"),
    (["--video", __file__], "cannot be opened"),
    (["--camera", "7", "--duration", "1"], "camera 7 cannot be opened"),
    (["--gst", "videotestsrc ! appsink"], "no GStreamer support"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    code = main(["run", "--config", str(profile(tmp_path))] + args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_config_naming_a_missing_model(tmp_path, capsys):
    path = profile(tmp_path, models__emotion__name="mini_xception_v9")
    code = main(["run", "--config", str(path), "--video", DEMO_VIDEO, "--fast"])
    err = capsys.readouterr().err
    assert code == 2 and "mini_xception_v9" in err and err.count("\n") == 1


def test_no_speech_abstains_the_phq8_estimate(tmp_path, capsys):
    import wave

    silent = tmp_path / "silence.wav"
    with wave.open(str(silent), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(48000)
        f.writeframes(np.zeros(48000 * 5, "<i2").tobytes())
    code = main(["run", "--config", str(profile(tmp_path)), "--video", DEMO_VIDEO, "--audio", str(silent),
                 "--fast", "--json"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert code == 0
    assert "too little voice" in summary["screening"]["phq8"]["reason"]
    assert summary["notes"] == ["resampled 48000 Hz -> 16000 Hz"]


class PacedCamera:
    """A fake cv2.VideoCapture: 30 fps of blank frames, gone for good after `frames`."""

    def __init__(self, frames):
        self.left = frames

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.left > 0

    def read(self):
        import time

        if self.left <= 0:
            return False, None
        self.left -= 1
        time.sleep(1 / 30)
        return True, np.full((120, 160, 3), 90, np.uint8)

    def set(self, *args):
        return True

    def release(self):
        pass


def test_a_camera_that_goes_away_leaves_a_gap_and_the_session_goes_on(tmp_path):
    config = parse_config({"output": {"dir": str(tmp_path), "database": None, "tick_jsonl": True}})
    cameras = [PacedCamera(15)]  # the first open works for 0.5 s; every reopen fails

    def factory(*args):
        return cameras.pop(0) if cameras else PacedCamera(0)

    ticks = []
    summary = run_session(config, "camera:0", None, duration_s=1.5, capture_factory=factory, on_tick=ticks.append)
    assert summary["complete"] and summary["stop_reason"] == "duration reached"
    assert summary["gaps"]["video"] and summary["gaps"]["video"][0][0] < 0.8
    assert len(ticks) == 15  # ticks went on while the camera was away, to the session's end
    assert summary["screening"]["emotion_vote"]["status"] == "abstained"  # no face in blank frames
    lines = (tmp_path / f"{summary['session_id']}.ticks.jsonl").read_text().splitlines()
    assert len(lines) == summary["telemetry"]["counters"]["ticks"] >= len(ticks)


def write_session_files(tmp_path, seconds, audio_seconds=None, fps=30):
    """A blank MJPG AVI of `seconds` and a 220 Hz tone WAV of `audio_seconds` (default: the same)."""
    import wave

    from edge.features.face import import_cv2

    cv2 = import_cv2()
    video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for i in range(int(seconds * fps)):
        writer.write(np.full((120, 160, 3), 60 + i % 50, np.uint8))
    writer.release()
    audio = tmp_path / "long.wav"
    n = int((seconds if audio_seconds is None else audio_seconds) * 16000)
    with wave.open(str(audio), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.sin(2 * np.pi * 220 * np.arange(n) / 16000) * 8000).astype("<i2").tobytes())
    return str(video), str(audio)


def test_fast_mode_interleaves_long_video_and_audio_and_keeps_every_frame(tmp_path, monkeypatch):
    from edge.stream.engine import StreamEngine

    video, audio = write_session_files(tmp_path, 20)
    pending = []
    push_audio = StreamEngine.push_audio

    def spy(engine, chunk):
        closed = push_audio(engine, chunk)
        pending.append(len(engine._audio))
        return closed

    monkeypatch.setattr(StreamEngine, "push_audio", spy)
    config = parse_config({"output": {"dir": str(tmp_path), "database": None}})
    summary = run_session(config, video, audio, fast=True)
    assert summary["complete"] and summary["warnings"] == []
    assert summary["telemetry"]["counters"]["frames_in"] == 600
    assert summary["telemetry"]["counters"]["ticks"] == 200
    # Media-time order: the engine never holds more than about two ticks of audio.
    assert max(pending) <= 3 * 1600


def test_time_without_video_counts_as_time_without_a_face(tmp_path):
    _, audio = write_session_files(tmp_path, 1, audio_seconds=30)
    config = parse_config({"output": {"dir": str(tmp_path), "database": None}})
    summary = run_session(config, DEMO_VIDEO, audio, fast=True)
    screening = summary["screening"]
    assert summary["complete"] and summary["duration_s"] == 30.0
    # 50 analysed frames with a face in a 5 s video, out of 300 the 30 s session would have had.
    assert screening["face_share"] == round(50 / 300, 3)
    assert screening["phq8"]["status"] == "abstained" and "too little face" in screening["phq8"]["reason"]
    assert summary["gaps"]["video"] == [[5.0, 30.0, "video ended before the audio"]]


@pytest.mark.parametrize("where, message", [("features", "--save-features: folder"),
                                            ("dir", "output.dir: folder"),
                                            ("database", "output.database: folder")])
def test_unwritable_outputs_are_refused_before_the_session(tmp_path, capsys, where, message):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    changes = {"output__dir": str(blocker / "out")} if where == "dir" else {}
    if where == "database":
        changes = {"output__database": str(blocker / "db" / "s.sqlite")}
    args = ["run", "--config", str(profile(tmp_path, **changes)), "--video", DEMO_VIDEO, "--fast"]
    if where == "features":
        args += ["--save-features", str(tmp_path / "absent" / "x.npz")]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_output_that_fails_at_the_end_does_not_lose_the_others(tmp_path):
    features_dir = tmp_path / "features"
    features_dir.mkdir()
    config = parse_config({"output": {"dir": str(tmp_path / "out"), "database": str(tmp_path / "s.sqlite")}})
    screener = Screener(ScreenerOptions(config))
    run = screener.run(DEMO_VIDEO, DEMO_WAV, fast=True, duration_s=1.0)
    writer = SessionWriter(config.output, run.session_id, str(features_dir / "x.npz"))
    for tick in run:
        writer.tick(tick)
    (features_dir / f".x.npz.{os.getpid()}.part").unlink()
    features_dir.rmdir()  # gone by the time the session ends
    lost = writer.close(run.result)
    summary = run.result.to_dict()
    assert lost == ["features"]
    assert any(w.startswith("features NOT saved") for w in summary["warnings"])
    assert "features_file" not in summary
    row = sqlite3.connect(str(tmp_path / "s.sqlite")).execute("SELECT complete FROM sessions").fetchone()
    assert row == (1,)
    saved = json.loads(Path(summary["summary_file"]).read_text())
    assert saved["warnings"] == summary["warnings"]


def test_stalled_sources_exit_3_not_the_interrupt_code(tmp_path, capsys, monkeypatch):
    from edge.engine import sources

    def stalled(self):
        return sources.StopReason(sources.StopKind.STALLED)
        yield  # a generator, as _feed is

    monkeypatch.setattr(sources.SourceRun, "_feed", stalled)
    code = main(["run", "--config", str(profile(tmp_path)), "--video", DEMO_VIDEO, "--fast", "--json"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert code == 3
    assert summary["complete"] is False and summary["stop_reason"] == "sources stalled"


def test_stage_latency_memory_is_bounded_and_counts_stay_exact():
    """An overnight session must not grow without bound: percentiles cover the most recent
    samples while the count, total and maximum stay exact."""
    from edge.telemetry import LatencySamples, StageTimer

    timer = StageTimer()
    for i in range(40000):
        timer.add("decode_ms", 1.0 if i < 30000 else 2.0)
    timer.add("decode_ms", 50.0)
    summary = timer.summary()["decode_ms"]
    assert summary["n"] == 40001 and summary["max_ms"] == 50.0
    assert summary["total_ms"] == pytest.approx(30000 * 1.0 + 10000 * 2.0 + 50.0)
    assert summary["p50_ms"] == 2.0  # the window holds the recent samples (mostly 2 ms)
    samples = LatencySamples(capacity=8)
    for value in range(20):
        samples.append(float(value))
    assert len(samples) == 20 and sorted(samples.recent()) == list(range(12, 20))
