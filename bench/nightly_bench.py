"""What `edge nightly` costs on the gateway profile, one thread (issues 13 and 18's targets).

    python bench/nightly_bench.py                       # the night, the 2-hour recording, video
    python bench/nightly_bench.py --hours 0.25 --skip-video --json out.json

1. A night: `--checkins` (20) recordings of `--checkin-s` (60) s each, five people, through
   the whole job (ledger, models, vocal measures, trends, reports; MQTT off). Target:
   under 30 s, peak RSS under 100 MB (issue 18; issue 13 asked 60 s and 150 MB).
2. One long recording of `--hours` (2) of audio. Target: peak RSS under 150 MB.
3. With a video beside a 60 s recording: the same recording processed with only the
   analysed frames decoded (grab() without retrieve() for the others, edge.capture.video)
   and with every frame decoded; and the per-frame cost of grab() vs grab()+retrieve().

Each job runs in a child process pinned to one CPU (`os.sched_setaffinity`), with the
gateway profile's threads: 1. Peak RSS is the child's ru_maxrss. Rates are seconds of
audio per second of wall time and per second of CPU time (the wall clock of a shared
machine moves with the other jobs on it; CPU time much less). The audio is the bundled
5 s speech sample looped with 0.6 s pauses and a little noise.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from datetime import date
from pathlib import Path
from typing import Dict

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEMO_WAV = ROOT / "edge" / "samples" / "demo_speech.wav"
DEMO_VIDEO = ROOT / "edge" / "samples" / "demo_face.mp4"
RATE_HZ = 16000


def write_speech(path: Path, seconds: float, seed: int = 0) -> Path:
    """`seconds` of looped speech with pauses, written block by block (bounded memory)."""
    with wave.open(str(DEMO_WAV), "rb") as f:
        speech = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32)
    pause = np.zeros(int(0.6 * RATE_HZ), np.float32)
    block = np.concatenate([speech, pause])
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE_HZ)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE_HZ)
        written = 0
        while written < total:
            n = min(len(block), total - written)
            gain = 0.8 + 0.4 * rng.random()
            chunk = block[:n] * gain + rng.normal(0, 30, n).astype(np.float32)
            out.writeframes(np.clip(chunk, -32768, 32767).astype("<i2").tobytes())
            written += n
    return path


def write_profile(folder: Path) -> Path:
    import yaml

    profile = yaml.safe_load((ROOT / "firmware_configs" / "wearable_gateway.yaml").read_text())
    profile["output"] = {"dir": str(folder / "out"), "database": str(folder / "trends.sqlite"), "store_media": False}
    profile["nightly"].update(inbox=str(folder / "inbox"), quarantine=str(folder / "quarantine"),
                              reports=str(folder / "reports"), stable_seconds=0)
    profile["mqtt"]["enabled"] = False
    path = folder / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


_CHILD = """
import os, sys, time, resource, json, argparse
os.sched_setaffinity(0, {{{cpu}}})
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
{body}
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the report drawer
print("BENCH " + json.dumps({{"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime + kids.ru_utime + kids.ru_stime,
                             "peak_rss_mb": ru.ru_maxrss / 1024.0, "report_child_peak_rss_mb": kids.ru_maxrss / 1024.0,
                             "extra": globals().get("extra", {{}})}}))
"""


def child(body: str) -> Dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cpu = min(os.sched_getaffinity(0))
    code = _CHILD.format(cpu=cpu, root=str(ROOT), body=body)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")][-1]
    result = json.loads(line[len("BENCH "):])
    children = [ln for ln in proc.stdout.splitlines() if ln.startswith("night ")]
    if children:
        result["job"] = children[-1]
    return result


def run_job(profile: Path) -> Dict:
    return child("from edge.apps.nightly.job import run\n"
                 f"code = run(argparse.Namespace(config={str(profile)!r}, inbox=None, db=None, out=None, mqtt=None))\n"
                 "assert code == 0, code")


def bench_night(work: Path, checkins: int, checkin_s: float) -> Dict:
    folder = work / "night"
    folder.mkdir()
    profile = write_profile(folder)
    source = write_speech(folder / "checkin.wav", checkin_s)
    today = date.today()
    for k in range(checkins):
        person = f"p{k % 5:02d}"
        target = folder / "inbox" / person / f"{today.strftime('%Y%m%d')}T{8 + k // 5:02d}0000.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(str(source), str(target))
    result = run_job(profile)
    audio_s = checkins * checkin_s
    result.update(audio_s=audio_s, audio_s_per_wall_s=audio_s / result["wall_s"],
                  audio_s_per_cpu_s=audio_s / result["cpu_s"])
    return result


def bench_long(work: Path, hours: float) -> Dict:
    folder = work / "long"
    folder.mkdir()
    profile = write_profile(folder)
    target = folder / "inbox" / "p01" / f"{date.today().strftime('%Y%m%d')}T200000_long.wav"
    target.parent.mkdir(parents=True)
    write_speech(target, hours * 3600.0, seed=1)
    size_mb = target.stat().st_size / 1e6
    result = run_job(profile)
    audio_s = hours * 3600.0
    result.update(audio_s=audio_s, wav_mb=round(size_mb, 1), audio_s_per_wall_s=audio_s / result["wall_s"],
                  audio_s_per_cpu_s=audio_s / result["cpu_s"])
    return result


def write_video(path: Path, seconds: float) -> Path:
    """The bundled 5 s face video looped to `seconds` (MJPG in AVI: OpenCV writes it everywhere)."""
    import cv2

    source = cv2.VideoCapture(str(DEMO_VIDEO))
    frames = []
    while True:
        ok, image = source.read()
        if not ok:
            break
        frames.append(image)
    fps = source.get(cv2.CAP_PROP_FPS) or 30.0
    source.release()
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for k in range(int(seconds * fps)):
        out.write(frames[k % len(frames)])
    out.release()
    return path


def bench_video(work: Path, seconds: float) -> Dict:
    folder = work / "video"
    folder.mkdir()
    day = date.today().strftime("%Y%m%d")
    wav = write_speech(folder / f"{day}T080000.wav", seconds)
    video = write_video(folder / f"{day}T080000.mp4", seconds)
    profile = write_profile(folder)
    body = """
from pathlib import Path
from edge.apps.nightly.inbox import Recording
from edge.apps.nightly.process import process_recording
from edge.engine.screener import Screener, ScreenerOptions
import edge.engine.sources as sources
if {all_frames}:
    class AllFrames(sources.VideoReader):  # every frame decoded (read()), as before the change
        def __init__(self, *a, **k):
            k["analysis_fps"] = None
            super().__init__(*a, **k)
    sources.VideoReader = AllFrames
screener = Screener(ScreenerOptions.from_profile({profile!r}))
rec = Recording("p01/x.wav", Path({wav!r}), "p01", "2026-11-30T08:00:00", "2026-11-30", 0, Path({video!r}))
t, cpu = time.perf_counter(), time.process_time()
done = process_recording(screener, rec, Path({out!r}))
c = done.summary["telemetry"]["counters"]
extra = {{"process_s": time.perf_counter() - t, "process_cpu_s": time.process_time() - cpu,
          "frames_in": c.get("frames_in"),
          "frames_analysed": c.get("frames_analysed"), "phq8": done.outcome["phq8_mu"]}}
"""
    results = {}
    for name, all_frames in (("analysed_frames_only", False), ("every_frame_decoded", True)):
        results[name] = child(body.format(all_frames=all_frames, profile=str(profile), wav=str(wav),
                                          video=str(video), out=str(folder / name)))
    results["per_frame_ms"] = child(f"""
import cv2
cv2.setNumThreads(1)
def cost(decode):
    cap = cv2.VideoCapture({str(video)!r}); n = 0; t = time.process_time()
    while cap.grab():
        if decode:
            cap.retrieve()
        n += 1
    return (time.process_time() - t) * 1000.0 / n
extra = {{"grab_cpu_ms": min(cost(False) for _ in range(3)),
          "grab_retrieve_cpu_ms": min(cost(True) for _ in range(3))}}
""")["extra"]
    a, b = results["analysed_frames_only"], results["every_frame_decoded"]
    frames = a["extra"]["frames_in"] or 1
    results["saved_cpu_ms_per_frame_in"] = (b["extra"]["process_cpu_s"] - a["extra"]["process_cpu_s"]) * 1000.0 / frames
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkins", type=int, default=20)
    parser.add_argument("--checkin-s", type=float, default=60.0)
    parser.add_argument("--hours", type=float, default=2.0, help="the long recording (0: skip)")
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="nightly-bench-"))
    figures: Dict = {"cpu": os.uname().machine, "load_avg_at_start": os.getloadavg()}
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; each job pinned to one CPU", flush=True)
    try:
        night = bench_night(work, args.checkins, args.checkin_s)
        figures["night"] = night
        print(f"night: {args.checkins} x {args.checkin_s:.0f} s in {night['wall_s']:.1f} s wall "
              f"({night['cpu_s']:.1f} s CPU), peak RSS {night['peak_rss_mb']:.0f} MB (report drawer "
              f"{night['report_child_peak_rss_mb']:.0f} MB); "
              f"{night['audio_s_per_wall_s']:.0f} s of audio per s (wall), {night['audio_s_per_cpu_s']:.0f} per CPU s "
              f"[target: < 30 s, < 100 MB]\n  {night.get('job')}", flush=True)
        if args.hours > 0:
            long = bench_long(work, args.hours)
            figures["long"] = long
            print(f"long: {args.hours:g} h ({long['wav_mb']} MB WAV) in {long['wall_s']:.0f} s wall "
                  f"({long['cpu_s']:.0f} s CPU), peak RSS {long['peak_rss_mb']:.0f} MB; "
                  f"{long['audio_s_per_wall_s']:.0f} s of audio per s (wall), {long['audio_s_per_cpu_s']:.0f} per "
                  "CPU s [target: < 150 MB]", flush=True)
        if not args.skip_video:
            video = bench_video(work, args.checkin_s)
            figures["video"] = video
            a, b = video["analysed_frames_only"]["extra"], video["every_frame_decoded"]["extra"]
            p = video["per_frame_ms"]
            print(f"video {args.checkin_s:.0f} s: {a['frames_in']} frames in, {a['frames_analysed']} analysed; "
                  f"CPU: analysed frames only {a['process_cpu_s']:.2f} s, every frame decoded "
                  f"{b['process_cpu_s']:.2f} s ({video['saved_cpu_ms_per_frame_in']:.2f} ms saved per frame in); "
                  f"per frame grab() {p['grab_cpu_ms']:.2f} ms vs grab()+retrieve() "
                  f"{p['grab_retrieve_cpu_ms']:.2f} ms CPU", flush=True)
        figures["load_avg_at_end"] = os.getloadavg()
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(str(work), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
