"""Memory and start-up of the screening engine (edge.Screener), as the applications use it.

    python bench/engine_memory.py                     # 2 h of media, then 200 sessions
    python bench/engine_memory.py --hours 0.2 --sessions 20 --json out.json

Two checks (figures, not unit tests: this machine is shared and noisy):
1. One long session: the bundled sample looped to `--hours` of media and read with
   --fast (the video through a looping capture, the audio from a looped WAV). RSS is
   read every minute of media; what counts is the growth after the first minute.
2. `--sessions` back-to-back 1 s sessions on one Screener (models loaded once): RSS after
   each, and each session's start (from `screener.run()` to its first tick).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.soak import DEMO_VIDEO, DEMO_WAV, LoopingCapture, looping_wav, process_figures

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    return process_figures()["rss_mb"]


def long_session(screener, hours: float, work: Path) -> dict:
    loops = max(1, int(round(hours * 3600 / 5.0)))  # the sample is 5 s
    wav = looping_wav(work / "long.wav", loops * 5.0)
    samples = []
    started = time.perf_counter()

    def on_tick(tick) -> None:
        if tick.index % 600 == 0:  # every minute of media
            samples.append((tick.index / 600.0, rss_mb()))

    run = screener.run(video=str(DEMO_VIDEO), audio=str(wav), fast=True, on_tick=on_tick,
                       capture_factory=lambda path: LoopingCapture(path, loops))
    result = run.run()
    wall_s = time.perf_counter() - started
    wav.unlink()
    after_first = [mb for minute, mb in samples if minute >= 1.0]
    return {"media_s": result.duration_s, "wall_s": round(wall_s, 1), "complete": result.complete,
            "rss_at_1_min_mb": round(after_first[0], 1) if after_first else None,
            "rss_max_after_1_min_mb": round(max(after_first), 1) if after_first else None,
            "rss_growth_after_1_min_mb": round(max(after_first) - after_first[0], 2) if after_first else None,
            "rss_by_minute_mb": [[round(m, 1), round(mb, 1)] for m, mb in samples]}


def back_to_back(screener, sessions: int, release: bool = False) -> dict:
    rss, starts_ms = [], []
    for _ in range(sessions):
        first: list = []

        def on_tick(tick, first=first) -> None:
            if not first:
                first.append(time.perf_counter())

        started = time.perf_counter()
        run = screener.run(video=str(DEMO_VIDEO), audio=str(DEMO_WAV), fast=True, duration_s=1.0, on_tick=on_tick)
        ready_ms = (time.perf_counter() - started) * 1000.0
        run.run()
        starts_ms.append((ready_ms, (first[0] - started) * 1000.0))
        if release:  # what the kiosk does between visitors
            from edge.engine.memory import release_memory

            release_memory()
        rss.append(rss_mb())
        if len(rss) % 20 == 0 or len(rss) <= 10:
            print(f"  session {len(rss)}: RSS {rss[-1]:.1f} MB", file=sys.stderr, flush=True)
    ready = np.array([s[0] for s in starts_ms])
    to_tick = np.array([s[1] for s in starts_ms])
    return {"sessions": sessions, "released_between": release,
            "rss_after_first_mb": round(rss[0], 1), "rss_after_last_mb": round(rss[-1], 1),
            "rss_growth_after_first_mb": round(rss[-1] - rss[0], 2), "rss_max_mb": round(max(rss), 1),
            # glibc's allocator settles within the first few sessions: growth past them is a leak.
            "rss_growth_after_5_mb": round(rss[-1] - rss[min(4, len(rss) - 1)], 2),
            "rss_growth_second_half_mb": round(rss[-1] - rss[len(rss) // 2], 2),
            # RSS moves by a few MB from one session to the next (allocator noise): the medians of
            # the first and last ten sessions say whether it trends.
            "rss_growth_median_first10_to_last10_mb": round(float(np.median(rss[-10:]) - np.median(rss[:10])), 2),
            "rss_by_session_mb": [round(mb, 1) for mb in rss],
            "start_ready_ms_p50": round(float(np.median(ready)), 2),
            "start_ready_ms_max": round(float(ready.max()), 2),
            "start_to_first_tick_ms_p50": round(float(np.median(to_tick)), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "firmware_configs" / "desktop.yaml"))
    parser.add_argument("--hours", type=float, default=2.0, help="media in the long session (0: skip)")
    parser.add_argument("--sessions", type=int, default=200, help="back-to-back sessions (0: skip)")
    parser.add_argument("--release", action="store_true",
                        help="collect and trim freed memory after each session, as the kiosk does")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    from edge import Screener, ScreenerOptions, load_config, updated

    config = updated(load_config(args.config).engine, {"output.database": None})
    started = time.perf_counter()
    screener = Screener(ScreenerOptions(config))
    report = {"machine": os.uname().machine, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC"),
              "load_s": round(time.perf_counter() - started, 3), "rss_after_load_mb": round(rss_mb(), 1)}
    with tempfile.TemporaryDirectory() as work:
        if args.sessions:
            report["back_to_back"] = back_to_back(screener, args.sessions, args.release)
            short = {k: v for k, v in report["back_to_back"].items() if k != "rss_by_session_mb"}
            print(json.dumps({"back_to_back": short}), flush=True)
        if args.hours:
            report["long_session"] = long_session(screener, args.hours, Path(work))
            short = {k: v for k, v in report["long_session"].items() if k != "rss_by_minute_mb"}
            print(json.dumps({"long_session": short}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
