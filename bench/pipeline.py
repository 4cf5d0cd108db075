"""`--pipeline VIDEO [--audio WAV]`: the whole `edge run` pipeline over a file as fast as
it goes, against the `fer` package's plain per-frame pipeline, in one run.

Ours is `edge run --fast --json` itself, started as a subprocess (python -m edge), so it
measures exactly what a user runs, and its memory is its own: frames per second and
real-time factor come from the session's telemetry (the session's wall time, after the
models loaded), peak RSS is the child's VmHWM, and the time to the first result is
taken twice: from starting the process to the first tick line on its stdout (what a
user waits for, interpreter start and model loading included) and from the session's
start (the runtime's own `first_result_s`). The peer is bench/fer_pipeline.py, run in
this process. The two run alternately, `rounds` times each, over the same file: the
spread between rounds is the noise of the fps ratio.

`demo` stands for the bundled edge/samples/demo_face.mp4 + demo_speech.wav. With
`loops` > 1 the video and the WAV are repeated into temporary files (the video
re-encoded with the same codec, so both pipelines decode the same bytes). Session
summaries and databases go to a temporary folder: a benchmark leaves the device's
results alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench import stats
from edge.errors import EdgeError

ROOT = Path(__file__).resolve().parent.parent
DEMO_VIDEO = ROOT / "edge" / "samples" / "demo_face.mp4"
DEMO_AUDIO = ROOT / "edge" / "samples" / "demo_speech.wav"
# Issue 5: at least 3x real time, 2x the fer pipeline's fps, 150 MB, 1.5 s to the first result.
TARGETS = (("realtime_factor", ">=", 3.0, "x"), ("fps_vs_fer", ">=", 2.0, "x"),
           ("peak_rss_mb", "<=", 150.0, "MB"), ("first_result_s", "<=", 1.5, "s"))


def resolve_media(video: str, audio: Optional[str]) -> Tuple[Path, Optional[Path]]:
    """`demo` -> the bundled sample (and its speech unless --audio names a WAV)."""
    if video == "demo":
        video_path = DEMO_VIDEO
        audio = audio or str(DEMO_AUDIO)
        if not video_path.is_file():
            raise EdgeError(f"--pipeline demo: {video_path} is not in this checkout")
    else:
        video_path = Path(video)
    if not video_path.is_file():
        raise EdgeError(f"--pipeline {video}: no such video file")
    if audio and not Path(audio).is_file():
        raise EdgeError(f"--audio {audio}: no such WAV file")
    return video_path, Path(audio) if audio else None


def loop_video(video: Path, loops: int, target: Path) -> Path:
    """`video` repeated `loops` times into `target` (same size and fps; MPEG-4 part 2,
    the bundled sample's codec). Frames are streamed, not held in memory."""
    import cv2

    writer = None
    written = 0
    try:
        for _ in range(loops):
            capture = cv2.VideoCapture(str(video))
            if not capture.isOpened():
                raise EdgeError(f"OpenCV cannot open the video {video}")
            try:
                fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
                while True:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    if writer is None:
                        height, width = frame.shape[:2]
                        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                 (width, height))
                        if not writer.isOpened():
                            raise EdgeError(f"OpenCV cannot write {target} (mp4v)")
                    writer.write(frame)
                    written += 1
            finally:
                capture.release()
    finally:
        if writer is not None:
            writer.release()
    if not written:
        raise EdgeError(f"no frame could be decoded from {video}")
    return target


def loop_wav(audio: Path, loops: int, target: Path) -> Path:
    """The WAV's samples repeated `loops` times into `target` (same format)."""
    try:
        with wave.open(str(audio), "rb") as f:
            params = f.getparams()
            data = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as exc:
        raise EdgeError(f"--audio {audio}: not a PCM WAV file ({exc})") from None
    with wave.open(str(target), "wb") as f:
        f.setparams(params)
        f.writeframes(data * loops)
    return target


def video_info(video: Path) -> Dict:
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        return {"width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                "fps": float(capture.get(cv2.CAP_PROP_FPS)),
                "frames": int(capture.get(cv2.CAP_PROP_FRAME_COUNT))}
    finally:
        capture.release()


def _config_file(config_path: Optional[str], out_dir: Path) -> Path:
    """The profile (or the defaults) with outputs sent to `out_dir`, no database and no
    /metrics port, checked here (one-line errors) and written for the child."""
    import yaml

    from edge.config import parse_config

    data: Dict = {}
    if config_path:
        path = Path(config_path)
        if not path.is_file():
            raise EdgeError(f"config {config_path} does not exist; see firmware_configs/ for the profiles")
        data = yaml.safe_load(path.read_text()) or {}
    data = dict(data)
    data["output"] = dict(data.get("output") or {}, dir=str(out_dir), database=None, store_media=False,
                          tick_jsonl=False)
    data["telemetry"] = dict(data.get("telemetry") or {}, http_port=None)
    parse_config(data, config_path or "defaults")
    target = out_dir / "bench-profile.yaml"
    target.write_text(yaml.safe_dump(data))
    return target


def run_edge(video: Path, audio: Optional[Path], config_file: Path, models_dir: Optional[str]) -> Dict:
    """One `edge run --fast --json` in a subprocess: its summary's telemetry, plus the time
    from starting the process to its first tick line and to its exit."""
    command = [sys.executable, "-m", "edge", "run", "--fast", "--json", "--video", str(video),
               "--config", str(config_file)]
    if audio is not None:
        command += ["--audio", str(audio)]
    if models_dir:
        command += ["--models-dir", str(models_dir)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    first_line_s = None
    last = None
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, cwd=str(ROOT), env=env,
                                universal_newlines=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if first_line_s is None:
                first_line_s = time.perf_counter() - started
            last = line
        code = proc.wait()
        process_s = time.perf_counter() - started
        stderr.seek(0)
        err_lines = [x for x in stderr.read().decode(errors="replace").splitlines() if x.strip()]
    summary = None
    if last is not None:
        try:
            summary = json.loads(last).get("summary")
        except ValueError:
            summary = None
    if summary is None:
        reason = next((x for x in reversed(err_lines) if not x.startswith("INFO:")), f"exit code {code}")
        raise EdgeError(f"`edge run` over {video} failed: {reason}")
    telemetry = summary["telemetry"]
    counters = telemetry.get("counters", {})
    wall_s = telemetry["wall_s"]
    return {
        "complete": bool(summary.get("complete")), "exit_code": code,
        "wall_s": wall_s, "process_s": process_s, "media_s": telemetry["media_s"],
        "realtime_factor": telemetry["realtime_factor"],
        "frames_in": counters.get("frames_in", 0), "frames_analysed": counters.get("frames_analysed", 0),
        "frames_with_face": counters.get("frames_with_face", 0),
        "frames_dropped": counters.get("frames_dropped", 0),
        "face_detections": counters.get("face_detections", 0),
        "face_track_reuses": counters.get("face_track_reuses", 0),
        "frames_per_s": counters.get("frames_in", 0) / wall_s if wall_s > 0 else None,
        "first_result_s": first_line_s, "first_result_in_session_s": telemetry.get("first_result_s"),
        "peak_rss_mb": telemetry.get("peak_rss_mb"),
        "flops_per_s": telemetry.get("flops_per_s"), "cpu_share": telemetry.get("cpu_share"),
        "stages_ms": telemetry["stages_ms"],
        "emotion_backend": ((summary.get("models") or {}).get("emotion") or {}).get("backend"),
    }


def _noise(per_round_fps: List[float]) -> Optional[float]:
    """Round noise (%) of the time per frame."""
    return stats.round_noise_pct([1e3 / f for f in per_round_fps if f])


def _combine_ours(runs: List[Dict]) -> Dict:
    """All rounds of ours: totals over rounds, worst RSS and first result, the last round's stages."""
    frames = sum(r["frames_in"] for r in runs)
    wall = sum(r["wall_s"] for r in runs)
    media = sum(r["media_s"] for r in runs)
    last = runs[-1]
    per_round = [r["frames_per_s"] for r in runs]
    out = {
        "complete": all(r["complete"] for r in runs),
        "frames_in": frames, "frames_analysed": sum(r["frames_analysed"] for r in runs),
        "frames_with_face": sum(r["frames_with_face"] for r in runs),
        "frames_dropped": sum(r["frames_dropped"] for r in runs),
        "face_detections": sum(r["face_detections"] for r in runs),
        "face_track_reuses": sum(r["face_track_reuses"] for r in runs),
        "wall_s": wall, "media_s": media,
        "frames_per_s": frames / wall if wall > 0 else None,
        "realtime_factor": media / wall if wall > 0 else None,
        "analysed_per_media_s": sum(r["frames_analysed"] for r in runs) / media if media > 0 else None,
        "decoded_per_media_s": frames / media if media > 0 else None,
        "noise_pct": _noise(per_round),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in runs if r["peak_rss_mb"] is not None), default=None),
        "first_result_s": max((r["first_result_s"] for r in runs if r["first_result_s"] is not None),
                              default=None),
        "first_result_in_session_s": max((r["first_result_in_session_s"] for r in runs
                                          if r["first_result_in_session_s"] is not None), default=None),
        "flops_per_s": last["flops_per_s"], "cpu_share": last["cpu_share"],
        "emotion_backend": last["emotion_backend"],
        "stages_ms": last["stages_ms"],
        "rounds": [{k: r[k] for k in ("wall_s", "process_s", "frames_in", "frames_per_s", "realtime_factor",
                                      "first_result_s", "first_result_in_session_s", "peak_rss_mb",
                                      "complete")} for r in runs],
    }
    return out


def _combine_peer(runs: List[Dict]) -> Dict:
    frames = sum(r["frames"] for r in runs)
    wall = sum(r["wall_s"] for r in runs)
    media = sum(r["media_s"] for r in runs)
    out = dict(runs[-1])
    out.update({
        "frames": frames, "frames_with_face": sum(r["frames_with_face"] for r in runs),
        "faces": sum(r["faces"] for r in runs), "wall_s": wall, "media_s": media,
        "frames_per_s": frames / wall if wall > 0 else None,
        "realtime_factor": media / wall if wall > 0 else None,
        "noise_pct": _noise([r["frames_per_s"] for r in runs]),
        "rounds": [{"wall_s": r["wall_s"], "frames": r["frames"], "frames_per_s": r["frames_per_s"]}
                   for r in runs],
    })
    return out


def fps_ratio(ours: Dict, peer: Optional[Dict]) -> Optional[Dict]:
    """Our frames per second over the peer's, with the noise of both (None without a peer)."""
    if not peer or not ours.get("frames_per_s") or not peer.get("frames_per_s"):
        return None
    r = stats.ratio_with_noise(1e3 / ours["frames_per_s"], 1e3 / peer["frames_per_s"],
                               ours.get("noise_pct"), peer.get("noise_pct"))
    verdict = {"slower": "ours faster", "faster": "ours slower"}.get(r["verdict"], r["verdict"])
    return {"ratio": r["ratio"], "noise_pct": r["noise_pct"], "verdict": verdict}


def check_targets(ours: Dict, ratio: Optional[Dict]) -> List[Dict]:
    """Issue 5's four targets against this run (`met` is None where there is no figure)."""
    values = {"realtime_factor": ours.get("realtime_factor"), "fps_vs_fer": ratio["ratio"] if ratio else None,
              "peak_rss_mb": ours.get("peak_rss_mb"), "first_result_s": ours.get("first_result_s")}
    out = []
    for name, op, limit, unit in TARGETS:
        value = values[name]
        met = None if value is None else (value >= limit if op == ">=" else value <= limit)
        out.append({"name": name, "value": value, "op": op, "limit": limit, "unit": unit, "met": met})
    return out


def run_pipeline(video: str, audio: Optional[str], models_dir: Optional[str], config_path: Optional[str] = None,
                 loops: int = 1, rounds: int = 1, peer_wheel: Optional[Path] = None,
                 progress=None) -> Dict:
    """Ours (`edge run`) and, with `peer_wheel`, the fer pipeline, alternately `rounds`
    times each over `video` (+ `audio`) repeated `loops` times. See the module doc."""
    if loops < 1 or rounds < 1:
        raise EdgeError("--pipeline-loops and --pipeline-rounds must be at least 1")
    source_video, source_audio = resolve_media(video, audio)
    from bench.fer_pipeline import run_fer_pipeline

    with tempfile.TemporaryDirectory(prefix="edge-bench-pipeline-") as tmp:
        work = Path(tmp)
        config_file = _config_file(config_path, work)
        run_video, run_audio = source_video, source_audio
        if loops > 1:
            run_video = loop_video(source_video, loops, work / f"looped{source_video.suffix or '.mp4'}")
            if source_audio is not None:
                run_audio = loop_wav(source_audio, loops, work / "looped.wav")
        info = video_info(run_video)
        ours_runs, peer_runs = [], []
        for index in range(rounds):
            ours_runs.append(run_edge(run_video, run_audio, config_file, models_dir))
            if progress:
                progress(f"round {index + 1}/{rounds}: edge run")
            if peer_wheel is not None:
                peer_runs.append(run_fer_pipeline(str(run_video), peer_wheel, work))
                if progress:
                    progress(f"round {index + 1}/{rounds}: fer pipeline")
    ours = _combine_ours(ours_runs)
    peer = _combine_peer(peer_runs) if peer_runs else None
    ratio = fps_ratio(ours, peer)
    result = {
        "video": str(source_video), "audio": str(source_audio) if source_audio else None,
        "config": config_path or "defaults", "loops": loops, "rounds": rounds,
        "video_info": info, "media_s": ours_runs[0]["media_s"],
        "ours": ours, "peer": peer, "fps_ratio": ratio, "targets": check_targets(ours, ratio),
    }
    result["summary"] = summary_text(result)
    return result


def summary_text(p: Dict) -> str:
    ours = p["ours"]
    text = (f"ours {ours['frames_per_s']:.0f} frames/s, {ours['realtime_factor']:.1f}x real time")
    if p.get("fps_ratio"):
        text += (f"; fer per-frame {p['peer']['frames_per_s']:.1f} frames/s, "
                 f"{p['peer']['realtime_factor']:.2f}x real time; ours/fer = {p['fps_ratio']['ratio']:.1f}x")
    return text


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _noise_text(noise_pct: Optional[float]) -> str:
    return "noise unknown with 1 round" if noise_pct is None else f"noise +/-{noise_pct:.0f}%"


def report_lines(p: Dict) -> List[str]:
    """The pipeline section of the text report."""
    info = p["video_info"]
    ours = p["ours"]
    loops = f", looped {p['loops']}x" if p["loops"] > 1 else ""
    out = [f"pipeline: {p['video']}{loops} ({info['width']}x{info['height']} {info['fps']:g} fps, "
           f"{p['media_s']:.1f} s of media) + {p['audio'] or 'no audio'}; {p['rounds']} round(s), "
           "ours and fer alternately",
           f"  ours (`edge run --fast --json`, emotion model on {ours['emotion_backend']}): "
           f"{ours['frames_in']} frames decoded in {ours['wall_s']:.2f} s = {ours['frames_per_s']:.0f} frames/s, "
           f"{ours['realtime_factor']:.1f}x real time ({_noise_text(ours['noise_pct'])})",
           f"    decodes every frame ({_fmt(ours['decoded_per_media_s'], '.0f')} fps), analyses "
           f"{ours['frames_analysed']} ({_fmt(ours['analysed_per_media_s'], '.0f')} fps); face detector run on "
           f"{ours['face_detections']} of them, tracked on {ours['face_track_reuses']}; "
           f"face in {ours['frames_with_face']}; dropped {ours['frames_dropped']}",
           f"    peak RSS {_fmt(ours['peak_rss_mb'], '.0f')} MB; first result "
           f"{_fmt(ours['first_result_s'], '.2f')} s after the process started "
           f"({_fmt(ours['first_result_in_session_s'], '.3f')} s after the session started); worst of "
           f"{p['rounds']} round(s)"]
    peer = p.get("peer")
    if peer:
        out += [f"  fer per-frame (Haar every frame + fer TFLite, {peer['runtime']}, 1 thread; "
                f"OpenCV {peer['opencv_threads']} threads as in both): {peer['frames']} frames in "
                f"{peer['wall_s']:.2f} s = {peer['frames_per_s']:.1f} frames/s, "
                f"{peer['realtime_factor']:.2f}x real time ({_noise_text(peer['noise_pct'])})",
                f"    face in {peer['frames_with_face']} of {peer['frames']} frames, {peer['faces']} faces "
                f"classified; setup {peer['setup_s']:.2f} s (not timed)"]
        r = p["fps_ratio"]
        verdict = "" if r["noise_pct"] is None else f"; {r['verdict']}"
        out.append(f"  ours / fer frames per second = {r['ratio']:.1f}x ({_noise_text(r['noise_pct'])}{verdict})")
    out.append("  issue 5 targets: " + "; ".join(target_text(t) for t in p["targets"]))
    out.append("  ours, stages (last round):")
    out += stage_lines(ours)
    if peer:
        out.append("  fer per-frame, stages (last round):")
        out += stage_lines(peer)
    return out


def target_text(t: Dict) -> str:
    verdict = "no figure" if t["met"] is None else ("met" if t["met"] else "NOT met")
    return f"{t['name']} {_fmt(t['value'], '.2f')} {t['op']} {t['limit']:g} {t['unit']}: {verdict}"


def stage_lines(pipeline: Dict) -> list:
    """One line per stage: its latency distribution."""
    out = []
    for name, s in sorted(pipeline.get("stages_ms", {}).items()):
        if s.get("n"):
            out.append(f"    {name:<20} n {s['n']:>6}  p50 {s.get('p50', 0):8.3f}  p95 {s.get('p95', 0):8.3f}  "
                       f"p99 {s.get('p99', 0):8.3f}  max {s.get('max', 0):8.3f} ms")
    return out
