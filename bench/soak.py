"""Soak run: one long screening session on a looping file, watched for growth.

    python bench/soak.py --minutes 10                    # real time (what a kiosk or a camera gives)
    python bench/soak.py --media-hours 2 --fast          # two hours of media as fast as it goes
    make soak                                            # both, short versions (see the Makefile)

The session is the real source-mode pipeline (`Screener.run`: capture threads, bounded
queues, face detection, emotion and severity models, tick fusion) and the real
SessionWriter (features streamed to disk, database row and summary at the end). The
video is the bundled demo clip played over and over through a looping capture; the
audio is the bundled speech sample repeated into a WAV as long as the session.

Every `--every-s` seconds of wall time a row goes to the CSV: media time, RSS, open file
descriptors, threads, and the p50/p99 of each stage over that interval. At the end a
PNG plots them and the growth figures are printed (and written next to the CSV as
JSON): RSS after the warm-up vs at the end and its slope per media hour, fd and thread
counts, p99 in the first and last quarter.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent  # the samples; `edge` is the installed package

DEMO_VIDEO = ROOT / "edge" / "samples" / "demo_face.mp4"
DEMO_WAV = ROOT / "edge" / "samples" / "demo_speech.wav"
STAGES = ("total_frame_ms", "detect_ms", "infer_emotion_ms", "infer_severity_ms", "audio_features_ms", "fusion_ms")


class LoopingCapture:
    """cv2.VideoCapture of one file that starts again at its end, `loops` times in all.

    It keeps grab()/retrieve() so the reader decodes only the analysed frames, as it does
    for a plain file."""

    def __init__(self, path: str, loops: int):
        import cv2

        self.cv2 = cv2
        self.path = path
        self.loops_left = loops
        self.cap = cv2.VideoCapture(path)
        self.frames_per_loop = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = self.frames_per_loop * loops

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.cap.isOpened()

    def get(self, prop):
        if prop == self.cv2.CAP_PROP_FRAME_COUNT:
            return float(self.total)
        return self.cap.get(prop)

    def set(self, *args):
        return self.cap.set(*args)

    def grab(self) -> bool:
        if self.cap.grab():
            return True
        self.loops_left -= 1
        if self.loops_left <= 0:
            return False
        self.cap.release()
        self.cap = self.cv2.VideoCapture(self.path)
        return self.cap.grab()

    def retrieve(self):
        return self.cap.retrieve()

    def read(self):
        if not self.grab():
            return False, None
        return self.retrieve()

    def release(self) -> None:
        self.cap.release()


def looping_wav(target: Path, seconds: float) -> Path:
    """The demo speech repeated into a 16 kHz WAV of `seconds` (written in blocks)."""
    with wave.open(str(DEMO_WAV), "rb") as f:
        params = f.getparams()
        pcm = f.readframes(f.getnframes())
    frame_bytes = params.sampwidth * params.nchannels
    needed = int(seconds * params.framerate) * frame_bytes
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        written = 0
        while written < needed:
            block = pcm[: needed - written]
            out.writeframes(block)
            written += len(block)
    return target


def process_figures() -> Dict[str, float]:
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_mb = float(fields.get("VmRSS", "0 kB").split()[0]) / 1024.0
    threads = int(fields.get("Threads", str(threading.active_count())).strip())
    fds = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else -1
    return {"rss_mb": round(rss_mb, 2), "fds": fds, "threads": threads, "py_threads": threading.active_count()}


class IntervalStages:
    """Per-interval stage samples, fed by wrapping a session timer's add()."""

    def __init__(self, timer):
        self.lock = threading.Lock()
        self.samples: Dict[str, List[float]] = {}
        original = timer.add

        def add(name, ms):
            original(name, ms)
            with self.lock:
                self.samples.setdefault(name, []).append(ms)

        timer.add = add

    def take(self) -> Dict[str, Dict[str, float]]:
        with self.lock:
            samples, self.samples = self.samples, {}
        return {name: {"n": len(v), "p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))}
                for name, v in samples.items() if v}


def soak(media_s: float, fast: bool, every_s: float, out_dir: Path, warmup_share: float) -> Dict:
    from edge.config import parse_config
    from edge.engine import Screener, ScreenerOptions
    from edge.engine.outputs import SessionWriter

    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="edge-soak-"))
    loops = int(np.ceil(media_s / 5.0)) + 1
    wav = looping_wav(work / "speech.wav", media_s + 1.0)
    config = parse_config({"output": {"dir": str(work / "out"), "database": str(work / "out" / "soak.sqlite")}})
    screener = Screener(ScreenerOptions(config))
    run = screener.run(str(DEMO_VIDEO), str(wav), fast=fast, duration_s=media_s,
                       capture_factory=lambda path, *a: LoopingCapture(str(path), loops))
    writer = SessionWriter(config.output, run.session_id, str(work / "features.npz"), config.models.severity.context)
    stages = IntervalStages(run.session.timer)
    rows: List[Dict] = []
    started = time.monotonic()
    state = {"ticks": 0, "done": False}

    def sample(phase: str = "running") -> None:
        figures = process_figures()
        row = {"wall_s": round(time.monotonic() - started, 2), "media_s": round(state["ticks"] * 0.1, 1),
               "phase": phase, **figures}
        for name, stats in stages.take().items():
            if name in STAGES:
                row[f"{name[:-3]}_p50_ms"] = round(stats["p50"], 3)
                row[f"{name[:-3]}_p99_ms"] = round(stats["p99"], 3)
        rows.append(row)
        print(f"  {row['wall_s']:8.1f} s wall  {row['media_s']:8.1f} s media  RSS {row['rss_mb']:7.1f} MB  "
              f"fds {row['fds']}  threads {row['threads']}  total_frame p99 {row.get('total_frame_p99_ms', '-')}",
              flush=True)

    def sampler() -> None:
        while not state["done"]:
            time.sleep(every_s)
            if not state["done"]:
                sample()

    sample("start")
    watcher = threading.Thread(target=sampler, name="soak sampler", daemon=True)
    watcher.start()
    for tick in run:
        writer.tick(tick)
        state["ticks"] += 1
    state["done"] = True
    lost = writer.close(run.result)
    sample("closed")  # after the session: its threads and files are gone
    result = run.result
    report = summarise(rows, warmup_share)
    report.update({"media_s": media_s, "fast": fast, "ticks": state["ticks"], "complete": result.complete,
                   "stop_reason": str(result.stop_reason), "lost": lost, "warnings": result.warnings,
                   "frames_dropped": result.quality.frames_dropped,
                   "audio_overflow_samples": result.quality.audio_overflow_samples,
                   "realtime_factor": result.timings.get("realtime_factor")})
    tag = f"soak_{'fast' if fast else 'realtime'}_{int(media_s)}s"
    csv_path, png_path, json_path = (out_dir / f"{tag}.csv", out_dir / f"{tag}.png", out_dir / f"{tag}.json")
    columns = sorted({k for row in rows for k in row}, key=lambda k: (k not in ("wall_s", "media_s"), k))
    with open(str(csv_path), "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=columns)
        out.writeheader()
        out.writerows(rows)
    plot(rows, png_path, report, tag)
    report.update({"csv": str(csv_path), "png": str(png_path)})
    json_path.write_text(json.dumps(report, indent=2))
    screener.close() if hasattr(screener, "close") else None
    return report


def summarise(rows: List[Dict], warmup_share: float) -> Dict:
    """Growth after the warm-up (the first `warmup_share` of the media) while the session
    runs: RSS end minus RSS after warm-up and its slope; for fds and threads, the most seen
    in the second half of the run minus the most seen in the first half after warm-up."""
    running = [r for r in rows if r["phase"] == "running"] or rows
    end = running[-1]["media_s"]
    after = [r for r in running if r["media_s"] >= warmup_share * end] or running[-1:]
    half = len(after) // 2
    early, late = after[:max(1, half)], after[half:] or after
    rss = np.array([r["rss_mb"] for r in after])
    t_h = np.array([r["media_s"] for r in after]) / 3600.0
    slope = float(np.polyfit(t_h, rss, 1)[0]) if len(after) >= 3 and np.ptp(t_h) > 0 else 0.0
    quarter = max(1, len(rows) // 4)

    def p99(part):
        values = [r["total_frame_p99_ms"] for r in part if "total_frame_p99_ms" in r]
        return round(float(np.median(values)), 3) if values else None

    return {
        "rows": len(rows),
        "rss_start_mb": rows[0]["rss_mb"], "rss_after_warmup_mb": after[0]["rss_mb"],
        "rss_end_mb": running[-1]["rss_mb"], "rss_after_close_mb": rows[-1]["rss_mb"],
        "rss_max_after_warmup_mb": float(rss.max()),
        "rss_growth_after_warmup_mb": round(running[-1]["rss_mb"] - after[0]["rss_mb"], 2),
        "rss_slope_mb_per_media_hour": round(slope, 2),
        "fds_after_warmup": [int(min(r["fds"] for r in after)), int(max(r["fds"] for r in after))],
        "threads_after_warmup": [int(min(r["threads"] for r in after)), int(max(r["threads"] for r in after))],
        "fd_growth": int(max(r["fds"] for r in late) - max(r["fds"] for r in early)),
        "thread_growth": int(max(r["threads"] for r in late) - max(r["threads"] for r in early)),
        "fds_after_close": rows[-1]["fds"], "threads_after_close": rows[-1]["threads"],
        "total_frame_p99_ms_first_quarter": p99(rows[1:quarter + 1]),
        "total_frame_p99_ms_last_quarter": p99(rows[-quarter - 1:-1] or rows[-1:]),
    }


def plot(rows: List[Dict], png: Path, report: Dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    media_min = [r["media_s"] / 60.0 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    axes[0].plot(media_min, [r["rss_mb"] for r in rows], color="tab:blue")
    axes[0].set_ylabel("RSS (MB)")
    axes[0].set_title(f"{title}: RSS growth after warm-up {report['rss_growth_after_warmup_mb']} MB "
                      f"({report['rss_slope_mb_per_media_hour']} MB per media hour)", fontsize=9)
    axes[1].plot(media_min, [r["fds"] for r in rows], label="open fds")
    axes[1].plot(media_min, [r["threads"] for r in rows], label="threads")
    axes[1].set_ylabel("count")
    axes[1].legend(loc="upper left", fontsize=8)
    for stage in STAGES:
        key = f"{stage[:-3]}_p99_ms"
        points = [(m, r[key]) for m, r in zip(media_min, rows) if key in r]
        if points:
            axes[2].plot(*zip(*points), label=stage[:-3])
    axes[2].set_ylabel("p99 per interval (ms)")
    axes[2].set_xlabel("media time (min)")
    axes[2].set_yscale("log")
    axes[2].legend(loc="upper left", fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(str(png), dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="session length in minutes of media (default 10)")
    length.add_argument("--media-hours", type=float, help="session length in hours of media")
    parser.add_argument("--fast", action="store_true", help="read the media as fast as possible")
    parser.add_argument("--every-s", type=float, default=None, help="sampling interval, wall seconds")
    parser.add_argument("--warmup-share", type=float, default=0.1, help="share of the media counted as warm-up")
    parser.add_argument("--out", default="out/soak", help="folder for the CSV, PNG and JSON")
    args = parser.parse_args(argv)
    media_s = args.media_hours * 3600.0 if args.media_hours else (args.minutes or 10.0) * 60.0
    every_s = args.every_s or (5.0 if media_s <= 900 or args.fast else 10.0)
    print(f"soak: {media_s / 60:.1f} min of media, {'fast' if args.fast else 'real time'}, "
          f"a row every {every_s} s", flush=True)
    report = soak(media_s, args.fast, every_s, Path(args.out), args.warmup_share)
    keys = ("media_s", "complete", "stop_reason", "realtime_factor", "rss_after_warmup_mb", "rss_end_mb",
            "rss_growth_after_warmup_mb", "rss_slope_mb_per_media_hour", "fds_after_warmup", "threads_after_warmup",
            "fd_growth", "thread_growth", "fds_after_close", "threads_after_close",
            "total_frame_p99_ms_first_quarter", "total_frame_p99_ms_last_quarter", "frames_dropped",
            "audio_overflow_samples", "lost", "csv", "png")
    for key in keys:
        print(f"{key}: {report.get(key)}")
    ok = (report["complete"] and not report["lost"] and report["rss_growth_after_warmup_mb"] < 5.0
          and report["fd_growth"] <= 0 and report["thread_growth"] <= 0)
    print("soak: PASS" if ok else "soak: FAIL (growth, lost output or an unfinished session; see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
