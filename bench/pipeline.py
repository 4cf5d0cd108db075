"""`--pipeline VIDEO [--audio WAV]`: the whole `edge run` pipeline over a file as fast as
it goes, with per-stage latency, frames per second and real-time factor.

It drives the runtime's own session runner (edge.stream.runner, what `edge run` uses)
in its `fast` mode, so it measures exactly what `edge run` does. The session summary
and database go to a temporary folder: a benchmark leaves the device's results alone.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, Optional

from edge.errors import EdgeError


def _config(config_path: Optional[str], out_dir: str):
    from edge.config import parse_config

    data: Dict = {}
    if config_path:
        import yaml

        path = Path(config_path)
        if not path.is_file():
            raise EdgeError(f"config {config_path} does not exist; see firmware_configs/ for the profiles")
        data = yaml.safe_load(path.read_text()) or {}
    data = dict(data)
    data["output"] = dict(data.get("output") or {}, dir=out_dir, database=None, store_media=False,
                          tick_jsonl=False)
    return parse_config(data, config_path or "defaults")


def run_pipeline(video: str, audio: Optional[str], models_dir: Optional[str],
                 config_path: Optional[str] = None) -> Dict:
    """The session's telemetry: per-stage latency (ms), frames per second, real-time factor."""
    try:
        from edge.stream.runner import SessionRunner
    except ImportError:
        raise EdgeError("--pipeline needs the runtime engine (edge.stream.runner, used by `edge run`), "
                        "which is not available in this build") from None
    if not Path(video).is_file():
        raise EdgeError(f"--pipeline {video}: no such video file")
    if audio and not Path(audio).is_file():
        raise EdgeError(f"--audio {audio}: no such WAV file")
    with tempfile.TemporaryDirectory(prefix="edge-bench-pipeline-") as out_dir:
        runner = SessionRunner(_config(config_path, out_dir), video, audio, fast=True, models_dir=models_dir)
        summary = runner.run()
    telemetry = summary["telemetry"]
    counters = telemetry.get("counters", {})
    wall_s = telemetry["wall_s"]
    frames = counters.get("frames_in", 0)
    result = {
        "video": video, "audio": audio, "config": config_path or "defaults",
        "complete": bool(summary.get("complete")),
        "media_s": telemetry["media_s"], "wall_s": wall_s,
        "realtime_factor": telemetry["realtime_factor"],
        "frames_in": frames, "frames_analysed": counters.get("frames_analysed", 0),
        "frames_per_s": frames / wall_s if wall_s > 0 else None,
        "stages_ms": telemetry["stages_ms"],
        "flops_per_s": telemetry.get("flops_per_s"), "cpu_share": telemetry.get("cpu_share"),
        "peak_rss_mb": telemetry.get("peak_rss_mb"),
    }
    result["summary"] = (f"{result['media_s']:.1f} s of media in {wall_s:.2f} s = "
                         f"{result['realtime_factor']:.1f}x real time, "
                         f"{result['frames_per_s'] or 0:.0f} frames/s")
    return result


def stage_lines(pipeline: Dict) -> list:
    """One line per stage: its latency distribution."""
    out = []
    for name, s in sorted(pipeline.get("stages_ms", {}).items()):
        if s.get("n"):
            out.append(f"  {name:<20} n {s['n']:>6}  p50 {s.get('p50', 0):8.3f}  p95 {s.get('p95', 0):8.3f}  "
                       f"p99 {s.get('p99', 0):8.3f}  max {s.get('max', 0):8.3f} ms")
    return out
