"""Timing one row (a model file on a backend at a thread count) the way a device runs it.

Each row is opened (initialisation time), run once (first-inference time), warmed up,
and then measured in rounds. Rounds of all rows are interleaved (round 1 of every row,
then round 2, ...), so a slow drift of the machine (another job, heat) spreads over all
rows instead of landing on whichever row ran last, and the spread between a row's
rounds is its noise estimate. Every round lasts at least runs/rounds calls and at least
seconds/rounds seconds. Only the backend call is inside the timer.
"""
from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from bench import fingerprint, stats

FEW_SAMPLES = 100  # below this the p99 is little more than the maximum
NOISY_ROUNDS_PCT = 10.0
CONTENTION_RATIO = 0.8  # a 1-thread row that got less than this share of a core


class Runner:
    """One opened backend and the inputs it cycles through.

    call() runs one timed inference and returns its duration in ns; `after` sees the
    outputs (the LSTM-MoE feeds its state back there), outside the timer.
    """

    def __init__(self, run: Callable, feeds: Sequence[tuple],
                 after: Optional[Callable[[list, int], tuple]] = None):
        self._run = run
        self._feeds = list(feeds)
        self._after = after
        self._index = 0
        self._carry: Optional[tuple] = None

    def call(self) -> int:
        feeds = self._feeds[self._index % len(self._feeds)]
        if self._carry is not None:
            feeds = self._carry
        start = time.perf_counter_ns()
        outputs = self._run(*feeds)
        elapsed = time.perf_counter_ns() - start
        self._index += 1
        if self._after is not None:
            self._carry = self._after(outputs, self._index)
        return elapsed


class Row:
    """A row to measure: what it is (`info`, copied into the result) and how to open it.

    open() returns (runner, backend); quality(backend) returns the quality dict or None.
    """

    def __init__(self, info: Dict[str, object], open_fn: Callable[[], Tuple[Runner, object]],
                 quality_fn: Optional[Callable[[object], Optional[dict]]] = None,
                 min_runs: Optional[int] = None):
        self.info = info
        self.min_runs = min_runs  # overrides the run-wide --runs (slow rows)
        self.open_fn = open_fn
        self.quality_fn = quality_fn
        self.runner: Optional[Runner] = None
        self.backend = None
        self.result: Dict[str, object] = info  # open_fn may add to it (the peer's FLOPs)
        self.samples_ns: List[int] = []
        self.round_medians_ms: List[float] = []
        self.snapshots: List[tuple] = []
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.error: Optional[str] = None

    @property
    def key(self) -> str:
        return str(self.info["key"])


def current_rss_mb() -> Optional[float]:
    """Resident memory of this process now, MB (None where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> Optional[float]:
    """Peak resident memory of this process so far, MB."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


class Progress:
    """A plain-text progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool = True, width: int = 28):
        self.total = max(total, 1)
        self.done = 0
        self.width = width
        self.enabled = enabled and sys.stderr.isatty()
        self.started = time.monotonic()

    def advance(self, label: str, steps: int = 1) -> None:
        self.done = min(self.done + steps, self.total)
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        line = (f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                f"{elapsed:4.0f} s, ~{left:3.0f} s left  {label[:40]:<40}")
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * (self.width + 100) + "\r")
            sys.stderr.flush()


def open_row(row: Row, warmup: int) -> None:
    """Initialise, run once, warm up and check quality; errors are kept on the row."""
    from edge.errors import EdgeError

    rss_before = current_rss_mb()
    try:
        start = time.perf_counter()
        row.runner, row.backend = row.open_fn()
        init_s = time.perf_counter() - start
        first_ns = row.runner.call()
        for _ in range(warmup):
            row.runner.call()
        quality = row.quality_fn(row.backend) if row.quality_fn else None
    except EdgeError as exc:
        row.error = str(exc)
        return
    rss_after = current_rss_mb()
    rss_added = rss_after - rss_before if rss_before is not None and rss_after is not None else None
    row.result.update({
        "runtime": getattr(row.backend, "description", ""),
        "init_ms": init_s * 1e3,
        "first_ms": first_ns / 1e6,
        "warmup_runs": warmup,
        "rss_added_mb": rss_added,
        "quality": quality,
    })


def measure_round(row: Row, sensors: fingerprint.Sensors, min_runs: int, min_seconds: float) -> None:
    """One round: at least `min_runs` calls and at least `min_seconds` of calls."""
    runner = row.runner
    samples: List[int] = []
    before = sensors.sample()
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    min_ns = int(min_seconds * 1e9)
    busy_ns = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call is the collector's cost, not the model's
    try:
        while len(samples) < min_runs or busy_ns < min_ns:
            elapsed = runner.call()
            samples.append(elapsed)
            busy_ns += elapsed
    finally:
        if gc_was_enabled:
            gc.enable()
    row.wall_s += time.perf_counter() - wall_start
    row.cpu_s += time.process_time() - cpu_start
    row.snapshots.append((before, sensors.sample()))
    row.samples_ns.extend(samples)
    row.round_medians_ms.append(statistics.median(samples) / 1e6)


def finish_row(row: Row, rounds: int) -> Dict[str, object]:
    """The row's result dict (the JSON schema's `rows` item)."""
    result = row.result
    if row.error:
        result["error"] = row.error
        result["flags"] = [{"code": "failed", "detail": row.error}]
        return result
    samples_ms = [s / 1e6 for s in row.samples_ns]
    latency = stats.summarize(samples_ms)
    noise = stats.round_noise_pct(row.round_medians_ms)
    flops = result.get("flops_per_run")
    busy_s = sum(samples_ms) / 1e3
    result.update({
        "latency_ms": latency,
        "quantiles_ms": stats.quantiles(samples_ms),
        "rounds": {"count": rounds, "p50_ms": row.round_medians_ms, "noise_pct": noise},
        "throughput_per_s": latency["n"] / busy_s if busy_s > 0 else None,
        "gflops_per_s": (flops / (latency["mean"] / 1e3) / 1e9) if flops else None,
        "cpu_s": row.cpu_s,
        "wall_s": row.wall_s,
        "cpu_per_wall": row.cpu_s / row.wall_s if row.wall_s > 0 else None,
    })
    flags = fingerprint.disturbances(row.snapshots)
    if latency["n"] < FEW_SAMPLES:
        flags.append({"code": "few_samples",
                      "detail": f"{latency['n']} samples; p99 needs at least {FEW_SAMPLES}"})
    if noise is not None and noise > NOISY_ROUNDS_PCT:
        flags.append({"code": "noisy_rounds", "detail": f"round medians vary by {noise:.0f} %"})
    ratio = result["cpu_per_wall"]
    if result.get("threads") == 1 and ratio is not None and ratio < CONTENTION_RATIO:
        flags.append({"code": "contention",
                      "detail": f"got {100 * ratio:.0f} % of a core while measured (other load?)"})
    result["flags"] = flags
    return result


def run_rows(rows: List[Row], rounds: int, min_runs: int, min_seconds: float, warmup: int,
             progress: bool = True) -> List[Dict[str, object]]:
    """Open every row, then measure `rounds` interleaved rounds; the rows' result dicts."""
    sensors = fingerprint.Sensors()
    bar = Progress(len(rows) * (rounds + 1), enabled=progress)
    for row in rows:
        open_row(row, warmup)
        bar.advance(f"open {row.key}")
    per_round_s = min_seconds / rounds
    for _ in range(rounds):
        for row in rows:
            if row.error is None:
                runs = row.min_runs if row.min_runs is not None else min_runs
                measure_round(row, sensors, max(1, -(-runs // rounds)), per_round_s)
            bar.advance(row.key)
    bar.close()
    return [finish_row(row, rounds) for row in rows]
