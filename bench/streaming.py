"""Streaming vs window: one LSTM-MoE tick with carried (h, c) against re-running the
model over the last W seconds from a zero state (what a device without carried state
would do every 100 ms). Both are measured as ordinary rows through the runtime's own
`SeverityStream.step` and `SeverityStream.window_estimate`.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from bench import fixed_inputs
from bench.measure import Row, Runner
from bench.stats import ratio_with_noise
from bench.targets import TICK_MODEL, model_flops
from edge.manifest import load_manifest
from edge.models.severity import SeverityStream

TICKS_PER_SECOND = 10
WINDOW_MIN_RUNS = 10


def _window_ticks(window_s: float) -> np.ndarray:
    sessions = fixed_inputs.load_ticks()
    ticks = sessions.reshape(-1, sessions.shape[-1])
    count = max(1, int(round(window_s * TICKS_PER_SECOND)))
    repeats = -(-count // len(ticks))
    return np.ascontiguousarray(np.tile(ticks, (repeats, 1))[:count])


def streaming_rows(models_dir: Optional[str], window_s: float, backends=(), precisions=()) -> List[Row]:
    """Two rows per LSTM-MoE file (1 thread): `stream` (one tick) and `window`."""
    manifest = load_manifest(TICK_MODEL, models_dir)
    window = _window_ticks(window_s)
    flops_tick = model_flops(manifest)
    rows = []
    for entry in manifest.files:
        if backends and entry["format"] not in backends:
            continue
        if precisions and entry["precision"] not in precisions:
            continue
        base = {"role": "streaming", "model": TICK_MODEL, "backend": entry["format"],
                "precision": entry["precision"], "threads": 1, "file": entry["file"],
                "file_bytes": entry.get("bytes"), "sha256": entry["sha256"], "demo_weights": True}

        def open_stream(entry=entry):
            stream = SeverityStream.from_file(manifest, entry, threads=1)
            return Runner(stream.step, [(tick,) for tick in window]), stream.model.backend

        def open_window(entry=entry):
            stream = SeverityStream.from_file(manifest, entry, threads=1)
            return Runner(stream.window_estimate, [(window,)]), stream.model.backend

        tag = f"{entry['format']}/{entry['precision']}"
        rows.append(Row(dict(base, key=f"streaming:{TICK_MODEL}/{tag}/tick", unit="tick",
                             flops_per_run=flops_tick), open_stream))
        rows.append(Row(dict(base, key=f"streaming:{TICK_MODEL}/{tag}/window{window_s:g}s",
                             unit=f"window of {len(window)} ticks",
                             flops_per_run=flops_tick * len(window) if flops_tick else None),
                        open_window, min_runs=WINDOW_MIN_RUNS))
    return rows


def summarize(results: List[Dict[str, object]], window_s: float) -> List[Dict[str, object]]:
    """Pairs of (tick, window) rows: p50s, the ratio with its noise, and the share of one
    core each needs at 10 ticks a second."""
    by_key = {r["key"]: r for r in results if r.get("role") == "streaming" and "latency_ms" in r}
    out = []
    for key, tick in by_key.items():
        if not key.endswith("/tick"):
            continue
        window = by_key.get(key[: -len("tick")] + f"window{window_s:g}s")
        if window is None:
            continue
        t50, w50 = tick["latency_ms"]["p50"], window["latency_ms"]["p50"]
        compared = ratio_with_noise(t50, w50, tick["rounds"]["noise_pct"], window["rounds"]["noise_pct"])
        out.append({
            "backend": tick["backend"], "precision": tick["precision"], "window_s": window_s,
            "tick_p50_ms": t50, "window_p50_ms": w50, "window_over_tick": compared["ratio"],
            "noise_pct": compared["noise_pct"],
            "tick_core_pct_at_10hz": t50 * TICKS_PER_SECOND / 10.0,
            "window_core_pct_at_10hz": w50 * TICKS_PER_SECOND / 10.0,
        })
    return out
