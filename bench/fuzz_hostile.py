"""The long fuzz runs of issue 21: every hostile-input surface for a fixed time each.

    python bench/fuzz_hostile.py                       # 600 s each, atheris where installed
    python bench/fuzz_hostile.py --seconds 60 --targets image http --engine mutate --jobs 2

Each target (tests/fuzz_hostile_target.py: yaml, json, manifest, image, http) runs in its own
process; the table gives inputs tried, seconds, peak RSS (the process's, from wait4) and the
findings (saved inputs under the printed work folder). Exit 1 when anything was found. The
default test run keeps a few seconds of each (tests/test_fuzz_hostile.py).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "fuzz_hostile_target.py"
TARGETS = ("yaml", "json", "manifest", "image", "http")


def start(target: str, seconds: float, engine: str, seed: int, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # a file, not a pipe: libFuzzer's log of a long run would fill one
        return subprocess.Popen([sys.executable, str(TARGET), "--target", target, "--seconds", str(seconds),
                                 "--engine", engine, "--seed", str(seed)], cwd=str(ROOT),
                                stdout=out, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, target: str, engine: str, started: float, log: Path) -> dict:
    _, status, usage = os.wait4(proc.pid, 0)
    # os.waitstatus_to_exitcode is Python 3.9+; bench/ runs on 3.8 (Popen's own convention).
    proc.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    text = log.read_text(errors="replace")
    output = text.splitlines(keepends=True)
    record = {"target": target, "engine": engine, "seconds": round(time.monotonic() - started, 1),
              "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "exit": proc.returncode}
    last = [line for line in output if line.startswith("{")]
    if last:
        record.update({k: v for k, v in json.loads(last[-1]).items() if k in ("inputs", "findings", "workdir",
                                                                               "slowest_input_s")})
    done = re.search(r"Done (\d+) runs", text)
    if done:
        record["inputs"] = int(done.group(1))
    if engine == "atheris":
        crashes = re.findall(r"(Test unit written to \S+|ERROR: libFuzzer: [^\n]+|== ERROR: [^\n]+)", text)
        uncaught = re.findall(r"=== Uncaught Python exception: ===\n([^\n]+)", text)
        record["findings"] = uncaught + crashes
    record.setdefault("findings", [])
    if proc.returncode != 0 and not record["findings"]:
        record["findings"] = [f"exit {proc.returncode}: {text[-800:]}"]
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--engine", choices=("atheris", "mutate"),
                        default="atheris" if importlib.util.find_spec("atheris") else "mutate")
    parser.add_argument("--jobs", type=int, default=1, help="targets run at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="fuzz-hostile-logs-"))
    pending, running, records = list(args.targets), [], []
    while pending or running:
        while pending and len(running) < args.jobs:
            target = pending.pop(0)
            log = logs / f"{target}.log"
            running.append((target, time.monotonic(), log, start(target, args.seconds, args.engine, args.seed, log)))
        target, started, log, proc = running.pop(0)
        records.append(finish(proc, target, args.engine, started, log))
    print(f"logs: {logs}")
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print(f"{'target':<9} {'engine':<8} {'inputs':>9} {'seconds':>8} {'peak RSS':>9}  findings")
        for r in records:
            print(f"{r['target']:<9} {r['engine']:<8} {r.get('inputs', '?'):>9} {r['seconds']:>8} "
                  f"{r['peak_rss_mb']:>6} MB  {len(r['findings'])}" + "".join(f"\n    {f}" for f in r["findings"]))
    return 1 if any(r["findings"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
